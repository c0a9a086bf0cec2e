"""Tiled prediction of large images: time and peak memory against an untiled baseline.

    python benchmarks/tiled.py                             # 2048x2048, tiles 256, batch 4, U-Net width 8
    python benchmarks/tiled.py --size 1024 --repeats 3
    python benchmarks/tiled.py --huge                      # adds 12000x12000, tiled, mask only
    python benchmarks/tiled.py --model unet_3plus --width 16 --bf16 --modes tiled-mask

Rows (each measured in fresh subprocesses, one for time and one for memory, as
``benchmarks/models.py`` does; CPU peak memory is a resident-set rise, see ``unetfamily.bench``):

- ``untiled``: ``Predictor(tile_size=None)``, the whole image in one forward pass.
- ``tiled``: Gaussian-blended 256 px tiles, probabilities (K, H, W) kept.
- ``tiled-mask``: the same, keeping only the (H, W) uint8 mask: memory is the mask plus one tile
  row's accumulator and one batch of tiles, whatever the image size.

The input is a uint8 (3, H, W) tensor made before the measurement (it is not in the peak).
Times are medians after ``--warmup`` untimed runs (none for the 12000 px row, which is timed cold).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import torch

from unetfamily import create_model
from unetfamily.bench import memory_env, peak_memory, time_call
from unetfamily.models import family_kwargs
from unetfamily.engine.predict import Predictor
from unetfamily.files import write_json

HUGE = 12000
ROWS = {"untiled": (None, True), "tiled": (256, True), "tiled-mask": (256, False)}  # tile size, keep probabilities


def measure_one(args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    device = torch.device(args.device)
    width = None if args.width == "paper" else int(args.width)
    model = create_model(args.model, **family_kwargs(args.model, width), num_classes=args.classes).eval()
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    tile, keep = ROWS[args.one]
    predictor = Predictor(model, tile_size=tile and args.tile, overlap=args.overlap, batch_size=args.batch, device=device,
                          amp=args.bf16)
    image = torch.randint(0, 256, (3, args.size, args.size), dtype=torch.uint8)

    def run() -> None:
        predictor.predict(image, keep_probabilities=keep)

    row = {"mode": args.one, "size": args.size, "tiles": predictor.num_tiles(args.size, args.size)}
    if args.what == "time":
        row["seconds"] = time_call(run, device, repeats=args.repeats, warmup=args.warmup)
    else:
        row["peak_bytes"] = peak_memory(run, device)
    return row


def run_isolated(mode: str, size: int, args: argparse.Namespace, what: str) -> dict:
    warmup = 0 if size == HUGE else args.warmup
    cmd = [sys.executable, __file__, "--one", mode, "--what", what, "--size", str(size), "--tile", str(args.tile),
           "--overlap", str(args.overlap), "--batch", str(args.batch), "--model", args.model, "--width", args.width,
           "--classes", str(args.classes), "--device", args.device, "--repeats", str(args.repeats),
           "--warmup", str(warmup)] + ["--bf16"] * args.bf16 + ["--channels-last"] * args.channels_last
    env = memory_env() if what == "memory" else None
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--huge", action="store_true", help="also 12000x12000 (tiled, mask only)")
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--overlap", type=float, default=0.25)
    p.add_argument("--batch", type=int, default=4, help="tiles per forward pass")
    p.add_argument("--model", default="unet", help="registry name")
    p.add_argument("--width", default="8", help="base width (unet 8: widths 8..128) or 'paper'")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--modes", default=",".join(ROWS), help="rows to measure: " + ", ".join(ROWS))
    p.add_argument("--classes", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first (the 12000 px row: none)")
    p.add_argument("--json", help="write the rows to this file")
    p.add_argument("--one", choices=list(ROWS), help=argparse.SUPPRESS)  # internal: one measurement, print JSON
    p.add_argument("--what", choices=["time", "memory"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(args)))
        return 0
    print(f"device={args.device} model={args.model} width={args.width} bf16={args.bf16} channels_last={args.channels_last} "
          f"classes={args.classes} tile={args.tile} overlap={args.overlap} batch={args.batch} threads={torch.get_num_threads()}")
    print(f"{'mode':<12}{'size':>7}{'tiles':>7}{'seconds':>9}{'peak MB':>9}{'MB/Mpx':>8}")
    plan = [(mode, args.size) for mode in args.modes.split(",")] + ([("tiled-mask", HUGE)] if args.huge else [])
    rows = []
    for mode, size in plan:
        row = {**run_isolated(mode, size, args, "time"), **run_isolated(mode, size, args, "memory")}
        rows.append(row)
        mb = row["peak_bytes"] / 2**20
        print(f"{mode:<12}{size:>7}{row['tiles']:>7}{row['seconds']:>9.2f}{mb:>9.0f}{mb / (size * size / 1e6):>8.1f}",
              flush=True)
    if args.json:
        write_json(args.json, {"device": args.device, "args": vars(args), "rows": rows}, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
