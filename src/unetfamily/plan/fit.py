"""Fitting each family's patch size, batch size and number of steps to the device and the budget.

The cost of a training step is measured on the target device with :func:`unetfamily.bench.measure`
(forward, backward and optimiser step of the real model), once at a small probe patch to learn the cost
per pixel, and once more at the chosen patch and batch to set the number of steps. The rules:

- patch: the median image (rounded up to a multiple of 32), shrunk while the memory budget (CUDA: 80%
  of the device; CPU: a quarter of the RAM) or, under a time budget, :data:`MIN_STEPS` steps at batch 2
  would not fit; never below 64 px;
- batch: at least 2 (nnU-Net); grown while memory allows, a batch covers at most 5% of the training
  pixels (nnU-Net), and, under a time budget, the run still makes :data:`TARGET_STEPS` steps;
- steps: a time budget is split into epochs of at most 250 steps (nnU-Net's epoch) and validations,
  which may take at most :data:`VAL_SHARE` of it; a step budget is split into epochs the same way.
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from unetfamily.bench import measure
from unetfamily.data.workers import resolve_num_workers
from unetfamily.engine.device import resolve_amp
from unetfamily.engine.inference import tile_starts
from unetfamily.engine.run_setup import FUSED_OPTIMIZER_DEVICES
from unetfamily.models import create_model, prefers_channels_last
from unetfamily.plan import rules
from unetfamily.plan.data_cost import DataCost

log = logging.getLogger(__name__)

__all__ = ["Budget", "FamilyFit", "StepCost", "fit_family", "memory_budget", "patch_limit", "patch_reason",
           "split_steps"]

#: Under a time budget the patch shrinks until a batch-2 run makes at least this many steps.
MIN_STEPS = 400
#: ... and the batch grows only while the run still makes this many.
TARGET_STEPS = 1000
#: Validation may take at most this share of a time budget.
VAL_SHARE = 0.2
#: Epochs (validations) a run aims for when it is shorter than 10 nnU-Net epochs.
MIN_EPOCHS = 10
#: Steps when the budget gives neither minutes nor steps: 10 epochs of 250.
DEFAULT_STEPS = 2500
MIN_PATCH = 64
MAX_PATCH = 1024
MAX_BATCH = 32
VAL_OVERLAP = 0.5
PROBE_PATCH = 96


@dataclass(frozen=True)
class Budget:
    """Each run's training budget: wall-clock ``seconds`` on the target device, or optimiser ``steps``."""

    seconds: float | None = None
    steps: int | None = None

    def describe(self) -> str:
        if self.seconds is not None:
            return f"{self.seconds / 60:g} minutes per run"
        return f"{self.steps or DEFAULT_STEPS} steps per run"


@dataclass(frozen=True)
class StepCost:
    """Measured cost of one training step at ``batch`` x ``patch``: seconds, eval-forward seconds, peak bytes."""

    batch: int
    patch: tuple[int, int]
    step_s: float
    forward_s: float
    peak_bytes: int

    def per_pixel(self) -> tuple[float, float]:
        """(seconds, bytes) per image pixel of a batch."""
        pixels = self.batch * self.patch[0] * self.patch[1]
        return self.step_s / pixels, max(self.peak_bytes, 0) / pixels


@dataclass
class FamilyFit:
    """What the plan fitted for one model: patch, batch, steps, and the measurements behind them."""

    model: str
    kwargs: dict[str, Any]
    patch: list[int]
    window: list[int]  # validation's sliding window: the median image, or tiles of it (see window())
    batch_size: int
    epochs: int
    steps_per_epoch: int
    step_seconds: float
    validation_seconds: float
    peak_memory_mb: float
    reason: str
    probe: dict[str, Any] = field(default_factory=dict)
    # of step_seconds: waiting for the batch (read, scale, augment, crop; see data_cost): all of making it with 0
    # loader workers (off CUDA), what the workers leave over on CUDA
    data_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def memory_budget(device: torch.device) -> int:
    """Bytes a training step may use: 80% of a CUDA device's memory, else a quarter of the RAM."""
    if device.type == "cuda":
        return int(0.8 * torch.cuda.get_device_properties(device).total_memory)
    try:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        ram = 8 << 30
    return int(0.25 * ram)


def measure_step(name: str, kwargs: dict[str, Any], in_channels: int, outputs: int, batch: int,
                 patch: tuple[int, int], device: torch.device) -> StepCost:
    """One measured training step of ``name(**kwargs)`` on ``device`` at input (batch, in_channels, *patch)."""
    torch.manual_seed(0)
    model = create_model(name, in_channels=in_channels, num_classes=outputs, **kwargs)
    if hasattr(model, "set_memory_saving"):
        model.set_memory_saving("recompute")  # what training does by default, as are the next two
    amp, _ = resolve_amp("auto", device)
    channels_last, _ = prefers_channels_last(name, device, patch, amp)
    cost = measure(model, (batch, in_channels, *patch), device, repeats=2, warmup=1, channels_last=channels_last,
                   amp=amp, fused=device.type in FUSED_OPTIMIZER_DEVICES)
    return StepCost(batch, tuple(patch), cost.train_step_s, cost.forward_s, cost.train_peak_bytes)


def window(image: tuple[int, int], patch: tuple[int, int], cost: StepCost, memory: int) -> tuple[int, int]:
    """Validation's window: the median image (rounded up to 32), else the largest that fits the memory budget.

    Not the training patch (nnU-Net's choice): a fully convolutional network predicts the same pixels from
    one large window as from many overlapping small ones, at a fraction of the forward passes; images larger
    than the window are still tiled with Gaussian weights. A forward pass needs about a third of a
    training step's memory per pixel; the window is never smaller than the patch.
    """
    _, m_px = cost.per_pixel()
    cap = _cap(math.sqrt(3 * memory / m_px) if m_px > 0 else math.inf)
    return tuple(max(p, min(cap, rules.round_patch(side, MIN_PATCH))) for side, p in zip(image, patch))  # type: ignore[return-value]


def _tiles(image: tuple[int, int], patch: tuple[int, int]) -> int:
    return len(tile_starts(image[0], patch[0], VAL_OVERLAP)) * len(tile_starts(image[1], patch[1], VAL_OVERLAP))


def split_steps(budget: Budget, step_s: float, val_s: float) -> tuple[int, int, str]:
    """(epochs, steps per epoch, reason): how a budget is cut into epochs of at most 250 steps and validations."""
    spe_cap = rules.STEPS_PER_EPOCH
    if budget.seconds is None:
        total = budget.steps or DEFAULT_STEPS
        epochs = max(MIN_EPOCHS, math.ceil(total / spe_cap)) if total >= MIN_EPOCHS else total
        spe = math.ceil(total / epochs)
        return epochs, spe, f"{total} steps{' (the default)' if budget.steps is None else ''} in {epochs} epochs"
    seconds = budget.seconds
    epochs = MIN_EPOCHS
    if epochs * val_s > VAL_SHARE * seconds:  # validation would eat the budget: validate less often, longer epochs
        epochs = max(1, int(VAL_SHARE * seconds // max(val_s, 1e-9)))
    spe = math.floor((seconds - epochs * val_s) / (epochs * step_s) + 1e-9)
    if spe > spe_cap and epochs == MIN_EPOCHS:  # long budget: nnU-Net epochs of 250 steps, as many as fit
        spe = spe_cap
        epochs = max(epochs, int(seconds // (spe_cap * step_s + val_s)))
    spe = max(1, spe)
    return epochs, spe, (f"{seconds / 60:g} min at {step_s:.3g} s/step and {val_s:.3g} s/validation: {epochs} epochs "
                         f"of {spe} steps")


def _side_limit(per_pixel: float, budget: float, batch: int) -> float:
    return math.sqrt(budget / (per_pixel * batch)) if per_pixel > 0 else math.inf


def _cap(limit: float) -> int:
    """A side limit in pixels rounded down to a multiple of 32, within [64, 1024]."""
    return max(MIN_PATCH, min(MAX_PATCH, int(limit // rules.DIVISOR) * rules.DIVISOR)) if math.isfinite(limit) \
        else MAX_PATCH


def _patch(image: tuple[int, int], limit: float) -> tuple[int, int]:
    """The median image's patch, each side capped at ``limit`` (rounded down to 32) and in [64, 1024]."""
    cap = _cap(limit)
    return tuple(min(cap, rules.round_patch(side, MIN_PATCH)) for side in image)  # type: ignore[return-value]


def probe(name: str, kwargs: dict[str, Any], in_channels: int, outputs: int, image: tuple[int, int],
          device: torch.device) -> StepCost:
    """A batch-2 training step at a small square patch: the family's cost per pixel on ``device``."""
    side = min(PROBE_PATCH, rules.round_patch(min(image), MIN_PATCH))
    return measure_step(name, kwargs, in_channels, outputs, 2, (side, side), device)


def patch_limit(cost: StepCost, budget: Budget, memory: int) -> tuple[float, str]:
    """(side, what binds it): the largest square patch side a batch-2 run affords in memory and, under a time
    budget, in time (before rounding and the [64, 1024] bounds)."""
    t_px, m_px = cost.per_pixel()
    limit, bound = _side_limit(m_px, memory, 2), "memory"
    if budget.seconds is not None:
        timed = _side_limit(t_px, budget.seconds * (1 - VAL_SHARE) / MIN_STEPS, 2)
        if timed < limit:
            limit, bound = timed, f"the time budget ({MIN_STEPS} steps at batch 2)"
    return limit, bound


def affordable_patch(cost: StepCost, image: tuple[int, int], budget: Budget, memory: int) -> tuple[int, int]:
    """The largest patch (of at most the median ``image``) that a batch-2 run affords in memory and time."""
    return _patch(image, patch_limit(cost, budget, memory)[0])


def patch_reason(patch: tuple[int, int], image: tuple[int, int], limit: float, bound: str) -> str:
    """Why ``patch`` for the median ``image``, true of each side: the whole image or crops of it (cut by the
    1024 px cap or by ``bound``, which affords a side of ``limit``), and the sides padded beyond the image."""
    if patch[0] >= image[0] and patch[1] >= image[1]:
        what = f"the whole median image {image[0]}x{image[1]}"
    elif limit >= MAX_PATCH:
        what = f"crops of the median image {image[0]}x{image[1]}: at most {MAX_PATCH} px per side"
    elif limit < MIN_PATCH:
        what = (f"crops of the median image {image[0]}x{image[1]}: the smallest, {MIN_PATCH} px, though {bound} "
                "affords less")
    else:
        what = f"crops of the median image {image[0]}x{image[1]}: the largest {bound} affords"
    sides = (("height", image[0], patch[0]), ("width", image[1], patch[1]))
    padded = [f"{name} {side} to {p} px" for name, side, p in sides if p > side]
    if padded:
        what += (f"; padded, {', '.join(padded)} (sides are multiples of {rules.DIVISOR}, at least {MIN_PATCH} px; "
                 "padding is ignore-labelled)")
    return what


def _batch(cost: StepCost, patch: tuple[int, int], budget: Budget, memory: int, train_pixels: float) -> tuple[int, str]:
    """(batch, what stopped it growing): at least 2, grown while memory, the 5% rule and the time budget allow."""
    t_px, m_px = cost.per_pixel()
    area = patch[0] * patch[1]
    batch, stop = 2, f"the most, {MAX_BATCH}"
    for b in range(3, MAX_BATCH + 1):
        if m_px * b * area > memory:
            stop = "memory"
        elif b * area > 0.05 * train_pixels:
            stop = "a batch covers at most 5% of the training pixels"
        elif budget.seconds is not None and budget.seconds * (1 - VAL_SHARE) / (t_px * b * area) < TARGET_STEPS:
            stop = f"the time budget keeps >= {TARGET_STEPS} steps"
        else:
            batch = b
            continue
        break
    return batch, stop


def _waited(batch_s: float, step_s: float, workers: int) -> float:
    """Seconds a step of ``step_s`` waits for its batch, which takes ``batch_s`` to make: all of them when the
    training process makes it (0 workers), else what ``workers`` processes making batches during the steps
    leave over."""
    return batch_s if workers == 0 else max(0.0, batch_s / workers - step_s)


def _made_by(workers: int) -> str:
    return "make the batch" if workers == 0 else f"wait for the batch its {workers} loader workers make"


def fit_family(model_id: str, name: str, kwargs: dict[str, Any], cost: StepCost, image: tuple[int, int], *,
               in_channels: int, outputs: int, device: torch.device, budget: Budget, memory: int,
               train_pixels: float, val_cases: int, data: Callable[[tuple[int, int]], DataCost] | None = None,
               val_read: DataCost | None = None, sizes: list[tuple[int, int]] | None = None) -> FamilyFit:
    """Patch, batch and steps of one model on images of median size ``image`` (already scaled), measured on ``device``.

    ``cost`` is the model's probe (:func:`probe`); the chosen patch and batch are measured once more
    so the steps come from the real step time: the model's step plus ``batch`` samples of the data
    pipeline (``data(patch)``, :mod:`unetfamily.plan.data_cost`; on CUDA only what the worker processes of
    ``loader.num_workers: auto``, making batches during the steps, leave over), and each validation's
    forward passes plus reading its ``val_cases`` images (``val_read``); the forward passes are counted over
    ``sizes`` (image sizes after scaling, spread over the dataset's range; default: the median ``image`` only).
    """
    patch = affordable_patch(cost, image, budget, memory)
    batch, stop = _batch(cost, patch, budget, memory, train_pixels)
    norm = rules.layer_norm(batch)
    kwargs = {**kwargs, "norm": norm.value}  # measured with the layers it will train with
    real = measure_step(name, kwargs, in_channels, outputs, batch, patch, device)
    val_window = window(image, patch, real, memory)
    per_pixel = real.forward_s / (batch * patch[0] * patch[1])
    sample = sizes or [image]
    tiles = sum(_tiles(size, val_window) for size in sample) / len(sample)  # per image, over the sizes
    val_s = val_cases * tiles * per_pixel * val_window[0] * val_window[1]
    if val_read is not None:
        val_s += val_cases * val_read.per_sample(val_cases * MIN_EPOCHS)
    data_s, workers = 0.0, resolve_num_workers("auto", device)[0]  # the recipe leaves loader.num_workers auto
    if data is not None:
        pipeline = data(tuple(patch))  # type: ignore[arg-type]
        epochs, spe, _ = split_steps(budget, real.step_s + _waited(batch * pipeline.cold_s, real.step_s, workers), val_s)
        # cached data: cold reads only on a first pass
        data_s = _waited(batch * pipeline.per_sample(epochs * spe * batch), real.step_s, workers)
    step_s = real.step_s + data_s
    epochs, spe, steps_why = split_steps(budget, step_s, val_s)
    reason = (f"patch {patch[0]}x{patch[1]} ({patch_reason(patch, image, *patch_limit(cost, budget, memory))}"
              f"; probe {cost.step_s:.3g} s/step at {cost.batch}x{cost.patch[0]}px), batch {batch} (stopped by {stop}), "
              f"{norm.reason}; "
              f"{steps_why}" + (f" ({data_s:.3g} s of each step {_made_by(workers)})" if data_s else ""))
    log.info("%s: %s", model_id, reason)
    return FamilyFit(model=name, kwargs=dict(kwargs), patch=list(patch), window=list(val_window), batch_size=batch,
                     epochs=epochs,
                     steps_per_epoch=spe, step_seconds=round(step_s, 4), validation_seconds=round(val_s, 3),
                     peak_memory_mb=round(max(real.peak_bytes, 0) / 2**20, 1), reason=reason,
                     probe={"batch": cost.batch, "patch": list(cost.patch), "step_seconds": round(cost.step_s, 4),
                            "peak_memory_mb": round(max(cost.peak_bytes, 0) / 2**20, 1)},
                     data_seconds=round(data_s, 4))
