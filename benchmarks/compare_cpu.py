"""Where the CPU time of ``compare --executor ray`` goes: the workers, the driver, and Ray's own processes.

    python benchmarks/compare_cpu.py          # the 8-run comparison of compare_scaling.py, 2 workers x 1 thread
    python benchmarks/compare_cpu.py --steps 60   # its shorter runs, as measured in docs/scale.md

One comparison on a local Ray instance with 2 CPUs (each run 1 thread), the CPU seconds (user + system) of
every process from before to after it (``psutil``), grouped: the Ray workers that trained the runs, the driver
(this process) and, within it, what its helper thread computes while the workers start and train (the
variants' receptive fields; ``time.thread_time``), and Ray's own processes (raylet, GCS,
agents, monitors). On a machine with as many cores as workers, every CPU second outside the workers is taken
from them: it is what two workers lose against one, which has a core to spare.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import unetfamily.compare.runner as runner
from compare_scaling import add_comparison_arguments, comparison
from unetfamily.compare.config import CompareConfig
from unetfamily.compare.runner import run_compare


def _cpu_seconds(psutil: Any) -> dict[int, tuple[str, float]]:
    """{pid: (command line, CPU seconds)} of every process this user can read."""
    seen = {}
    for proc in psutil.process_iter(["cmdline", "name"]):
        try:
            times = proc.cpu_times()
            seen[proc.pid] = (" ".join(proc.info["cmdline"] or []) or proc.info["name"], times.user + times.system)
        except psutil.Error:
            continue
    return seen


def _thread_timed(name: str, spent: dict[str, float]) -> Any:
    """``runner.<name>`` replaced by a wrapper adding its calls' CPU time (of the calling thread) to ``spent``."""
    original = getattr(runner, name)

    def timed(*args: Any) -> Any:
        start = time.thread_time()
        try:
            return original(*args)
        finally:
            spent[name] = spent.get(name, 0.0) + time.thread_time() - start

    setattr(runner, name, timed)
    return original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_comparison_arguments(parser)
    args = parser.parse_args()
    import ray  # psutil is importable once Ray is (it ships it)
    import psutil

    torch.set_num_threads(1)
    spent: dict[str, float] = {}
    originals = {name: _thread_timed(name, spent) for name in ("_receptive_fields",)}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    me = psutil.Process().pid
    before, start = _cpu_seconds(psutil), time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            run_compare(CompareConfig(**comparison(args.models.split(","), args.seeds, args.steps, args.size),
                                      executor="ray", cpus_per_run=1), Path(tmp) / "out")
        wall, after = time.perf_counter() - start, _cpu_seconds(psutil)
    finally:
        ray.shutdown()
        for name, original in originals.items():
            setattr(runner, name, original)
    groups = {"Ray workers (the runs)": 0.0, "driver (this process)": 0.0, "Ray's own processes": 0.0}
    for pid, (cmd, seconds) in after.items():
        used = seconds - before.get(pid, (cmd, 0.0))[1]
        if pid == me:
            groups["driver (this process)"] += used
        elif cmd.startswith("ray::"):
            groups["Ray workers (the runs)"] += used
        elif "/ray/" in cmd:
            groups["Ray's own processes"] += used
    print(f"one comparison, 2 workers x 1 thread: {wall:.1f} s wall, {2 * wall:.1f} CPU seconds on 2 cores")
    print("| what | CPU seconds |\n|---|---:|")
    for label, seconds in groups.items():
        print(f"| {label} | {seconds:.1f} |")
    for name, seconds in spent.items():
        print(f"| driver: {name.strip('_').replace('_', ' ')} (helper thread) | {seconds:.1f} |")


if __name__ == "__main__":
    main()
