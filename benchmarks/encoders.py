"""Every decoder family on every encoder: parameters, MACs and train-step time against the family's own encoder.

    python benchmarks/encoders.py                 # parameters and GMACs at 256 x 256 (meta device, seconds)
    python benchmarks/encoders.py --time --size 128 --threads 2

Parameters and MACs (one 256 x 256 RGB image, eval mode, counted by torch.utils.flop_counter on
the meta device) for each family on its own paper-width encoder (``unet``, ``unet_plusplus``,
``unet_3plus`` defaults) and on each pretrained-architecture encoder. With ``--time``: the
median fp32 train step (forward, backward, AdamW; batch 2) of each, as a ratio to the family's
own encoder measured in the same process, rounds interleaved so machine drift hits all alike.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from unetfamily.bench import count_flops, count_params
from unetfamily.models import create_model, final_output
from unetfamily.models.encoders import list_encoders

FAMILIES = ("unet", "unet_plusplus", "unet_3plus")


def _step(model: torch.nn.Module, x: torch.Tensor) -> callable:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        out = model(x)
        sum(o.float().mean() for o in (out if isinstance(out, list) else [final_output(out)])).backward()
        opt.step()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--time", action="store_true", help="also time train steps (slow at full width)")
    parser.add_argument("--size", type=int, default=128, help="image side for --time")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    encoders = [None, *list_encoders()]
    print("family\tencoder\tparameters\tGMACs@256" + ("\tstep x own" if args.time else ""))
    for family in FAMILIES:
        models = {e: create_model(family, **({"encoder": e} if e else {})) for e in encoders}
        times: dict[str | None, list[float]] = {e: [] for e in encoders}
        if args.time:
            x = torch.rand(2, 3, args.size, args.size)
            steps = {e: _step(m.train(), x) for e, m in models.items()}
            for fn in steps.values():
                fn()  # warm-up
            for _ in range(args.rounds):
                for e, fn in steps.items():
                    start = time.perf_counter()
                    fn()
                    times[e].append(time.perf_counter() - start)
        for e, model in models.items():
            line = (f"{family}\t{e or '(own)'}\t{count_params(model):,d}\t"
                    f"{count_flops(model, (1, 3, 256, 256)) / 2e9:.1f}")
            if args.time:
                line += f"\t{statistics.median(times[e]) / statistics.median(times[None]):.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
