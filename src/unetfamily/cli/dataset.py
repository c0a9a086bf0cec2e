"""``unetfamily dataset``: inspect a dataset config (``info``), check its files (``check``), convert labelme
annotations (``labelme``), fetch a named dataset (``download``), write any layout as plain PNG folders
(``convert``)."""
from __future__ import annotations

import argparse
from dataclasses import asdict

from unetfamily.cli import dataset_convert, dataset_download
from unetfamily.cli._common import AT_LEAST_ONE, EXIT_OK, check_options, command, err, out, print_json
from unetfamily.config import Range
from unetfamily.errors import ConfigError
from unetfamily.text import printable

IGNORE_INDEX = Range(ge=0, le=65535, integer=True)  # a mask value: masks are 8- or 16-bit

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``unetfamily dataset`` with its sub-commands ``info``, ``check``, ``labelme``, ``download``, ``convert``."""
    p = command(subparsers, "dataset", run, help="inspect datasets and convert annotations")
    sub = p.add_subparsers(dest="dataset_command", required=True, metavar="SUBCOMMAND")

    info = command(sub, "info", run_info, help="counts, classes and mask statistics of a dataset config")
    info.add_argument("config", help="YAML config path, a folder (images/ and masks/, or the data.yaml "
                      "`dataset convert` wrote there), or a dataset type such as 'synthetic' or 'camvid'")
    info.add_argument("--split", default="train", help="split to inspect ('all' for every sample)")
    info.add_argument("--samples", type=int, default=8, help="samples to decode for the statistics")
    info.add_argument("--json", action="store_true", help="print one JSON object instead of text")

    check = command(sub, "check", run_check, help="check every file of every split, as training does before its "
                    "first step")
    check.add_argument("config", help="YAML config path, a folder (images/ and masks/, or the data.yaml "
                      "`dataset convert` wrote there), or a dataset type such as 'synthetic' or 'camvid'")
    check.add_argument("--split", action="append", dest="splits", metavar="SPLIT",
                       help="split to check (repeatable); default: train, val and test where defined, else all")
    check.add_argument("--batch-size", type=int, default=1,
                       help="batch size the splits will be read with (more than 1 needs one image size)")
    check.add_argument("--full", action="store_true", help="decode every image completely (slower)")
    check.add_argument("--json", action="store_true", help="print one JSON object instead of text")

    lm = command(sub, "labelme", run_labelme, help="rasterise labelme JSON files into class-index masks")
    lm.add_argument("path", help="a labelme .json file, or a folder searched recursively for them")
    lm.add_argument("--root", help="folder every imagePath must stay inside; None: PATH, or its folder if PATH is a file")
    lm.add_argument("--out", required=True, help="output folder (images/, masks/, classes.txt); refused when it "
                    "already holds a file the conversion would replace, unless --overwrite")
    lm.add_argument("--overwrite", action="store_true", help="replace the images, masks and classes.txt already in --out")
    lm.add_argument("--labels", help="labels.txt: one class per line (labelme convention: __ignore__, _background_ "
                    "first); None: the labels found in the files, sorted")
    lm.add_argument("--ignore-index", type=int, default=255, help="mask value for __ignore__ shapes")
    dataset_download.add_parser(sub)
    dataset_convert.add_parser(sub)


def run(args: argparse.Namespace) -> int:
    """Run the sub-command named by ``args.dataset_command``."""
    commands = {"info": run_info, "check": run_check, "labelme": run_labelme, "download": dataset_download.run,
                "convert": dataset_convert.run}
    return commands[args.dataset_command](args)


def run_info(args: argparse.Namespace) -> int:
    """Print what ``args.config``'s ``args.split`` holds: sizes, classes and pixel fractions."""
    from unetfamily.data import build_dataset, dataset_statistics

    check_options(args, samples=AT_LEAST_ONE)
    ds = build_dataset(args.config, split=args.split)
    stats = dataset_statistics(ds, args.samples)
    report = {
        "type": type(ds).__name__,
        "split": args.split,
        "samples": len(ds),
        "classes": ds.info.classes,
        "ignore_index": ds.info.ignore_index,
        "background": ds.info.has_background,
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
                out(f"  {printable(name):<16} {fraction:.4f}")
        else:
            out(f"{key}: {value}")
    return EXIT_OK


def run_check(args: argparse.Namespace) -> int:
    """Check ``args.config``'s splits as training does before its first step; print what was found."""
    from unetfamily.data import UnknownSplitError, check_dataset

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size}: give 1 or more")
    splits = args.splits or []
    optional = [] if splits else ["train", "val", "test"]
    batch = {split: args.batch_size for split in [*splits, *optional, "all"]}
    try:
        result = check_dataset(args.config, splits, optional=optional, batch_sizes=batch, full=args.full)
    except UnknownSplitError:
        if splits:
            raise
        result = check_dataset(args.config, ["all"], optional=[], batch_sizes=batch, full=args.full)
    report = {**asdict(result), "info": asdict(result.info)}
    report.pop("contents")  # every sample's digest: what checkpoints record, not a report for people
    if args.json:
        print_json(report)
        return EXIT_OK
    info = result.info
    out(f"data check passed: {result.files} file(s) read in {result.seconds:.2f} s")
    out(f"samples: {', '.join(f'{k} {v}' for k, v in result.samples.items())}")
    out(f"classes: {info.classes} (ignore_index {info.ignore_index}; class 0 "
        f"{'is a background, left out of the foreground scores' if info.has_background else 'is scored'}); "
        f"found in the masks: {result.classes_found}")
    out(f"in_channels: {info.in_channels}; distinct image sizes: {result.image_sizes}")
    for warning in result.warnings:
        err(f"warning: {warning}")
    return EXIT_OK


def run_labelme(args: argparse.Namespace) -> int:
    """Convert the labelme files under ``args.path`` into a folder dataset at ``args.out``."""
    from unetfamily.data.labelme import convert_labelme

    check_options(args, ignore_index=IGNORE_INDEX)
    report = convert_labelme(args.path, args.out, labels_file=args.labels, ignore_index=args.ignore_index,
                             root=args.root, overwrite=args.overwrite)
    out(f"wrote {report.files} image/mask pair(s) to {args.out}")
    out(f"classes ({len(report.classes)}): {', '.join(printable(c) for c in report.classes)}")
    for name, count in report.pixels.items():
        out(f"  {printable(name):<16} {count} px")
    out(f"load with: {{type: folder, root: {args.out}, classes: {args.out}/classes.txt, mask_encoding: index}}")
    return EXIT_OK
