"""The GPU check of docs/scale.md: training throughput per family and a 4-run compare sharing one GPU.

    python benchmarks/gpu.py                                  # on a CUDA machine: 256 px, batch 8
    python benchmarks/gpu.py --device cpu --size 64 --batch 2 --steps 3 --compare-steps 2   # smoke test here

Per family (the paper-width default of each: ``fcn8s``, ``unet``, ``unet_plusplus``, ``unet_3plus``),
in one process: training images/s of the train step (forward, loss over every output, backward,
fused Adam) in fp32 NCHW and in bf16 autocast + channels_last (the CUDA defaults, ``train.amp: auto``
and ``train.channels_last: auto``), the ratio of the two, and each one's peak device memory
(``torch.cuda.max_memory_allocated``; on the CPU not measured). Then a 4-run ``compare`` (2 models x
2 seeds, synthetic data) with ``--executor ray --gpus-per-run 0.5`` (two runs share the GPU) and
its wall time. Prints the GPU's name first: record it beside the numbers.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from unetfamily.bench import step_functions
from unetfamily.models import create_model

FAMILIES = ("fcn8s", "unet", "unet_plusplus", "unet_3plus")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(name: str, device: torch.device, size: int, batch: int, steps: int, fast: bool) -> tuple[float, float]:
    """(training images/s, peak MB) of ``name``'s train step: fp32 NCHW, or bf16 + channels_last when ``fast``."""
    model = create_model(name)
    _, step = step_functions(model, (batch, 3, size, size), device, channels_last=fast, amp="bf16" if fast else "none",
                             fused=device.type in ("cpu", "cuda"))
    step()  # warm-up (cuDNN algorithm choice, allocator)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
    del model, step
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return batch / statistics.median(times), peak


def shared_gpu_compare(device: str, steps: int, size: int) -> float:
    """Wall seconds of a 4-run compare (unet, unet_3plus x 2 seeds) with two runs per GPU under Ray."""
    from unetfamily.compare.config import CompareConfig
    from unetfamily.compare.runner import run_compare

    gpus = 0.5 if device.startswith("cuda") else None
    with tempfile.TemporaryDirectory() as out:
        cfg = CompareConfig(models=["unet", "unet_3plus"], seeds=2, steps=steps, epochs=1, size=size, batch_size=4,
                            device=device, executor="ray", gpus_per_run=gpus, cpus_per_run=1, costs=False,
                            plan="none", loggers=[])
        start = time.perf_counter()
        run_compare(cfg, out)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20, help="timed train steps per model and mode (median)")
    parser.add_argument("--compare-steps", type=int, default=200, help="steps of each run of the 4-run compare")
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}; {args.size} px, batch {args.batch}")
    print("model\tfp32 img/s\tbf16+cl img/s\tx fp32\tfp32 peak MB\tbf16+cl peak MB")
    for family in FAMILIES:
        slow, slow_peak = images_per_second(family, device, args.size, args.batch, args.steps, fast=False)
        fast, fast_peak = images_per_second(family, device, args.size, args.batch, args.steps, fast=True)
        print(f"{family}\t{slow:.1f}\t{fast:.1f}\t{fast / slow:.2f}\t{slow_peak:.0f}\t{fast_peak:.0f}", flush=True)
    seconds = shared_gpu_compare(args.device, args.compare_steps, args.size)
    print(f"compare, 4 runs x {args.compare_steps} steps, --gpus-per-run 0.5: {seconds:.1f} s")


if __name__ == "__main__":
    main()
