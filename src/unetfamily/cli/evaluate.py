"""``unetfamily eval``: score a checkpoint on a dataset split, print per-class scores, write them as JSON."""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any

from unetfamily.cli._common import (AT_LEAST_ONE, EXIT_OK, PROBABILITY, check_data_option, check_options, command,
                                    option_name, out, refuse_existing_output)
from unetfamily.text import printable

__all__ = ["add_parser", "default_output", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``unetfamily eval``."""
    p = command(subparsers, "eval", run, help="evaluate a checkpoint on a dataset split")
    p.add_argument("--checkpoint", required=True, help="run folder or .safetensors checkpoint")
    p.add_argument("--data", help="dataset config YAML, a folder with images/ and masks/, or a type name; "
                                  "none: the run's own data config")
    p.add_argument("--split", default="val", help="dataset split to score")
    p.add_argument("--batch-size", type=int, default=4, help="images per forward pass")
    p.add_argument("--hd95", action="store_true", help="also compute HD95 (binary tasks only)")
    p.add_argument("--threshold", type=float, help="binary models: foreground probability threshold, in (0, 1); "
                   "none given: 0.5 (refused for multi-class models, which are scored by argmax)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (CUDA when available)")
    p.add_argument("--out", type=Path, help="JSON file to write (none: eval_<split>.json in the checkpoint's run "
                   "folder, or beside a checkpoint file that is not in one)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file (--out or the default)")


def run(args: argparse.Namespace) -> int:
    """Evaluate, print a per-class table and the summary scores, write the JSON file."""
    from unetfamily.engine.device import resolve_device
    from unetfamily.engine.evaluate import evaluate_checkpoint
    from unetfamily.errors import ConfigError
    from unetfamily.files import write_json

    check_options(args, batch_size=AT_LEAST_ONE, threshold=PROBABILITY)
    refuse_existing_output("--out", args.out, args.overwrite)
    device = resolve_device(args.device, "--device")
    data = _data_spec(args.data)
    path = args.out or default_output(args.checkpoint, args.split, args.overwrite)
    result = evaluate_checkpoint(args.checkpoint, data, args.split, batch_size=args.batch_size,
                                 hd95=args.hd95, threshold=args.threshold, device=device,
                                 names={k: option_name(k) for k in ("threshold", "hd95", "batch_size", "data")})
    try:
        write_json(path, result, indent=2)
    except OSError as exc:
        raise ConfigError(f"{exc}; choose another --out") from exc  # a WriteError: it names the file
    out(f"{'class':<20}{'IoU':>8}{'Dice':>8}")
    for name, iou, dice in zip(result["classes"], result["per_class_iou"], result["per_class_dice"]):
        out(f"{printable(name):<20}{_number(iou):>8}{_number(dice):>8}")
    summary = ["dice", "iou", "miou", "pixel_accuracy"] + (["hd95"] if args.hd95 else [])
    out("  ".join(f"{k}={_number(result[k])}" for k in summary))
    classes = result["classes"]
    first, k = printable(classes[0]), len(classes)
    scored = "class 1" if k == 2 else f"classes 1..{k - 1}"
    averaged = (f"{scored} (class 0, {first}, is a background, left out)" if result["background"]
                else f"all {k} classes (class 0, {first}, is scored like the others)")
    out(f"dice, iou: mean over {averaged}")
    out(f"wrote {path}")
    return EXIT_OK


def default_output(checkpoint: str | Path, split: str, overwrite: bool = False) -> Path:
    """Where ``eval`` writes without ``--out``: ``eval_<split>.json`` in the run folder of a checkpoint under
    ``<run>/checkpoints/`` (or given as the run folder), else beside the checkpoint file.

    Found before anything is evaluated, and refused when it exists unless ``overwrite``: an earlier result (of
    this split, perhaps of other data) is never replaced without a word.
    """
    from unetfamily.engine.checkpoint import resolve_checkpoint
    from unetfamily.errors import ConfigError

    file = resolve_checkpoint(checkpoint)
    folder = file.parent.parent if file.parent.name == "checkpoints" else file.parent
    path = folder / f"eval_{split}.json"
    if os.path.lexists(path) and not overwrite:
        raise ConfigError(f"{path} (eval's output when no --out is given) already exists, from an earlier evaluation "
                          f"of split {split!r}; nothing was evaluated. Pass --overwrite to replace it, or name another "
                          "file with --out")
    return path


def _data_spec(data: str | None) -> Any:
    """``--data``: a dataset config file, a folder (as ``compare --data``), or a type name; a missing path is
    refused."""
    from unetfamily.plan.make import data_spec

    if not data:
        return None
    check_data_option("--data", data)
    return data_spec(data)[0]


def _number(value: float | None) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"
