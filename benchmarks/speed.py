"""Our implementations against the authors' code, side by side: train-step time, inference time, peak memory.

    python benchmarks/speed.py                       # the issue's protocol: paper presets, batch 2, 3x256x256
    python benchmarks/speed.py --models unet_3plus_huang2020 --variants authors,fast --repeats 2
    python benchmarks/speed.py --size 128 --json docs/results/speed/speed_128.json

Times: all variants of a model are built in one process and their steps interleaved, round
after round (``--repeats`` rounds, the order rotated each round), so a machine that slows down
or speeds up during the run slows every variant alike and the ratios stay fair; the figure is
each variant's median. Memory: every (model, variant) in a fresh process with
``MALLOC_MMAP_THRESHOLD_`` so the resident set follows live tensors (see ``unetfamily.bench``).
Everything is reported as ratios to the ``authors`` variant of the same model. A train step is
forward + backward + Adam step on a mean-of-outputs loss (``defaults``: the project's own step).
Achieved GFLOP/s (training FLOPs counted by ``FlopCounterMode``, fwd + bwd) is put against the
machine's peak, the best of a few probe kernels run in the same run.

Variants (all run the SAME architecture: same parameters, same multiply-accumulates):
    authors     the authors' module structure (benchmarks/authors_models.py), fp32, NCHW
    plain       ours, memory_saving="none", NCHW: what PyTorch does by default with our modules
    plain_cl    plain in channels_last: fast without the recomputation (what recompute costs)
    fast        ours, memory_saving="recompute", channels_last: the default fast path, outputs
                and gradients bit-identical to plain (tests/models/test_memory_saving.py)
    checkpoint  ours, memory_saving="checkpoint", channels_last (opt-in, least memory)
    bf16        fast under bf16 autocast (opt-in; not bit-identical: bf16 rounding)
    compiled    plain_cl through torch.compile (inductor; compile time excluded by the warm-up)
    defaults    exactly what ``unetfamily train`` does with no options: the default Config (its
                memory format, memory saving, optimizer, loss, clipping and checks) through
                ``setup_run`` and ``train_step`` on synthetic data of the same shape (one fixed batch)
The ``unet_3plus_efficient`` model (a different, cheaper architecture) can be added to --models;
its ratios are against the exact UNet3+'s authors row.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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
    "defaults": {},
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


def defaults_run(model: str, shape: list[int], folder: str, overrides: list[str]) -> tuple[
        torch.nn.Module, Callable[[], None], Callable[[], None]]:
    """(model, train step, eval forward) of ``unetfamily train`` with no options but the model and data shape.

    The run is set up by ``setup_run`` (memory format, memory saving, optimizer, loss as the default
    Config chooses them for this input); the step is ``train_step`` on one fixed batch. ``overrides``
    (``key=value``, as on the command line) change the defaults, to measure an alternative.
    """
    from unetfamily.config import apply_overrides, config_from_dict
    from unetfamily.engine.loop import StopFlag, train_step
    from unetfamily.engine.run_setup import setup_run

    batch, channels, size = shape[0], shape[1], shape[2]
    data = {"model": {"name": model}, "loader": {"batch_size": batch}, "output_dir": folder,
            "data": {"type": "synthetic", "num_samples": 2 * batch, "size": size, "in_channels": channels},
            "train": {"progress": False}}
    cfg = config_from_dict(apply_overrides(data, overrides))
    run = setup_run(cfg)
    batch_data = next(iter(run.train_loader))
    stop = StopFlag()
    x = batch_data["image"].to(run.device).contiguous(
        memory_format=torch.channels_last if run.channels_last else torch.contiguous_format)

    def forward() -> None:
        run.model.eval()
        with torch.no_grad():
            run.model(x)
        run.model.train()

    return run.model, lambda: train_step(run, batch_data, None, stop), forward


def step_functions(model: str, variant: str, shape: list[int], folder: str, overrides: list[str]) -> tuple[
        torch.nn.Module, Callable[[], None], Callable[[], None]]:
    """(model, train step, eval forward) of one row."""
    from unetfamily.bench import step_functions as make

    if variant == "defaults":
        return defaults_run(model, shape, folder, overrides)
    net = build(model, variant)
    options = {k: v for k, v in VARIANTS[variant].items() if k in ("channels_last", "amp")}
    forward, step = make(net, tuple(shape), "cpu", **options)
    return net, step, forward


def _rerun_rows(spec: dict) -> None:
    """``--rerun-rows N``: UNet++'s recompute re-runs its N finest rows at every input size (0: none)."""
    if spec.get("rerun_rows") is not None:
        import unetfamily.models.unet_plusplus as upp

        upp.RERUN_ROWS, upp.RERUN_FROM_PIXELS = spec["rerun_rows"], 0


def time_worker(spec: dict) -> dict:
    """Every variant of one model in this process, their steps and forwards interleaved round by round."""
    from unetfamily.bench import count_train_flops, peak_gflops

    _rerun_rows(spec)
    torch.set_num_threads(spec["threads"])
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        built = {v: step_functions(spec["model"], v, spec["shape"], str(Path(tmp) / v), spec["set"]) for v in spec["variants"]}
        for _, step, forward in built.values():  # warm-up: optimizer state, oneDNN primitives
            forward()
            step()
            step()
        for what, index in (("train_step_s", 1), ("forward_s", 2)):
            times: dict[str, list[float]] = {v: [] for v in built}
            for r in range(spec["repeats"]):
                order = list(built)[r % len(built):] + list(built)[:r % len(built)]
                for variant in order:
                    start = time.perf_counter()
                    built[variant][index]()
                    times[variant].append(time.perf_counter() - start)
            for variant, values in times.items():
                rows.setdefault(variant, {})[what] = statistics.median(values)
        for variant, (net, _, _) in built.items():
            rows[variant]["train_flops"] = count_train_flops(build(spec["model"], "plain") if variant == "defaults"
                                                             else net, tuple(spec["shape"]))
    if spec.get("probe"):
        rows["_peak"] = peak_gflops("cpu")
    return rows


def memory_worker(spec: dict) -> dict:
    """Peak memory of one (model, variant), alone in this process."""
    from unetfamily.bench import peak_memory

    _rerun_rows(spec)
    torch.set_num_threads(spec["threads"])
    cpu = torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        _, step, forward = step_functions(spec["model"], spec["variant"], spec["shape"], str(Path(tmp) / "run"),
                                          spec["set"])
        forward()
        forward_peak = peak_memory(forward, cpu)
        step()  # creates the optimizer state: memory that stays, not a per-step peak
        return {"train_peak_bytes": peak_memory(step, cpu), "forward_peak_bytes": forward_peak}


def run_worker(spec: dict) -> dict:
    from unetfamily.bench import memory_env

    env = memory_env() if spec["what"] == "memory" else None
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{spec['model']} / {spec.get('variant', spec.get('variants'))} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _with_ratios(row: dict, rows: list[dict], best: float) -> dict:
    """``row`` with its GFLOP/s, its fraction of the peak and its ratios to its model's authors row."""
    row["train_gflops_per_s"] = row["train_flops"] / row["train_step_s"] / 1e9
    row["fraction_of_peak"] = row["train_gflops_per_s"] / best
    model = BASELINE_OF.get(row["model"], row["model"])
    ref = row if row["variant"] == "authors" else next(
        (r for r in rows if r["model"] == model and r["variant"] == "authors"), None)
    for key in ("train_step_s", "forward_s", "train_peak_bytes"):
        row[f"{key}_vs_authors"] = row[key] / ref[key] if ref else math.nan
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=DEFAULT_MODELS)
    p.add_argument("--variants", default="authors,plain,fast,checkpoint,bf16")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds; each variant's median")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change a default of the defaults variant (e.g. train.channels_last=false); repeatable")
    p.add_argument("--rerun-rows", type=int, help="UNet++: re-run this many finest rows at every size (default: "
                   "the rule of models/unet_plusplus.py)")
    p.add_argument("--json", help="write all rows (and the peak probe) to this file")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(time_worker(spec) if spec["what"] == "time" else memory_worker(spec)))
        return 0
    shape = [args.batch, 3, args.size, args.size]
    base = {"shape": shape, "threads": args.threads, "repeats": args.repeats, "set": args.set,
            "rerun_rows": args.rerun_rows}
    rows: list[dict] = []
    peak: dict[str, float] = {}
    for model in args.models.split(","):
        variants = [v for v in args.variants.split(",") if not (v == "authors" and model in BASELINE_OF)]
        times = run_worker({**base, "model": model, "variants": variants, "what": "time", "probe": not peak})
        if not peak:
            peak = times.pop("_peak")
            print(f"input {shape}, {args.threads} threads, torch {torch.__version__}; peak probe (GFLOP/s): "
                  + ", ".join(f"{k} {v:.0f}" for k, v in peak.items()))
            print(f"{'model':<26}{'variant':<11}{'train s':>8}{'x':>6}{'infer s':>8}{'x':>6}{'train MB':>9}{'x':>6}"
                  f"{'infer MB':>9}{'GFLOP/s':>8}{'%peak':>6}")
        for variant in variants:
            row = {"model": model, "variant": variant, **times[variant],
                   **run_worker({**base, "model": model, "variant": variant, "what": "memory"})}
            rows.append(_with_ratios(row, rows, max(peak.values())))
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
