"""Inference latency of the paper presets against the authors' code: memory format, BatchNorm folding, bf16.

    python benchmarks/inference.py                   # batch 2, 3x256x256, 2 threads
    python benchmarks/inference.py --batch 1 --size 512 --models unet_3plus_huang2020

All rows of a model run in this one process on the same weights, interleaved round by round
(``--repeats`` rounds, median per row), so machine noise hits every row alike; ratios are to
the authors' module structure (benchmarks/authors_models.py). Logits of every fp32 row are
checked against ours-plain before timing (folding changes them by float rounding only).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from authors_models import AUTHORS  # noqa: E402

from unetfamily import create_model  # noqa: E402
from unetfamily.models import fold_batchnorm  # noqa: E402


def rows_for(name: str, x: torch.Tensor) -> dict[str, tuple[torch.nn.Module, torch.Tensor, bool]]:
    """Row name -> (model, input, bf16)."""
    torch.manual_seed(0)
    ours = create_model(name).eval()
    cl = x.contiguous(memory_format=torch.channels_last)
    ours_cl = copy.deepcopy(ours).to(memory_format=torch.channels_last)
    folded = fold_batchnorm(ours_cl)
    return {
        "authors": (AUTHORS[name]().eval(), x, False),
        "plain": (ours, x, False),
        "channels_last": (ours_cl, cl, False),
        "channels_last+fold": (folded, cl, False),
        "channels_last+fold+bf16": (folded, cl, True),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="unet_huang2020,unet_plusplus_huang2020,unet_3plus_huang2020")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    x = torch.randn(args.batch, 3, args.size, args.size)
    print(f"input {tuple(x.shape)}, {args.threads} threads, median of {args.repeats} interleaved rounds")
    print(f"{'model':<26}{'row':<26}{'ms':>9}{'x authors':>11}{'img/s':>8}")
    for name in args.models.split(","):
        rows = rows_for(name, x)
        with torch.no_grad():
            reference = rows["plain"][0](x)
            for label, (model, inp, bf16) in rows.items():
                if label != "authors" and not bf16:
                    torch.testing.assert_close(model(inp), reference, rtol=1e-3, atol=1e-3)
            times: dict[str, list[float]] = {label: [] for label in rows}
            for round_ in range(args.repeats + 1):  # round 0 warms up
                for label, (model, inp, bf16) in rows.items():
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                        start = time.perf_counter()
                        model(inp)
                        if round_:
                            times[label].append(time.perf_counter() - start)
        base = statistics.median(times["authors"])
        for label, ts in times.items():
            t = statistics.median(ts)
            print(f"{name:<26}{label:<26}{t * 1e3:>9.1f}{t / base:>11.2f}{args.batch / t:>8.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
