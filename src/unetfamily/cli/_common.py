"""What every command module shares: the sub-parser factory and the output helpers.

Only modules of this package parse arguments, print and choose exit codes. A command module
has ``add_parser(subparsers)``, which registers its sub-parser through :func:`command` and sets
``func`` to a ``run(args) -> int``. Library errors (:class:`~unetfamily.errors.UnetFamilyError`)
propagate to :func:`unetfamily.cli.main`, which prints them as one ``error:`` line, exit code 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["EXIT_OK", "EXIT_USAGE", "EXIT_INTERRUPTED", "command", "out", "err", "print_json", "split_list"]

EXIT_OK = 0
#: Bad input: an unknown name, an out-of-range number, an unusable file (argparse uses 2 too).
EXIT_USAGE = 2
#: Stopped by SIGINT/SIGTERM after saving what can be resumed.
EXIT_INTERRUPTED = 130


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every option's default and keeps the description's line breaks."""


def command(subparsers: argparse._SubParsersAction, name: str, run: Callable[[argparse.Namespace], int],
            help: str, description: str | None = None, **kwargs: Any) -> argparse.ArgumentParser:
    """Register sub-command ``name`` whose ``--help`` shows every default; ``run(args)`` returns the exit code."""
    parser = subparsers.add_parser(name, help=help, description=description or help,
                                   formatter_class=HelpFormatter, **kwargs)
    parser.set_defaults(func=run)
    return parser


def out(*parts: object) -> None:
    """A line of the command's result on standard output."""
    print(*parts)


def err(*parts: object) -> None:
    """A line for the user on standard error (warnings, progress, where things went)."""
    print(*parts, file=sys.stderr)


def print_json(obj: Any) -> None:
    """``obj`` as strict, indented JSON on standard output (NaN/inf as null)."""
    from unetfamily.files import to_jsonable

    print(json.dumps(to_jsonable(obj), indent=2, allow_nan=False))


def split_list(value: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (comma-separated option values)."""
    return [part.strip() for part in value.split(",") if part.strip()]
