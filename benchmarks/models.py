"""Per-model cost on the current device: parameters, FLOPs, forward and train-step time, peak memory.

    python benchmarks/models.py                       # the six families at base width 16, 128 px
    python benchmarks/models.py --width paper --size 256 --batch 2 --models unet_huang2020,unet_3plus_huang2020

Each model is measured in two fresh subprocesses, one for time and one for memory
(:func:`unetfamily.bench.measure_isolated`). Ratios are against the first model, measured in
the same run. ``--json FILE`` writes the rows.
"""
from __future__ import annotations

import argparse
import sys

import torch

from unetfamily.bench import measure_isolated
from unetfamily.files import write_json
from unetfamily.models import family_kwargs

DEFAULT_MODELS = "unet,fcn32s,fcn16s,fcn8s,unet_plusplus,unet_3plus"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=DEFAULT_MODELS)
    p.add_argument("--width", default="16", help="base width, or 'paper' for the presets' own widths")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--in-channels", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", help="write the rows to this file")
    args = p.parse_args(argv)
    shape = (args.batch, args.in_channels, args.size, args.size)
    width = None if args.width == "paper" else int(args.width)
    print(f"device={args.device} input={shape} width={args.width} threads={torch.get_num_threads()}")
    rows: list[dict] = []
    for name in args.models.split(","):
        kwargs = {**family_kwargs(name, width), "in_channels": args.in_channels}
        rows.append({"model": name, **measure_isolated(name, kwargs, shape, args.device, args.repeats)})
        print_row(rows[-1], rows[0], header=len(rows) == 1)
    if args.json:
        write_json(args.json, {"device": args.device, "shape": shape, "width": args.width, "rows": rows}, indent=2)
    return 0


def print_row(row: dict, base: dict, header: bool) -> None:
    if header:
        print(f"{'model':<26}{'params':>12}{'GFLOP':>9}{'fwd ms':>9}{'train ms':>10}"
              f"{'fwd MB':>8}{'train MB':>9}{'train x':>9}{'mem x':>7}")
    mb = 2**20
    print(
        f"{row['model']:<26}{row['params']:>12,d}{row['flops'] / 1e9:>9.2f}{row['forward_s'] * 1e3:>9.1f}"
        f"{row['train_step_s'] * 1e3:>10.1f}{row['forward_peak_bytes'] / mb:>8.0f}{row['train_peak_bytes'] / mb:>9.0f}"
        f"{row['train_step_s'] / base['train_step_s']:>9.2f}{row['train_peak_bytes'] / max(base['train_peak_bytes'], 1):>7.2f}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
