"""``unetfamily dataset ...``: inspect a dataset config, convert labelme annotations."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from unetfamily.data.errors import DataError

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``dataset`` with its sub-commands ``info`` and ``labelme``."""
    p = subparsers.add_parser("dataset", help="inspect datasets and convert annotations")
    sub = p.add_subparsers(dest="dataset_command", required=True, metavar="SUBCOMMAND")

    info = sub.add_parser("info", help="counts, classes and mask statistics of a dataset config")
    info.add_argument("config", help="YAML config path, or a dataset type such as 'synthetic' or 'camvid'")
    info.add_argument("--split", default="train", help="split to inspect (default: train; 'all' for every sample)")
    info.add_argument("--samples", type=int, default=8, help="samples to decode for the statistics (default: 8)")
    info.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    info.set_defaults(func=_run_info)

    lm = sub.add_parser("labelme", help="rasterise labelme JSON files into class-index masks")
    lm.add_argument("path", help="a labelme .json file, or a folder searched recursively for them")
    lm.add_argument("--root", help="folder every imagePath must stay inside (default: PATH, or its folder for a file)")
    lm.add_argument("--out", required=True, help="output folder (images/, masks/, classes.txt)")
    lm.add_argument(
        "--labels", help="labels.txt: one class per line (labelme convention: __ignore__, _background_ first)"
    )
    lm.add_argument("--ignore-index", type=int, default=255, help="mask value for __ignore__ shapes (default: 255)")
    lm.set_defaults(func=_run_labelme)


def _run_info(args: argparse.Namespace) -> int:
    from unetfamily.data.registry import build_dataset, list_datasets

    config = {"type": args.config} if args.config in list_datasets() else args.config
    try:
        ds = build_dataset(config, split=args.split)
        stats = _statistics(ds, args.samples)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report = {
        "type": type(ds).__name__,
        "split": args.split,
        "samples": len(ds),
        "classes": ds.info.classes,
        "ignore_index": ds.info.ignore_index,
        "in_channels": ds.info.in_channels,
        "num_model_outputs": ds.info.num_model_outputs,
        **stats,
    }
    if args.json:
        print(json.dumps(report))
        return 0
    for key, value in report.items():
        if key == "class_fractions":
            print(f"{key} (over {stats['decoded']} samples):")
            for name, frac in value.items():
                print(f"  {name:<16} {frac:.4f}")
        else:
            print(f"{key}: {value}")
    return 0


def _statistics(ds, samples: int) -> dict:
    """Pixel fractions per class (and ignored) and the image sizes, over the first ``samples``."""
    n = min(samples, len(ds))
    counts = np.zeros(max(ds.info.num_classes, ds.info.ignore_index + 1), np.int64)
    sizes, means = set(), []
    for i in range(n):
        sample = ds[i]
        counts += np.bincount(sample["mask"].flatten().numpy(), minlength=counts.size)[: counts.size]
        sizes.add(tuple(sample["image"].shape[-2:]))
        means.append(float(sample["image"].mean()))
    total = max(int(counts.sum()), 1)
    fractions = {name: round(counts[i] / total, 6) for i, name in enumerate(ds.info.classes)}
    fractions["<ignore>"] = round(counts[ds.info.ignore_index] / total, 6)
    by_area = sorted(sizes, key=lambda hw: (hw[0] * hw[1], hw))
    return {
        "decoded": n,
        "image_sizes_hw": {"distinct": len(sizes), "smallest": list(by_area[0]), "largest": list(by_area[-1])}
        if sizes
        else {},
        "image_mean": round(float(np.mean(means)), 6) if means else None,
        "class_fractions": fractions,
    }


def _run_labelme(args: argparse.Namespace) -> int:
    from unetfamily.data.labelme import convert_labelme

    try:
        report = convert_labelme(
            args.path, args.out, labels_file=args.labels, ignore_index=args.ignore_index, root=args.root
        )
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {report['files']} image/mask pair(s) to {args.out}")
    print(f"classes ({len(report['classes'])}): {', '.join(report['classes'])}")
    for name, count in report["pixels"].items():
        print(f"  {name:<16} {count} px")
    print(f"load with: {{type: folder, root: {args.out}, classes: {args.out}/classes.txt, mask_encoding: index}}")
    return 0
