"""The ``unetfamily`` command line: ``unetfamily COMMAND [ARGS]``.

Each command lives beside the code it drives and contributes one ``add_parser(subparsers)``
function that registers its sub-parser and sets ``func`` (called with the parsed namespace,
returning an exit code). ``main(argv)`` is what tests call in process.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence

from unetfamily import __version__
from unetfamily.errors import UnetFamilyError

log = logging.getLogger("unetfamily")


def _add_models_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="list the registered models")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'unet*'")
    p.add_argument("--params", action="store_true", help="also count parameters at default settings")
    p.add_argument(
        "--forward",
        action="store_true",
        help="run one forward pass per model family at a small width (64x64) and print the output shape",
    )
    p.set_defaults(func=_run_models)


def _run_models(args: argparse.Namespace) -> int:
    import torch

    from unetfamily.compare.variants import family_kwargs
    from unetfamily.models import create_model, final_output, list_models

    names = list_models(args.pattern)
    if not names:
        print(f"no model matches {args.pattern!r}", file=sys.stderr)
        return 1
    for name in names:
        line = name
        if args.params:
            with torch.device("meta"):  # counts paper-width models without allocating them
                model = create_model(name)
            n = sum(p.numel() for p in model.parameters())
            line += f"\t{n:>13,d} parameters"
        if args.forward and not name.endswith(("_voc", "_huang2020", "_zhou2018")):
            model = create_model(name, **family_kwargs(name, 8)).eval()
            with torch.no_grad():
                out = final_output(model(torch.randn(1, model.in_channels, 64, 64)))
            line += f"\tforward 64x64 -> {tuple(out.shape)}"
        print(line)
    return 0


# Modules that each contribute one command through ``add_parser(subparsers)``.
COMMAND_MODULES = (
    "unetfamily.data.cli",
    "unetfamily.engine.train",
    "unetfamily.engine.evaluate",
    "unetfamily.engine.predict",
    "unetfamily.engine.export",
    "unetfamily.bench",
    "unetfamily.compare.runner",
)


def _command_adders() -> list:
    adders = [_add_models_parser]
    for name in COMMAND_MODULES:
        if importlib.util.find_spec(name) is not None:
            adders.append(importlib.import_module(name).add_parser)
    return adders


def build_parser() -> argparse.ArgumentParser:
    """The top-level argument parser with every available sub-command."""
    parser = argparse.ArgumentParser(prog="unetfamily", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"unetfamily {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _command_adders():
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (defaults to ``sys.argv[1:]``); returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except UnetFamilyError as exc:  # bad input: the message says what to do, no traceback
        log.debug("error details", exc_info=True)
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
