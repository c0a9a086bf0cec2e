"""Measuring models: parameters, FLOPs, latency, throughput and peak memory on the current device.

Used by ``benchmarks/*.py`` and by the ``bench`` / ``compare`` commands, so every cost figure the
project reports comes from one implementation.

- FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode` on a ``meta``-device
  copy of the model (no arithmetic is done, so paper-width models count instantly); 2 FLOPs per
  multiply-accumulate, convolutions and matmuls only (pooling, norms and resizes are not counted,
  as in the published figures).
- Times are medians over repeats after warm-up, with ``torch.cuda.synchronize`` on CUDA.
- Peak memory on CUDA is ``max_memory_allocated`` above the level before the call. On CPU it is
  the peak resident-set size above the level before the call, sampled every millisecond from
  ``/proc/self/statm``. glibc keeps freed heap memory, which hides later peaks, so the CPU
  figures are taken in a fresh process started with ``MALLOC_MMAP_THRESHOLD_=65536`` (every
  tensor is then its own mapping, returned to the system when freed, and the resident set
  follows live memory); :func:`memory_env` gives that environment and ``benchmarks/models.py``
  uses it. Memory and time are measured in separate processes for that reason.
"""
from __future__ import annotations

import copy
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["ModelCost", "count_flops", "count_params", "measure", "peak_memory", "time_call"]


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs (2 per MAC) of one eval-mode forward pass on an input of ``input_shape`` (N, C, H, W)."""
    meta = copy.deepcopy(model).to("meta").eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(torch.empty(input_shape, device="meta"))
    return int(counter.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, repeats: int = 5, warmup: int = 2) -> float:
    """Median wall time in seconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def memory_env() -> dict[str, str]:
    """Environment for a subprocess whose CPU resident set tracks live tensor memory."""
    return {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory(fn: Callable[[], object], device: torch.device) -> int:
    """Peak memory rise in bytes while ``fn()`` runs (see the module docstring for how)."""
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
        return torch.cuda.max_memory_allocated(device) - before
    if not os.path.exists("/proc/self/statm"):
        return -1  # no portable way to read the resident set here
    before = peak = _rss_bytes()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    return max(peak, _rss_bytes()) - before


def _all_tensors(out: object) -> list[Tensor]:
    if isinstance(out, Tensor):
        return [out]
    return [t for o in out for t in _all_tensors(o)]


@dataclass
class ModelCost:
    """Cost of one model at one input shape on one device."""

    params: int
    flops: int
    forward_s: float
    train_step_s: float
    images_per_s: float
    forward_peak_bytes: int
    train_peak_bytes: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def measure(
    model: nn.Module,
    input_shape: tuple[int, int, int, int],
    device: torch.device | str = "cpu",
    repeats: int = 5,
    warmup: int = 2,
    train: bool = True,
    timing: bool = True,
    memory: bool = True,
) -> ModelCost:
    """Parameters, FLOPs, eval forward time, train-step time (fwd+bwd+Adam step) and peak memory.

    ``input_shape`` is (N, C, H, W). Throughput is N / forward time. Fields not measured
    (``train``, ``timing`` or ``memory`` False) are NaN for times and -1 for bytes.
    """
    device = torch.device(device)
    flops = count_flops(model, input_shape)
    model = model.to(device)
    x = torch.randn(input_shape, device=device)
    nan = float("nan")
    forward_s, train_s, forward_peak, train_peak = nan, nan, -1, -1

    def forward() -> None:
        with torch.no_grad():
            model(x)

    model.eval()
    forward()  # first call: lazy initialisation (oneDNN primitives, allocator pools)
    if memory:
        forward_peak = peak_memory(forward, device)
    if timing:
        forward_s = time_call(forward, device, repeats, warmup)
    if train:
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            loss = sum(t.float().mean() for t in _all_tensors(model(x)))
            loss.backward()
            optimizer.step()

        step()  # creates the optimizer state: memory that stays, not a per-step peak
        if memory:
            train_peak = peak_memory(step, device)
        if timing:
            train_s = time_call(step, device, repeats, warmup)
    return ModelCost(
        params=count_params(model),
        flops=flops,
        forward_s=forward_s,
        train_step_s=train_s,
        images_per_s=input_shape[0] / forward_s,
        forward_peak_bytes=forward_peak,
        train_peak_bytes=train_peak,
    )
