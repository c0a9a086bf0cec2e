"""``compare --executor ray`` against itself with one worker and with two, and against the local executor.

    python benchmarks/compare_scaling.py                      # 8 runs (4 models x 2 seeds) on synthetic data
    python benchmarks/compare_scaling.py --json docs/results/scale/compare_scaling_240_1.json
    python benchmarks/compare_scaling.py --steps 60           # runs of ~7 s: mostly a worker's start-up

Each run trains 240 steps by default (about 25 s on this machine): long enough that what is measured is how
busy the scheduler keeps the workers, not the ~5 s a fresh worker process spends importing torch and the
metrics before its first run (a fixed cost, the same for one worker as for two, which runs of minutes or hours
do not notice). ``--steps 60`` keeps the shorter runs of the first measurements (docs/scale.md has both).

One process on an idle machine, the three modes one after another, in ``--rounds`` rounds (default 2; each
mode's figures are medians over them, the efficiency of each round is kept too: this 2-core virtual machine's
speed moves by 10-20% from minute to minute, and one round can land a slow spell on one mode):
the same 8-run comparison (each run 1 thread)
  local   the local executor (runs one after another in this process): the baseline
  ray x1  a local Ray instance with 1 CPU: one task at a time, so its excess over ``local`` is Ray's
          overhead (scheduling, worker start, pickling the run, the storage probe)
  ray x2  a local Ray instance with 2 CPUs: two tasks at a time
Each into a fresh --out. Reported: the wall time of the training phase (all runs trained and evaluated:
``executor.train``) and of the whole command (data, plan, report too), the speed-up of ray x2 over
ray x1, parallel efficiency = speed-up / 2, and Ray's overhead per run = (ray x1 - local) / runs on
the training phase. Also each mode's sum of the runs' own training seconds (``train_seconds``, timed in the
process that trained each run), which separates what slows the runs themselves when two train at once
(sharing the machine's cores, caches, memory bandwidth and disk) from how busy the scheduler keeps the workers,
and each mode's serial part (before the first run is submitted: data, storage probe, planning; after the last
ends: the report).

The machine's own ceiling, measured first: a training loop of the same models at the same widths and size
(1 thread, nothing but forward, backward and Adam) in one process alone, then in two processes at once. Two at a time it runs
``slowdown`` times slower; no scheduler gets two workers past an efficiency of 1 / slowdown.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

import unetfamily.compare.ray_executor as ray_executor
import unetfamily.compare.runner as runner
from unetfamily.compare.config import CompareConfig
from unetfamily.compare.runner import run_compare


def _timed(owner: Any, name: str, starts: list[float], seconds: list[float]) -> Any:
    """``owner.name`` (a method or a module's function) replaced by a wrapper that appends each call's start
    (``perf_counter``) and wall time to ``starts`` and ``seconds``; returns the original, to put back."""
    original = getattr(owner, name)

    def timed(*args: Any) -> Any:
        start = time.perf_counter()
        starts.append(start)
        try:
            return original(*args)
        finally:
            seconds.append(time.perf_counter() - start)

    setattr(owner, name, timed)
    return original


def comparison(models: list[str], seeds: int, steps: int, size: int) -> dict[str, Any]:
    """The benchmark's comparison (synthetic data, base width 8, batch 4, no costs, no plan) as CompareConfig
    arguments, without the executor's."""
    return dict(data="synthetic", models=models, seeds=seeds, steps=steps, epochs=steps, size=size, batch_size=4,
                base_width=8, lr=3e-3, augment="none", costs=False, plan="none")


def _loop(models: list[str], steps: int, size: int) -> float:
    """In a worker process: wall seconds of ``steps`` training steps of each of the comparison's ``models`` at its
    widths (base width 8), 1 thread, batch 4 of ``size`` px: forward, backward and Adam, nothing else
    (:func:`unetfamily.bench.step_functions`)."""
    from unetfamily.bench import step_functions
    from unetfamily.compare.variants import build_variants
    from unetfamily.models import create_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    seconds = 0.0
    for variant in build_variants(models, [], "small", 8, 3, 2):
        model = create_model(variant.model, in_channels=3, num_classes=2, **variant.kwargs)
        _, step = step_functions(model, (4, 3, size, size))
        for _ in range(2):  # warm-up steps
            step()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        seconds += time.perf_counter() - start
    return seconds


def machine_ceiling(models: list[str], steps: int, size: int, rounds: int = 2) -> dict[str, float]:
    """:func:`_loop`'s seconds alone and two at once (medians of ``rounds``), their ratio, and 1 / it."""
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        list(pool.map(_loop, [models] * 2, [0] * 2, [size] * 2))  # both workers import torch first
        alone: list[float] = []
        together: list[float] = []
        for _ in range(rounds):
            alone.append(pool.submit(_loop, models, steps, size).result())
            together.extend(pool.map(_loop, [models] * 2, [steps] * 2, [size] * 2))
    slowdown = statistics.median(together) / statistics.median(alone)
    return {"alone_s": round(statistics.median(alone), 2), "together_s": round(statistics.median(together), 2),
            "slowdown": round(slowdown, 3), "ceiling": round(1 / slowdown, 3)}


def measure(cfg: CompareConfig, cpus: int | None, root: Path, name: str) -> dict[str, float]:
    """Wall seconds of one comparison's training phase and of the whole command; ``cpus`` None: local."""
    import ray

    starts: list[float] = []
    phases: list[float] = []
    probes: list[float] = []
    cls = runner._Local if cpus is None else ray_executor.RayExecutor
    original = _timed(cls, "train", starts, phases)
    probe = _timed(ray_executor, "check_shared_storage", [], probes)
    if cpus is not None:
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    start = time.perf_counter()
    try:
        results = run_compare(cfg, root / name)
    finally:
        whole = time.perf_counter() - start
        cls.train = original
        ray_executor.check_shared_storage = probe
        if cpus is not None:
            ray.shutdown()
    runs_s = sum(run.train_seconds for run in results.runs)
    before = starts[0] - start
    return {"train_s": round(phases[0], 2), "whole_s": round(whole, 2), "runs_s": round(runs_s, 2),
            "before_s": round(before, 2), "after_s": round(whole - before - phases[0], 2),
            "probe_s": round(sum(probes), 2)}


def add_comparison_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the benchmark's comparison: --models, --seeds, --steps, --size."""
    parser.add_argument("--models", default="fcn8s,unet,unet_plusplus,unet_3plus")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=240, help="optimiser steps per run")
    parser.add_argument("--size", type=int, default=64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_comparison_arguments(parser)
    parser.add_argument("--ceiling-steps", type=int, default=20, help="steps per model of the machine-ceiling loop")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of the three modes, one after another; each mode's figures are medians over them")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    ceiling = machine_ceiling(args.models.split(","), args.ceiling_steps, args.size)
    torch.set_num_threads(1)  # the local executor's runs train in this process: 1 thread, as each Ray task
    common = comparison(args.models.split(","), args.seeds, args.steps, args.size)
    runs = len(args.models.split(",")) * args.seeds
    modes = {"local": (CompareConfig(**common), None),
             "ray_1_worker": (CompareConfig(**common, executor="ray", cpus_per_run=1), 1),
             "ray_2_workers": (CompareConfig(**common, executor="ray", cpus_per_run=1), 2)}
    rounds: list[dict[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):  # the modes take turns, so a slow spell of the machine is shared out
            rounds.append({mode: measure(cfg, cpus, Path(tmp), f"{mode}_{r}") for mode, (cfg, cpus) in modes.items()})
    local, one, two = ({k: round(statistics.median(rnd[mode][k] for rnd in rounds), 2) for k in rounds[0][mode]}
                       for mode in modes)
    speedup = {k: one[k] / two[k] for k in ("train_s", "whole_s")}
    result = {
        "runs": runs, "steps": args.steps, "size": args.size, "machine": ceiling, "local": local, "ray_1_worker": one, "ray_2_workers": two,
        "speedup_train": round(speedup["train_s"], 3), "efficiency_train": round(speedup["train_s"] / 2, 3),
        "speedup_whole": round(speedup["whole_s"], 3), "efficiency_whole": round(speedup["whole_s"] / 2, 3),
        "ray_overhead_per_run_s": round((one["train_s"] - local["train_s"]) / runs, 2),
        # the same runs' own training seconds, two at a time against one at a time: what slows the runs themselves
        "runs_slowdown_2_workers": round(two["runs_s"] / one["runs_s"], 3),
        # the share of the phase the two workers spent in training steps (the rest: setup, evaluation, start)
        "training_share_2_workers": round(two["runs_s"] / (2 * two["train_s"]), 3),
        # each round's own efficiencies: how much the machine moved them
        "rounds": [{**rnd, "efficiency_train": round(rnd["ray_1_worker"]["train_s"] / rnd["ray_2_workers"]["train_s"] / 2, 3),
                    "efficiency_whole": round(rnd["ray_1_worker"]["whole_s"] / rnd["ray_2_workers"]["whole_s"] / 2, 3)}
                   for rnd in rounds],
    }
    print(f"this machine: the same training loop {ceiling['slowdown']:.2f}x slower two at once than alone "
          f"({ceiling['together_s']:.2f} vs {ceiling['alone_s']:.2f} s): efficiency ceiling {ceiling['ceiling']:.0%}")
    print(f"{runs} runs of {args.steps} steps at {args.size} px, 1 thread each; medians of {args.rounds} rounds")
    print("| executor | training phase (s) | whole command (s) | before / after the runs (s) "
          "| runs' own training, summed (s) |\n|---|---:|---:|---:|---:|")
    for label, m in (("local", local), ("ray, 1 worker", one), ("ray, 2 workers", two)):
        print(f"| {label} | {m['train_s']:.1f} | {m['whole_s']:.1f} | {m['before_s']:.1f} / {m['after_s']:.1f} "
              f"| {m['runs_s']:.1f} |")
    print(f"speed-up 2 vs 1 worker: {result['speedup_train']:.2f}x training ({result['efficiency_train']:.0%} "
          f"efficiency), {result['speedup_whole']:.2f}x whole command ({result['efficiency_whole']:.0%})")
    print(f"Ray's overhead per run: {result['ray_overhead_per_run_s']:.2f} s; the storage probe took "
          f"{one['probe_s']:.2f} s (1 worker), {two['probe_s']:.2f} s (2 workers)")
    print("each round's efficiency, training phase / whole command: "
          + ", ".join(f"{r['efficiency_train']:.0%} / {r['efficiency_whole']:.0%}" for r in result["rounds"]))
    print(f"each run's own training, two at a time against one at a time: {result['runs_slowdown_2_workers']:.2f}x; "
          f"the two workers in training steps {result['training_share_2_workers']:.0%} of the training phase")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
