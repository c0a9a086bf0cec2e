"""``unetfamily bench``: parameters, MACs, latency, throughput and peak memory of models."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from unetfamily.cli._common import (
    AT_LEAST_ONE, EXIT_OK, check_options, command, out, refuse_existing_output, split_names,
)

__all__ = ["add_parser", "run"]

DEFAULT_MODELS = "fcn8s,unet,unet_plusplus,unet_3plus"

log = logging.getLogger(__name__)


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


def _distinct(option: str, values: list[Any], spelled: list[str] | None = None) -> tuple[list[Any], str | None]:
    """(``values`` once each, in the user's order; a note naming the repeated ones, or None when none is).

    ``spelled`` holds what the user wrote for each value (``unet`` and ``UNet`` are one model), shown in the note.
    """
    spelled = spelled or [str(v) for v in values]
    once = list(dict.fromkeys(values))
    repeated = [v for v in once if values.count(v) > 1]
    if not repeated:
        return once, None
    parts = []
    for value in repeated:
        spellings = list(dict.fromkeys(s for v, s in zip(values, spelled) if v == value))
        also = f" (as {', '.join(spellings)})" if spellings != [str(value)] else ""
        parts.append(f"{value} {values.count(value)} times{also}")
    return once, f"{option} names {'; '.join(parts)}"


def _distinct_options(args: argparse.Namespace, models: list[str], spelled: list[str],
                      amps: list[str]) -> tuple[list[str], list[int], list[str]]:
    """(models, sizes, amp dtypes) once each in the order given; one warning names what was repeated."""
    models, model_note = _distinct("--models", models, spelled)
    sizes, size_note = _distinct("--size", list(args.size))
    amps, amp_note = _distinct("--amp", amps)
    notes = [note for note in (model_note, size_note, amp_note) if note]
    if notes:
        log.warning("%s; each (model, size, amp) is measured and printed once", "; ".join(notes))
    return models, sizes, amps


def _checked(args: argparse.Namespace) -> tuple[list[str], list[int], list[str], int | None, str]:
    """(model names, sizes, amp dtypes, base width, device) from the options, each value once; a bad one raises
    ConfigError."""
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
    spelled = split_names("--models", args.models)
    models = [resolve_model_name(m) for m in spelled]
    width = _width(args.width)
    device = str(resolve_device(args.device or "auto", "--device"))
    refuse_existing_output("--json", args.json, args.overwrite)
    if args.json is not None and not args.json.parent.is_dir():  # found out now, not after measuring
        raise ConfigError(f"--json {args.json}: folder {args.json.parent} does not exist; create it or choose another")
    models, sizes, amps = _distinct_options(args, models, spelled, amps)  # warns only once the options are valid
    return models, sizes, amps, width, device


def _row_line(row: dict[str, Any]) -> str:
    """One table row; GMACs keep 3 significant digits (a tiny model's 0.00312, not 0.00)."""
    from unetfamily.bench import format_gmacs

    train_mb = row["train_peak_bytes"] / 2**20 if row["train_peak_bytes"] >= 0 else float("nan")
    gmacs = format_gmacs(row["macs_per_image"])
    return (f"{row['model']:<24}{row['size']:>6}{row['amp']:>6}{row['params']:>12,d}{gmacs:>10}"
            f"{row['forward_s'] * 1e3:>9.1f}{row['images_per_s']:>8.1f}{row['train_step_s'] * 1e3:>10.1f}"
            f"{train_mb:>10.0f}")


def run(args: argparse.Namespace) -> int:
    """Measure every (size, model, dtype), print a row each, optionally write them as JSON."""
    import torch

    from unetfamily.bench import measure_isolated
    from unetfamily.errors import ConfigError
    from unetfamily.files import write_json
    from unetfamily.models import family_kwargs

    models, sizes, amps, width, device = _checked(args)
    memory_saving = args.memory_saving or "recompute"
    out(f"device={device} batch={args.batch} width={args.width} threads={torch.get_num_threads()} "
        f"channels_last={args.channels_last} memory_saving={'-' if args.no_train else memory_saving}")
    out(f"{'model':<24}{'size':>6}{'amp':>6}{'params':>12}{'GMACs/img':>10}{'fwd ms':>9}{'img/s':>8}{'train ms':>10}"
        f"{'train MB':>10}")
    rows = []
    for size in sizes:
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
