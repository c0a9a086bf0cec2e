"""UNet++ inference-time pruning: FLOPs and forward latency of levels L1..L{D} against the full model.

    python benchmarks/pruning.py --size 128 --batch 4
    python benchmarks/pruning.py --paper --size 256 --batch 1      # widths 32..512 (Zhou et al.)
    python benchmarks/pruning.py --paper --size 256 --batch 1 --channels-last

Every level is timed in this process against the full deep-supervised forward (the baseline),
interleaved, and the ratios are printed next to the FLOP ratios: pruned forwards should be
faster roughly in proportion to the work they skip. Outputs are checked equal to the full
model's head L before timing.
"""
from __future__ import annotations

import argparse
import sys

import torch

from unetfamily import create_model
from unetfamily.bench import count_flops, time_call


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--paper", action="store_true", help="paper widths 32..512 instead of 16..256")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--channels-last", action="store_true", help="model and input in channels_last")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    channels = (32, 64, 128, 256, 512) if args.paper else (16, 32, 64, 128, 256)
    model = create_model("unet_plusplus", channels=channels, deep_supervision=True).eval()
    shape = (args.batch, 3, args.size, args.size)
    x = torch.randn(shape)
    if args.channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    device = torch.device("cpu")
    with torch.no_grad():
        full_out = model(x)
        for level in range(1, model.depth + 1):
            torch.testing.assert_close(model.forward_level(x, level), full_out[model.depth - level])
        full_flops = count_flops(model, shape)
        full_s = time_call(lambda: model(x), device, args.repeats)
        print(f"UNet++ channels={channels} input={shape} channels_last={args.channels_last} threads={torch.get_num_threads()}")
        print(f"{'level':<8}{'params':>11}{'GFLOP':>9}{'ms':>9}{'FLOP x':>9}{'time x':>9}")
        print(f"{'full':<8}{sum(p.numel() for p in model.parameters()):>11,d}{full_flops / 1e9:>9.2f}"
              f"{full_s * 1e3:>9.1f}{1:>9.2f}{1:>9.2f}")
        for level in range(1, model.depth + 1):
            small = model.pruned(level)
            flops = count_flops(small, shape)
            level_s = time_call(lambda: model.forward_level(x, level), device, args.repeats)
            print(f"L{level:<7}{sum(p.numel() for p in small.parameters()):>11,d}{flops / 1e9:>9.2f}"
                  f"{level_s * 1e3:>9.1f}{flops / full_flops:>9.2f}{level_s / full_s:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
