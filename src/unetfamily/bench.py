"""Measuring models: parameters, FLOPs, latency, throughput and peak memory on the current device.

Used by ``benchmarks/*.py`` and by the ``bench`` / ``compare`` commands, so every cost figure the
project reports comes from one implementation.

- FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode` on a ``meta``-device
  copy of the model (:mod:`unetfamily.models.flops`; no arithmetic is done, so paper-width models
  count instantly); 2 FLOPs per multiply-accumulate, convolutions and matmuls only (pooling, norms
  and resizes are not counted, as in the published figures).
- Times are medians over repeats after warm-up (or minimums, ``stat="min"``, which a busy
  machine disturbs least), with ``torch.cuda.synchronize`` on CUDA.
- Peak memory on CUDA is ``max_memory_allocated`` above the level before the call. On CPU it is
  the peak resident-set size above the level before the call, sampled every millisecond from
  ``/proc/self/statm``. glibc keeps freed heap memory, which hides later peaks, so the CPU
  figures are taken in a fresh process started with ``MALLOC_MMAP_THRESHOLD_=65536`` (every
  tensor is then its own mapping, returned to the system when freed, and the resident set
  follows live memory); :func:`memory_env` gives that environment and ``benchmarks/models.py``
  uses it. Memory and time are measured in separate processes for that reason.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from unetfamily.config import Range
from unetfamily.errors import UnetFamilyError, unknown_choice
from unetfamily.files import write_json
from unetfamily.models._blocks import output_tensors
from unetfamily.models.flops import count_flops, count_train_flops

__all__ = ["AMP_CHOICES", "MeasurementError", "ModelCost", "count_flops", "count_params", "count_train_flops",
           "format_gmacs", "memory_env", "peak_gflops", "measure", "measure_isolated", "peak_memory", "step_functions",
           "time_call"]

#: Autocast dtypes a measurement can run under ("none": fp32).
AMP_CHOICES = ("none", "bf16", "fp16")


class MeasurementError(UnetFamilyError, RuntimeError):
    """A model could not be measured (it failed to build or to run); the message holds the worker's error."""


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def format_gmacs(macs: float) -> str:
    """``macs`` in GMACs as text of at most 9 characters that keeps at least 3 significant digits.

    ``197.70``, ``2.37``, ``0.481``, ``0.00312``, ``1.23e-06``: two decimals from 1 GMAC up (as the
    tables always printed), 3 significant digits below, in exponent form under 1e-5 GMACs (10 k MACs)
    so the text still fits a column. Exactly 0 is ``0``; so a small model never reads as free (``0.00``).
    """
    gmacs = macs / 1e9
    if not math.isfinite(gmacs) or gmacs == 0:
        return f"{gmacs:g}"
    if abs(gmacs) >= 1:
        return f"{gmacs:.2f}"
    decimals = 2 - math.floor(math.log10(abs(gmacs)))  # 0.0123: 4 decimals, 3 significant digits
    return f"{gmacs:.{decimals}f}" if decimals <= 7 else f"{gmacs:.2e}"


def peak_gflops(device: torch.device | str = "cpu", repeats: int = 5) -> dict[str, float]:
    """Best fp32 GFLOP/s of a few probe kernels (a large matmul; 3x3 convolutions in channels_last).

    The maximum is the machine's practical peak, against which a model's achieved GFLOP/s is put.
    """
    device = torch.device(device)
    probes = {"matmul 2048": (lambda a=torch.randn(2048, 2048, device=device): a @ a, 2 * 2048**3)}
    for c, s in ((64, 256), (128, 128), (256, 64)):
        conv = nn.Conv2d(c, c, 3, padding=1).to(device, memory_format=torch.channels_last)
        x = torch.randn(2, c, s, s, device=device).contiguous(memory_format=torch.channels_last)
        probes[f"conv3x3 {c}ch {s}px"] = (lambda conv=conv, x=x: conv(x), 2 * 2 * c * c * 9 * s * s)
    with torch.no_grad():
        return {name: flops / time_call(fn, device, repeats, 2, "min") / 1e9 for name, (fn, flops) in probes.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, repeats: int = 5, warmup: int = 2,
              stat: str = "median") -> float:
    """Median (or ``stat="min"``: minimum) wall time in seconds of ``fn()`` over ``repeats`` calls after ``warmup``."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return min(times) if stat == "min" else statistics.median(times)


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
    stat: str = "median",
    channels_last: bool = False,
    amp: str = "none",
    fused: bool = False,
) -> ModelCost:
    """Parameters, FLOPs, eval forward time, train-step time (fwd+bwd+Adam step) and peak memory.

    ``input_shape`` is (N, C, H, W). Throughput is N / forward time. ``channels_last`` converts
    model and input to that memory format; ``amp`` ("none", "bf16", "fp16") runs the forward
    passes under autocast; ``fused`` runs Adam's fused kernel (see :func:`step_functions`).
    Fields not measured (``train``, ``timing`` or ``memory`` False) are NaN for times and -1 for bytes.
    """
    _check_measurement(input_shape, repeats, amp)
    Range(ge=0, integer=True)("warmup", warmup)
    device = torch.device(device)
    flops = count_flops(model, input_shape)
    forward, step = step_functions(model, input_shape, device, channels_last, amp, fused)

    def probe(fn: Callable[[], object]) -> tuple[float, int]:
        """(time in seconds or NaN, peak memory rise in bytes or -1) of ``fn``, as asked."""
        peak = peak_memory(fn, device) if memory else -1
        return (time_call(fn, device, repeats, warmup, stat) if timing else math.nan), peak

    forward()  # first call: lazy initialisation (oneDNN primitives, allocator pools)
    forward_s, forward_peak = probe(forward)
    train_s, train_peak = math.nan, -1
    if train:
        step()  # creates the optimizer state: memory that stays, not a per-step peak
        train_s, train_peak = probe(step)
    return ModelCost(params=count_params(model), flops=flops, forward_s=forward_s, train_step_s=train_s,
                     images_per_s=input_shape[0] / forward_s, forward_peak_bytes=forward_peak,
                     train_peak_bytes=train_peak)


def step_functions(model: nn.Module, input_shape: tuple[int, ...], device: torch.device | str = "cpu",
                   channels_last: bool = False, amp: str = "none", fused: bool = False,
                   ) -> tuple[Callable[[], None], Callable[[], None]]:
    """(eval forward, train step) of ``model`` on a random input of ``input_shape`` (N, C, H, W).

    The model and input are moved to ``device`` (in channels_last with ``channels_last``); the
    forward passes run under autocast with ``amp``. The train step is forward, a loss over every
    output, backward and an Adam step (``fused``: torch's fused kernel, as training uses on CPU
    and CUDA; else the default foreach one, as a plain PyTorch script gets).
    """
    device = torch.device(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    x = torch.randn(input_shape, device=device).contiguous(memory_format=memory_format)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else contextlib.nullcontext
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, **({"fused": True} if fused else {}))

    def forward() -> None:
        model.eval()
        with torch.no_grad(), autocast():
            model(x)

    def step() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            out = model(x)
        loss = sum(t.float().mean() for t in output_tensors(out))
        loss.backward()
        optimizer.step()

    return forward, step


def _check_measurement(input_shape: tuple[int, ...], repeats: int, amp: str) -> None:
    """Refuse what cannot be measured: a shape with a side below 1, fewer than one repeat, an unknown dtype."""
    if amp not in AMP_CHOICES:
        raise unknown_choice("amp", amp, AMP_CHOICES)
    for side in input_shape:
        Range(ge=1, integer=True)(f"input_shape {tuple(input_shape)}: each size", side)
    Range(ge=1, integer=True)("repeats", repeats)


def measure_isolated(
    name: str,
    kwargs: dict[str, Any],
    input_shape: tuple[int, int, int, int],
    device: str = "cpu",
    repeats: int = 3,
    train: bool = True,
    stat: str = "median",
    channels_last: bool = False,
    amp: str = "none",
    memory_saving: str = "recompute",
) -> dict[str, Any]:
    """:func:`measure` the registry model ``name(**kwargs)`` in fresh subprocesses.

    One process times, another (with :func:`memory_env`) measures peak memory, so neither a
    previous model's cached memory nor the memory probe's settings distort the figures.
    Returns :class:`ModelCost` fields as a dict. Raises :class:`MeasurementError` with the
    worker's error output when a measurement fails.
    """
    _check_measurement(input_shape, repeats, amp)
    spec = {"name": name, "kwargs": kwargs, "shape": list(input_shape), "device": device, "repeats": repeats,
            "train": train, "stat": stat, "channels_last": channels_last, "amp": amp, "memory_saving": memory_saving}
    results = {}
    with tempfile.TemporaryDirectory(prefix="unetfamily-bench-") as folder:
        for what, env in (("time", None), ("memory", memory_env())):
            result = Path(folder) / f"{what}.json"
            proc = subprocess.run([sys.executable, "-m", "unetfamily.bench", json.dumps(spec), what, str(result)],
                                  capture_output=True, text=True, env=env)
            if proc.returncode != 0 or not result.is_file():
                raise MeasurementError(_failure(name, input_shape, train, amp, proc))
            # Strict JSON has no NaN: a time that was not measured comes back as null.
            results[what] = {k: math.nan if v is None else v for k, v in json.loads(result.read_text()).items()}
    return {**results["time"], "forward_peak_bytes": results["memory"]["forward_peak_bytes"],
            "train_peak_bytes": results["memory"]["train_peak_bytes"]}


def _failure(name: str, shape: tuple[int, ...], train: bool, amp: str, proc: subprocess.CompletedProcess) -> str:
    """One line saying which measurement failed and why: the worker's exception (its traceback goes to the debug
    log), or how the process ended when it printed none (killed for memory)."""
    logging.getLogger(__name__).debug("the worker measuring %s failed:\n%s", name, proc.stderr)
    lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
    cause = lines[-1] if lines else f"the worker process ended with exit code {proc.returncode} and no message"
    what = f"{'a training step and ' if train else ''}a forward pass at input {tuple(shape)} (N, C, H, W), amp {amp}"
    return f"measuring {name} failed: {what}: {cause}"


def _worker(spec_json: str, what: str, result_path: str) -> None:
    """The subprocess of :func:`measure_isolated`: measure ``what`` ("time" or "memory"), write the cost as JSON."""
    from unetfamily.models import create_model

    spec = json.loads(spec_json)
    torch.manual_seed(0)
    model = create_model(spec["name"], **spec["kwargs"])
    if hasattr(model, "set_memory_saving"):
        model.set_memory_saving(spec["memory_saving"])
    cost = measure(model, tuple(spec["shape"]), spec["device"], spec["repeats"], warmup=1, train=spec["train"],
                   stat=spec["stat"], timing=what == "time", memory=what == "memory",
                   channels_last=spec["channels_last"], amp=spec["amp"])
    write_json(result_path, cost.as_dict())


if __name__ == "__main__":  # the worker of measure_isolated: python -m unetfamily.bench SPEC WHAT RESULT
    _worker(*sys.argv[1:4])
