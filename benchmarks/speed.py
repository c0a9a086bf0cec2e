"""Our implementations against the authors' code, side by side: train-step time, inference time, peak memory.

    python benchmarks/speed.py                       # the issue's protocol: paper presets, batch 2, 3x256x256
    python benchmarks/speed.py --models unet_3plus_huang2020 --variants authors,fast --repeats 2
    python benchmarks/speed.py --size 128 --json docs/results/speed/speed_128.json

Every (model, variant) is measured in fresh processes (one for time, one for memory with
``MALLOC_MMAP_THRESHOLD_`` so the resident set follows live tensors; see ``unetfamily.bench``),
all within one run, and reported as ratios to the ``authors`` variant of the same model. A
train step is forward + backward + Adam step on a mean-of-outputs loss; times are medians
after warm-up. Achieved GFLOP/s (training FLOPs counted by ``FlopCounterMode``, fwd + bwd) is
put against the machine's peak, the best of a few probe kernels run in this same process.

Variants (all run the SAME architecture: same parameters, same multiply-accumulates):
    authors     the authors' module structure (benchmarks/authors_models.py), fp32, NCHW
    plain       ours, memory_saving="none", NCHW: what PyTorch does by default with our modules
    plain_cl    plain in channels_last: fast without the recomputation (what recompute costs)
    fast        ours, memory_saving="recompute", channels_last: the default fast path, outputs
                and gradients bit-identical to plain (tests/models/test_memory_saving.py)
    checkpoint  ours, memory_saving="checkpoint", channels_last (opt-in, least memory)
    bf16        fast under bf16 autocast (opt-in; not bit-identical: bf16 rounding)
    compiled    plain_cl through torch.compile (inductor; compile time excluded by the warm-up)
The ``unet_3plus_efficient`` model (a different, cheaper architecture) can be added to --models;
its ratios are against the exact UNet3+'s authors row.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

VARIANTS = {
    "authors": {},
    "plain": {"memory_saving": "none"},
    "plain_cl": {"memory_saving": "none", "channels_last": True},
    "fast": {"memory_saving": "recompute", "channels_last": True},
    "checkpoint": {"memory_saving": "checkpoint", "channels_last": True},
    "bf16": {"memory_saving": "recompute", "channels_last": True, "amp": "bf16"},
    "compiled": {"memory_saving": "none", "channels_last": True, "compile": True},
}
DEFAULT_MODELS = "unet_huang2020,unet_plusplus_huang2020,unet_3plus_huang2020"
#: Whose authors row a model's ratios are taken against.
BASELINE_OF = {"unet_3plus_efficient": "unet_3plus_huang2020"}


def build(model: str, variant: str) -> torch.nn.Module:
    """The model of one benchmark row, randomly initialised with seed 0."""
    from authors_models import AUTHORS

    from unetfamily import create_model

    torch.manual_seed(0)
    if variant == "authors":
        return AUTHORS[model]()
    net = create_model(model).set_memory_saving(VARIANTS[variant]["memory_saving"])
    return torch.compile(net) if VARIANTS[variant].get("compile") else net


def worker(spec: dict) -> dict:
    """Measure one (model, variant) in this process: time or memory, as ``spec["what"]`` says."""
    from unetfamily.bench import count_train_flops, measure, peak_gflops

    torch.set_num_threads(spec["threads"])
    model = build(spec["model"], spec["variant"])
    options = {k: v for k, v in VARIANTS[spec["variant"]].items() if k in ("channels_last", "amp")}
    timing = spec["what"] == "time"
    cost = measure(model, tuple(spec["shape"]), "cpu", spec["repeats"], warmup=1, timing=timing, memory=not timing, **options)
    row = cost.as_dict()
    if timing:
        row["train_flops"] = count_train_flops(model, tuple(spec["shape"]))
        if spec.get("probe"):
            row["peak"] = peak_gflops("cpu")
    return row


def run_worker(spec: dict) -> dict:
    from unetfamily.bench import memory_env

    env = memory_env() if spec["what"] == "memory" else None
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{spec['model']} / {spec['variant']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=DEFAULT_MODELS)
    p.add_argument("--variants", default="authors,plain,fast,checkpoint,bf16")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", help="write all rows (and the peak probe) to this file")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    shape = [args.batch, 3, args.size, args.size]
    base = {"shape": shape, "threads": args.threads, "repeats": args.repeats}
    peak = run_worker({**base, "model": "unet_huang2020", "variant": "plain", "what": "time", "repeats": 1, "probe": True})["peak"]
    best = max(peak.values())
    print(f"input {shape}, {args.threads} threads, torch {torch.__version__}; peak probe (GFLOP/s): "
          + ", ".join(f"{k} {v:.0f}" for k, v in peak.items()))
    print(f"{'model':<26}{'variant':<11}{'train s':>8}{'x':>6}{'infer s':>8}{'x':>6}{'train MB':>9}{'x':>6}"
          f"{'infer MB':>9}{'GFLOP/s':>8}{'%peak':>6}")
    rows: list[dict] = []
    for model in args.models.split(","):
        for variant in args.variants.split(","):
            if variant == "authors" and model in BASELINE_OF:
                continue
            row = {"model": model, "variant": variant, **run_worker({**base, "model": model, "variant": variant, "what": "time"})}
            mem = run_worker({**base, "model": model, "variant": variant, "what": "memory"})
            row.update(train_peak_bytes=mem["train_peak_bytes"], forward_peak_bytes=mem["forward_peak_bytes"])
            row["train_gflops_per_s"] = row["train_flops"] / row["train_step_s"] / 1e9
            row["fraction_of_peak"] = row["train_gflops_per_s"] / best
            ref = row if variant == "authors" else next(
                (r for r in rows if r["model"] == BASELINE_OF.get(model, model) and r["variant"] == "authors"), None)
            for key in ("train_step_s", "forward_s", "train_peak_bytes"):
                row[f"{key}_vs_authors"] = row[key] / ref[key] if ref else math.nan
            rows.append(row)
            print(f"{model:<26}{variant:<11}{row['train_step_s']:>8.2f}{row['train_step_s_vs_authors']:>6.2f}"
                  f"{row['forward_s']:>8.2f}{row['forward_s_vs_authors']:>6.2f}{row['train_peak_bytes'] / 2**20:>9.0f}"
                  f"{row['train_peak_bytes_vs_authors']:>6.2f}{row['forward_peak_bytes'] / 2**20:>9.0f}"
                  f"{row['train_gflops_per_s']:>8.0f}{100 * row['fraction_of_peak']:>6.0f}", flush=True)
    if args.json:
        from unetfamily.files import write_json

        write_json(args.json, {"shape": shape, "threads": args.threads, "torch": torch.__version__,
                               "peak_gflops": peak, "rows": rows}, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
