"""The ``unetfamily`` command line: ``unetfamily COMMAND [ARGS]``.

One module per command (``unetfamily.cli.<command>``), each with ``add_parser(subparsers)``;
they are imported here statically and are the only modules that parse arguments, print or
choose exit codes. Every user error, whether argparse's or a library's
:class:`~unetfamily.errors.UnetFamilyError`, ends as one ``error:`` line and exit code 2.
``main(argv)`` is what tests call in process.
"""
from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence

from unetfamily import __version__
from unetfamily.cli import bench, compare, dataset, evaluate, export, models, plan, predict, train
from unetfamily.cli._common import EXIT_INTERRUPTED, EXIT_USAGE, HelpFormatter, err
from unetfamily.errors import UnetFamilyError
from unetfamily.engine.run_log import stderr_handler
from unetfamily.text import printable

__all__ = ["build_parser", "main"]

log = logging.getLogger("unetfamily")

_OVERRIDE = re.compile(r"[A-Za-z_][\w.]*=")  # a dotted key=value override (train.epochs=3)
#: The command modules in the order ``unetfamily --help`` lists them.
COMMANDS = (models, dataset, plan, train, evaluate, predict, export, bench, compare)


def build_parser() -> argparse.ArgumentParser:
    """The top-level argument parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="unetfamily", description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"unetfamily {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (defaults to ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and all(_OVERRIDE.match(a) for a in extra):
        args.overrides = [*args.overrides, *extra]  # key=value after a flag: argparse ends positionals at a flag
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[stderr_handler()])
    try:
        return int(args.func(args) or 0)
    except UnetFamilyError as exc:  # bad input: the message says what to do, no traceback
        log.debug("error details", exc_info=True)
        err(f"error: {one_line(str(exc))}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        err("stopped; what was saved can be resumed by running the same command again")
        return EXIT_INTERRUPTED


def one_line(message: str) -> str:
    """``message`` on one line: a library or third-party message that spans lines (tarfile's, PyYAML's) joined
    with spaces, so that ``error:`` is always the last line of stderr and the whole message; a name it quotes
    that holds other unprintable characters (an escape sequence, a bidirectional override) is shown escaped."""
    return printable(" ".join(line.strip() for line in message.splitlines() if line.strip()))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
