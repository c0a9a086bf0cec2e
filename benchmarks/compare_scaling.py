"""``compare --executor ray`` against itself with one worker and with two, and against the local executor.

    python benchmarks/compare_scaling.py                      # 8 runs (4 models x 2 seeds) on synthetic data
    python benchmarks/compare_scaling.py --steps 60 --json docs/results/scale/compare_scaling.json

One process, one after another on an idle machine: the same 8-run comparison (each run 1 thread)
  local   the local executor (runs one after another in this process): the baseline
  ray x1  a local Ray instance with 1 CPU: one task at a time, so its excess over ``local`` is Ray's
          overhead (scheduling, worker start, pickling the run, the storage probe)
  ray x2  a local Ray instance with 2 CPUs: two tasks at a time
Each into a fresh --out. Reported: the wall time of the training phase (all runs trained and evaluated:
``executor.train``) and of the whole command (data, plan, report too), the speed-up of ray x2 over
ray x1, parallel efficiency = speed-up / 2, and Ray's overhead per run = (ray x1 - local) / runs on
the training phase. Also each mode's sum of the runs' own training seconds (``train_seconds``, timed in the
process that trained each run), which separates what slows the runs themselves when two train at once
(sharing the machine's cores, caches, memory bandwidth and disk) from how busy the scheduler keeps the workers.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import unetfamily.compare.ray_executor as ray_executor
import unetfamily.compare.runner as runner
from unetfamily.compare.config import CompareConfig
from unetfamily.compare.runner import run_compare


def _timed_train(cls: type, phases: list[float]) -> Any:
    """``cls.train`` wrapped so that each call's wall time is appended to ``phases``."""
    original = cls.train

    def train(self: Any, *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(self, *args)
        finally:
            phases.append(time.perf_counter() - start)

    cls.train = train
    return original


def measure(cfg: CompareConfig, cpus: int | None, root: Path, name: str) -> dict[str, float]:
    """Wall seconds of one comparison's training phase and of the whole command; ``cpus`` None: local."""
    import ray

    phases: list[float] = []
    cls = runner._Local if cpus is None else ray_executor.RayExecutor
    original = _timed_train(cls, phases)
    if cpus is not None:
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    start = time.perf_counter()
    try:
        results = run_compare(cfg, root / name)
    finally:
        whole = time.perf_counter() - start
        cls.train = original
        if cpus is not None:
            ray.shutdown()
    runs_s = sum(run.train_seconds for run in results.runs)
    return {"train_s": round(phases[0], 2), "whole_s": round(whole, 2), "runs_s": round(runs_s, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="fcn8s,unet,unet_plusplus,unet_3plus")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60, help="optimiser steps per run")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the local executor's runs train in this process: 1 thread, as each Ray task
    common = dict(data="synthetic", models=args.models.split(","), seeds=args.seeds, steps=args.steps,
                  epochs=args.steps, size=args.size, batch_size=4, base_width=8, lr=3e-3, augment="none",
                  costs=False, plan="none")
    runs = len(args.models.split(",")) * args.seeds
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        local = measure(CompareConfig(**common), None, root, "local")
        one = measure(CompareConfig(**common, executor="ray", cpus_per_run=1), 1, root, "ray1")
        two = measure(CompareConfig(**common, executor="ray", cpus_per_run=1), 2, root, "ray2")
    speedup = {k: one[k] / two[k] for k in ("train_s", "whole_s")}
    result = {
        "runs": runs, "steps": args.steps, "size": args.size, "local": local, "ray_1_worker": one, "ray_2_workers": two,
        "speedup_train": round(speedup["train_s"], 3), "efficiency_train": round(speedup["train_s"] / 2, 3),
        "speedup_whole": round(speedup["whole_s"], 3), "efficiency_whole": round(speedup["whole_s"] / 2, 3),
        "ray_overhead_per_run_s": round((one["train_s"] - local["train_s"]) / runs, 2),
        # the same runs' own training seconds, two at a time against one at a time: what slows the runs themselves
        "runs_slowdown_2_workers": round(two["runs_s"] / one["runs_s"], 3),
        # the share of the phase the two workers spent in training steps (the rest: setup, evaluation, start)
        "training_share_2_workers": round(two["runs_s"] / (2 * two["train_s"]), 3),
    }
    print(f"{runs} runs of {args.steps} steps at {args.size} px, 1 thread each")
    print("| executor | training phase (s) | whole command (s) | runs' own training, summed (s) |\n|---|---:|---:|---:|")
    for label, m in (("local", local), ("ray, 1 worker", one), ("ray, 2 workers", two)):
        print(f"| {label} | {m['train_s']:.1f} | {m['whole_s']:.1f} | {m['runs_s']:.1f} |")
    print(f"speed-up 2 vs 1 worker: {result['speedup_train']:.2f}x training ({result['efficiency_train']:.0%} "
          f"efficiency), {result['speedup_whole']:.2f}x whole command ({result['efficiency_whole']:.0%})")
    print(f"Ray's overhead per run: {result['ray_overhead_per_run_s']:.2f} s")
    print(f"each run's own training, two at a time against one at a time: {result['runs_slowdown_2_workers']:.2f}x; "
          f"the two workers in training steps {result['training_share_2_workers']:.0%} of the training phase")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
