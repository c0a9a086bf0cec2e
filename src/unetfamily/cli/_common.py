"""What every command module shares: the sub-parser factory and the output helpers.

Only modules of this package parse arguments, print and choose exit codes. A command module
has ``add_parser(subparsers)``, which registers its sub-parser through :func:`command` and sets
``func`` to a ``run(args) -> int``. Library errors (:class:`~unetfamily.errors.UnetFamilyError`)
propagate to :func:`unetfamily.cli.main`, which prints them as one ``error:`` line, exit code 2.
"""
from __future__ import annotations

import argparse
from pathlib import Path
import json
import sys
from collections.abc import Callable
from typing import Any

from unetfamily.config import Range
from unetfamily.text import shown_lines

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_INTERRUPTED", "command", "out", "err", "print_json", "split_list",
           "split_names", "check_options", "option_name", "AT_LEAST_ONE", "AT_LEAST_ZERO", "POSITIVE", "NON_NEGATIVE",
           "PROBABILITY", "FRACTION", "check_data_option"]

EXIT_OK = 0
#: The command finished, but some of its work failed (e.g. runs of a comparison); what succeeded is kept.
EXIT_FAILED = 1
#: Bad input: an unknown name, an out-of-range number, an unusable file (argparse uses 2 too).
EXIT_USAGE = 2
#: Stopped by SIGINT/SIGTERM after saving what can be resumed.
EXIT_INTERRUPTED = 130


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every option's default and keeps the description's line breaks; a switch (``--no-costs``) shows none,
    since its stored value reads as the opposite of the switch ("--no-costs ... (default: True)")."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            return action.help
        return super()._get_help_string(action)


def command(subparsers: argparse._SubParsersAction, name: str, run: Callable[[argparse.Namespace], int],
            help: str, description: str | None = None, **kwargs: Any) -> argparse.ArgumentParser:
    """Register sub-command ``name`` whose ``--help`` shows every default; ``run(args)`` returns the exit code."""
    parser = subparsers.add_parser(name, help=help, description=description or help,
                                   formatter_class=HelpFormatter, **kwargs)
    parser.set_defaults(func=run)
    return parser


def out(*parts: object) -> None:
    """A line of the command's result on standard output; characters that are not printable in the names it shows
    (escape sequences, carriage returns) are escaped (:func:`~unetfamily.text.shown_lines`), its line breaks and tabs
    kept."""
    print(shown_lines(" ".join(map(str, parts))))


def err(*parts: object) -> None:
    """A line for the user on standard error (warnings, progress, where things went), shown as :func:`out` shows."""
    print(shown_lines(" ".join(map(str, parts))), file=sys.stderr)


def print_json(obj: Any) -> None:
    """``obj`` as strict, indented JSON on standard output (NaN/inf as null)."""
    from unetfamily.files import to_jsonable

    print(json.dumps(to_jsonable(obj), indent=2, allow_nan=False))


def split_list(value: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (comma-separated option values)."""
    return [part.strip() for part in value.split(",") if part.strip()]


def split_names(option: str, value: str) -> list[str]:
    """:func:`split_list` of a names option; none given (``""``, ``","``) is a ConfigError naming ``option``."""
    from unetfamily.errors import ConfigError

    names = split_list(value)
    if not names:
        raise ConfigError(f"{option} names nothing (got {value!r}); give at least one, comma-separated")
    return names


# The ranges options are checked against, as in unetfamily.config: the error names the option and the rule.
AT_LEAST_ONE = Range(ge=1, integer=True)  # counts and sizes: --batch-size, --repeats, --size
AT_LEAST_ZERO = Range(ge=0, integer=True)  # --tile-size (0: never tile), indices
POSITIVE = Range(gt=0)  # a finite number > 0: --minutes, learning rates
NON_NEGATIVE = Range(ge=0)  # a finite number >= 0: tolerances
PROBABILITY = Range(gt=0, lt=1)  # a threshold in (0, 1): 0 or 1 would make every pixel one class
FRACTION = Range(ge=0, lt=1)  # a fraction in [0, 1): --overlap


def option_name(dest: str) -> str:
    """The option an argparse ``dest`` comes from: ``batch_size`` -> ``--batch-size``."""
    return "--" + dest.replace("_", "-")


def check_options(args: argparse.Namespace, **ranges: Range) -> None:
    """Check each ``args.<dest>`` against its :class:`~unetfamily.config.Range`; unset (None) options pass.

    A list (``nargs``) is checked item by item. The first value out of range raises a
    :class:`~unetfamily.errors.ConfigError` naming the option: ``--threshold must be in (0, 1), got 5``.
    """
    for dest, rule in ranges.items():
        value = getattr(args, dest)
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item is not None:
                rule(option_name(dest), item)


def refuse_existing_output(option: str, path: Path | None, overwrite: bool) -> None:
    """Refuse to replace the file a user named with ``option`` unless ``--overwrite`` was given.

    A command never replaces a file it was not asked to (a checkpoint, a run's config, an earlier result).
    """
    from unetfamily.errors import ConfigError, special_kind

    if path is None:
        return
    kind = special_kind(path)
    if kind is not None and kind != "a directory":  # a device, pipe or socket: never replaced, --overwrite or not
        raise ConfigError(f"{option} {path}: is {kind}, not a file this command may write; choose another {option}")
    if overwrite or not path.exists():
        return
    what = "a folder" if path.is_dir() else "a file"
    raise ConfigError(f"{option} {path}: {what} of that name exists and would be replaced; pass --overwrite to "
                      f"replace it, or choose another {option}")


def check_data_option(option: str, value: str) -> None:
    """Refuse a ``--data`` that is written as a path (a slash, a config suffix) but does not exist.

    Without this, a mistyped path would be read as a dataset type name and refused as an unknown type.
    """
    from pathlib import Path

    from unetfamily.errors import ConfigError

    path = Path(value)
    looks_like_a_path = "/" in value or "\\" in value or path.suffix.lower() in (".yaml", ".yml", ".json", ".toml")
    if looks_like_a_path and not path.exists():
        raise ConfigError(f"{option} {value}: no such file or folder; give a dataset config file, a folder of images "
                          "and masks, or a dataset type name")
