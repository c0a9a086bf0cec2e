"""Per-model cost on the current device: parameters, FLOPs, forward and train-step time, peak memory.

    python benchmarks/models.py                       # the six families at a small width, 128 px
    python benchmarks/models.py --width paper --size 256 --batch 2 --models unet_huang2020,unet_3plus_huang2020

Each model is measured in two fresh subprocesses, one for time and one for memory (CPU peak
memory is a resident-set rise, taken with glibc told to return freed memory at once; see
``unetfamily.bench``). Ratios are against the first model,
measured in the same run. ``--json FILE`` writes the rows.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import torch

from unetfamily import create_model
from unetfamily.bench import measure, memory_env

SMALL = {
    "fcn": dict(channels=(16, 32, 64, 128, 128), fc_channels=256),
    "unet": dict(channels=(16, 32, 64, 128, 256)),
    "unet_plusplus": dict(channels=(16, 32, 64, 128, 256)),
    "unet_3plus": dict(channels=(16, 32, 64, 128, 256), cat_channels=16),
}
DEFAULT_MODELS = "unet,fcn32s,fcn16s,fcn8s,unet_plusplus,unet_3plus"


def model_kwargs(name: str, width: str) -> dict:
    if width == "paper":
        return {}
    family = "fcn" if name.startswith("fcn") else name.split("_huang")[0].split("_zhou")[0]
    return SMALL[family]


def measure_one(name: str, args: argparse.Namespace, what: str) -> dict:
    torch.manual_seed(0)
    shape = (args.batch, args.in_channels, args.size, args.size)
    model = create_model(name, in_channels=args.in_channels, **model_kwargs(name, args.width))
    cost = measure(model, shape, args.device, args.repeats, warmup=1, timing=what == "time", memory=what == "memory")
    return {"model": name, **cost.as_dict()}


def run_isolated(name: str, args: argparse.Namespace, what: str) -> dict:
    cmd = [sys.executable, __file__, "--one", name, "--what", what, "--width", args.width, "--size", str(args.size),
           "--batch", str(args.batch), "--in-channels", str(args.in_channels), "--device", args.device,
           "--repeats", str(args.repeats)]
    env = memory_env() if what == "memory" else None
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=DEFAULT_MODELS)
    p.add_argument("--width", choices=["small", "paper"], default="small")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--in-channels", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", help="write the rows to this file")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one model, print JSON
    p.add_argument("--what", choices=["time", "memory"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    shape = (args.batch, args.in_channels, args.size, args.size)
    if args.one:
        print(json.dumps(measure_one(args.one, args, args.what)))
        return 0
    print(f"device={args.device} input={shape} width={args.width} threads={torch.get_num_threads()}")
    rows = []
    for name in args.models.split(","):
        timed, mem = run_isolated(name, args, "time"), run_isolated(name, args, "memory")
        rows.append({**timed, "forward_peak_bytes": mem["forward_peak_bytes"], "train_peak_bytes": mem["train_peak_bytes"]})
        print_row(rows[-1], rows[0], header=len(rows) == 1)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": args.device, "shape": shape, "width": args.width, "rows": rows}, f, indent=2)
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
