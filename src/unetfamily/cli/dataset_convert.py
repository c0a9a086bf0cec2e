"""``unetfamily dataset convert CONFIG --out DIR``: any dataset as the plain images/ + masks/ PNG layout.

Each sample is written as the loader reads it before resize and augmentation: images 8-bit
(16-bit kept, float scaled to 16-bit), masks as class indices, regions of interest as 255/0
masks in roi/, one folder per split, plus DIR/data.yaml, a ready ``type: folder`` config.
"""
from __future__ import annotations

import argparse

from unetfamily.cli._common import EXIT_OK, command, out, print_json

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``convert`` on the ``unetfamily dataset`` sub-commands."""
    p = command(subparsers, "convert", run, help="write a dataset as plain images/ + masks/ PNG folders and a "
                "folder config, as the loader sees it", description=__doc__.replace("``", ""))
    p.add_argument("config", help="YAML config path, or a dataset type such as 'synthetic' or 'camvid'")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder; must be new or empty unless "
                   "--overwrite")
    p.add_argument("--split", action="append", dest="splits", metavar="SPLIT",
                   help="split to convert (repeatable); default: train, val and test where defined, else all")
    p.add_argument("--overwrite", action="store_true", help="replace DIR/data.yaml and the converted splits' "
                   "images/, masks/ and roi/ folders already in DIR")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def run(args: argparse.Namespace) -> int:
    """Convert ``args.config`` into ``args.out``; print what was written and how to load it."""
    from unetfamily.data.convert import convert_dataset

    report = convert_dataset(args.config, args.out, splits=args.splits, overwrite=args.overwrite)
    if args.json:
        print_json(report)
        return EXIT_OK
    samples = ", ".join(f"{split} {n}" for split, n in report["splits"].items())
    out(f"wrote {sum(report['splits'].values())} sample(s) to {report['out']} ({samples})"
        + ("; with regions of interest in roi/" if report["roi"] else ""))
    out(f"classes: {report['classes']} (ignore_index {report['ignore_index']}); in_channels: {report['in_channels']}")
    out(f"load with: {report['config']}")
    return EXIT_OK
