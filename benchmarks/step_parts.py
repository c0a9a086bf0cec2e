"""The parts of a training step around the model: optimizer kernels, clipping, finiteness checks.

    python benchmarks/step_parts.py --model unet_huang2020

On the parameters of a paper-width model (gradients filled with small random values), in one
process: AdamW through the for-loop, foreach (PyTorch's default) and fused kernels, clipping
by ``clip_grad_norm_`` against the norm alone (what the default step pays when nothing is over
the limit), and the weights' finiteness check by max-abs against the 2-norm pre-check. Medians
of ``--repeats`` calls after one warm-up; ratios to the first row of each group.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    from unetfamily import create_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="unet_huang2020")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    params = list(create_model(args.model).parameters())
    for param in params:
        param.grad = torch.randn_like(param) * 1e-3
    grads, weights = [p.grad for p in params], [p.detach() for p in params]
    groups = {
        "optimizer": {f"AdamW {name}": torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-4, **kw).step
                      for name, kw in (("foreach", {"foreach": True}), ("for-loop", {"foreach": False}),
                                       ("fused", {"fused": True}))},
        "clipping": {"clip_grad_norm_": lambda: torch.nn.utils.clip_grad_norm_(params, 1e9),
                     "norm only (clip when over)": lambda: torch.nn.utils.get_total_norm(grads)},
        "finiteness check": {"max-abs": lambda: torch._foreach_norm(weights, float("inf")),
                             "2-norm pre-check": lambda: torch._foreach_norm(weights, 2.0)},
    }
    count = sum(p.numel() for p in params)
    print(f"{args.model}: {count / 1e6:.1f}M parameters, {args.threads} threads, torch {torch.__version__}")
    for group, rows in groups.items():
        base = None
        for name, fn in rows.items():
            ms = median_ms(fn, args.repeats)
            base = base or ms
            print(f"  {group:<18}{name:<30}{ms:8.1f} ms {ms / base:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
