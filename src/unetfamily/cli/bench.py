"""``unetfamily bench``: parameters, MACs, latency, throughput and peak memory of models."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from unetfamily.cli._common import (
    AT_LEAST_ONE, EXIT_OK, check_options, command, out, refuse_existing_output, split_names,
)

__all__ = ["add_parser", "run"]

DEFAULT_MODELS = "fcn8s,unet,unet_plusplus,unet_3plus"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``unetfamily bench``."""
    p = command(subparsers, "bench", run, help="parameters, MACs, latency, throughput and peak memory of models",
                description="Measure each model in fresh processes (one times it, one measures peak memory) and "
                            "print one row per model, input size and autocast dtype.")
    p.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated registry names")
    p.add_argument("--size", type=int, nargs="+", default=[256], help="input side length(s)")
    p.add_argument("--batch", type=int, default=2, help="images per forward pass")
    p.add_argument("--width", default="16", help="base width (e.g. 16: U-Net 16..256) or 'paper'")
    p.add_argument("--in-channels", type=int, default=3, help="image channels")
    p.add_argument("--num-classes", type=int, default=1, help="model outputs (1: binary)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N; none given: CUDA when available, else cpu")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per figure (the median is reported)")
    p.add_argument("--no-train", action="store_true", help="inference only")
    p.add_argument("--amp", default="none", help="comma-separated autocast dtypes to measure: none (fp32), bf16, fp16")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format (faster on CPU)")
    p.add_argument("--memory-saving", choices=["none", "recompute", "checkpoint"],
                   help="training memory saving (identical results; see docs/speed.md); none given: recompute "
                        "(refused with --no-train, which measures no training)")
    p.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")


def _width(value: str) -> int | None:
    """``None`` for the papers' widths, else the base width."""
    from unetfamily.errors import ConfigError

    if value == "paper":
        return None
    try:
        width = int(value)
    except ValueError:
        raise ConfigError(f"--width {value!r}: give a base width such as 16, or 'paper'") from None
    if width < 1:
        raise ConfigError(f"--width must be at least 1, got {width}")
    return width


def _checked(args: argparse.Namespace) -> tuple[list[str], list[str], int | None, str]:
    """(model names, amp dtypes, base width, device) from the options; a bad one raises ConfigError."""
    from unetfamily.bench import AMP_CHOICES
    from unetfamily.engine.device import resolve_device
    from unetfamily.errors import ConfigError, unknown_choice
    from unetfamily.models import resolve_model_name

    check_options(args, size=AT_LEAST_ONE, batch=AT_LEAST_ONE, in_channels=AT_LEAST_ONE, num_classes=AT_LEAST_ONE,
                  repeats=AT_LEAST_ONE)
    if args.no_train and args.memory_saving is not None:
        raise ConfigError("--memory-saving applies to training, and --no-train measures none: leave one of them out")
    amps = split_names("--amp", args.amp)
    for amp in amps:
        if amp not in AMP_CHOICES:
            raise unknown_choice("--amp", amp, AMP_CHOICES)
    models = [resolve_model_name(m) for m in split_names("--models", args.models)]
    device = str(resolve_device(args.device or "auto", "--device"))
    refuse_existing_output("--json", args.json, args.overwrite)
    if args.json is not None and not args.json.parent.is_dir():  # found out now, not after measuring
        raise ConfigError(f"--json {args.json}: folder {args.json.parent} does not exist; create it or choose another")
    return models, amps, _width(args.width), device


def _row_line(row: dict[str, Any]) -> str:
    train_mb = row["train_peak_bytes"] / 2**20 if row["train_peak_bytes"] >= 0 else float("nan")
    return (f"{row['model']:<24}{row['size']:>6}{row['amp']:>6}{row['params']:>12,d}{row['macs_per_image'] / 1e9:>10.2f}"
            f"{row['forward_s'] * 1e3:>9.1f}{row['images_per_s']:>8.1f}{row['train_step_s'] * 1e3:>10.1f}"
            f"{train_mb:>10.0f}")


def run(args: argparse.Namespace) -> int:
    """Measure every (size, model, dtype), print a row each, optionally write them as JSON."""
    import torch

    from unetfamily.bench import measure_isolated
    from unetfamily.errors import ConfigError
    from unetfamily.files import write_json
    from unetfamily.models import family_kwargs

    models, amps, width, device = _checked(args)
    memory_saving = args.memory_saving or "recompute"
    out(f"device={device} batch={args.batch} width={args.width} threads={torch.get_num_threads()} "
        f"channels_last={args.channels_last} memory_saving={'-' if args.no_train else memory_saving}")
    out(f"{'model':<24}{'size':>6}{'amp':>6}{'params':>12}{'GMACs/img':>10}{'fwd ms':>9}{'img/s':>8}{'train ms':>10}"
        f"{'train MB':>10}")
    rows = []
    for size in args.size:
        for name in models:
            kwargs = {**family_kwargs(name, width), "in_channels": args.in_channels, "num_classes": args.num_classes}
            shape = (args.batch, args.in_channels, size, size)
            for amp in amps:
                row = {"model": name, "size": size, "batch": args.batch, "amp": amp,
                       **measure_isolated(name, kwargs, shape, device, args.repeats, train=not args.no_train,
                                          channels_last=args.channels_last, amp=amp, memory_saving=memory_saving)}
                row["macs_per_image"] = row["flops"] // 2 // args.batch
                rows.append(row)
                out(_row_line(row))
    if args.json:
        try:
            write_json(args.json, {"device": device, "rows": rows}, indent=2)
        except OSError as exc:
            raise ConfigError(f"--json: {exc} (the rows are printed above)") from exc  # a WriteError names the file
    return EXIT_OK
