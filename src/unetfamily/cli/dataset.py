"""``unetfamily dataset``: inspect a dataset config (``info``), convert labelme annotations (``labelme``)."""
from __future__ import annotations

import argparse
from dataclasses import asdict

from unetfamily.cli._common import EXIT_OK, command, out, print_json

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``unetfamily dataset`` with its sub-commands ``info`` and ``labelme``."""
    p = command(subparsers, "dataset", run, help="inspect datasets and convert annotations")
    sub = p.add_subparsers(dest="dataset_command", required=True, metavar="SUBCOMMAND")

    info = command(sub, "info", run_info, help="counts, classes and mask statistics of a dataset config")
    info.add_argument("config", help="YAML config path, or a dataset type such as 'synthetic' or 'camvid'")
    info.add_argument("--split", default="train", help="split to inspect ('all' for every sample)")
    info.add_argument("--samples", type=int, default=8, help="samples to decode for the statistics")
    info.add_argument("--json", action="store_true", help="print one JSON object instead of text")

    lm = command(sub, "labelme", run_labelme, help="rasterise labelme JSON files into class-index masks")
    lm.add_argument("path", help="a labelme .json file, or a folder searched recursively for them")
    lm.add_argument("--root", help="folder every imagePath must stay inside; None: PATH, or its folder if PATH is a file")
    lm.add_argument("--out", required=True, help="output folder (images/, masks/, classes.txt)")
    lm.add_argument("--labels", help="labels.txt: one class per line (labelme convention: __ignore__, _background_ "
                    "first); None: the labels found in the files, sorted")
    lm.add_argument("--ignore-index", type=int, default=255, help="mask value for __ignore__ shapes")


def run(args: argparse.Namespace) -> int:
    """Run the sub-command named by ``args.dataset_command``."""
    return {"info": run_info, "labelme": run_labelme}[args.dataset_command](args)


def run_info(args: argparse.Namespace) -> int:
    """Print what ``args.config``'s ``args.split`` holds: sizes, classes and pixel fractions."""
    from unetfamily.data import build_dataset, dataset_statistics

    ds = build_dataset(args.config, split=args.split)
    stats = dataset_statistics(ds, args.samples)
    report = {
        "type": type(ds).__name__,
        "split": args.split,
        "samples": len(ds),
        "classes": ds.info.classes,
        "ignore_index": ds.info.ignore_index,
        "in_channels": ds.info.in_channels,
        "num_model_outputs": ds.info.num_model_outputs,
        **asdict(stats),
    }
    if args.json:
        print_json(report)
        return EXIT_OK
    for key, value in report.items():
        if key == "class_fractions":
            out(f"{key} (over {stats.decoded} samples):")
            for name, fraction in value.items():
                out(f"  {name:<16} {fraction:.4f}")
        else:
            out(f"{key}: {value}")
    return EXIT_OK


def run_labelme(args: argparse.Namespace) -> int:
    """Convert the labelme files under ``args.path`` into a folder dataset at ``args.out``."""
    from unetfamily.data.labelme import convert_labelme

    report = convert_labelme(args.path, args.out, labels_file=args.labels, ignore_index=args.ignore_index,
                             root=args.root)
    out(f"wrote {report.files} image/mask pair(s) to {args.out}")
    out(f"classes ({len(report.classes)}): {', '.join(report.classes)}")
    for name, count in report.pixels.items():
        out(f"  {name:<16} {count} px")
    out(f"load with: {{type: folder, root: {args.out}, classes: {args.out}/classes.txt, mask_encoding: index}}")
    return EXIT_OK
