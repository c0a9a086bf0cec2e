"""What the data pipeline adds to a training step: reading, scaling, augmenting and cropping each sample.

The model's step is measured by :func:`unetfamily.bench.measure` on random tensors; a real step also
waits for its batch. Where the loader makes the samples in the training process (``loader.num_workers``
0, what ``auto`` means off CUDA) they are made one after another, so a step costs the model's step plus
``batch`` samples; on CUDA ``auto`` has worker processes make them during the steps, and a step waits only
for what they do not hide (:func:`unetfamily.plan.fit.fit_family`; an estimate, not measured). Leaving
that out made time-budgeted plans promise up to twice the steps a run could make (a 530x621 JPEG
decoded, scaled and elastically deformed per sample): the run was then cut by its time budget before
its learning-rate schedule had decayed. :func:`measure_data_cost` times the real pipeline of the
planned training data on a few samples, cold (decoded for the first time) and warm (a second read,
from the cache where the data config caches).
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass

from unetfamily.data.augment import build_augmentation
from unetfamily.data.base import SegmentationDataset

log = logging.getLogger(__name__)

__all__ = ["DataCost", "measure_data_cost"]

#: Samples timed per measurement (spread over the dataset), each read cold then warm.
SAMPLES = 4


@dataclass(frozen=True)
class DataCost:
    """Seconds to make one training sample: ``cold`` (first read of a case), ``warm`` (a later read)."""

    cold_s: float
    warm_s: float
    cases: int
    cached: bool

    def per_sample(self, samples: int) -> float:
        """Mean seconds per sample over a run drawing ``samples`` samples from the ``cases`` training cases.

        Without a cache every read decodes (the cold cost); with one, only the first read of each case.
        """
        if not self.cached:
            return max(self.cold_s, self.warm_s)
        first = min(1.0, self.cases / max(samples, 1))
        return self.warm_s + (self.cold_s - self.warm_s) * first


def measure_data_cost(train: SegmentationDataset, *, scale: float, preset: str | None, patch: tuple[int, int],
                      foreground: float, cached: bool, samples: int = SAMPLES,
                      resize: tuple[int, int] | None = None) -> DataCost:
    """Time the training pipeline of ``train`` at ``scale`` (or resized to ``resize``, ``(H, W)``) with the
    ``preset`` augmentation cropped to ``patch``.

    ``preset=None``: no transform, what validation reads (``patch`` and ``foreground`` are then unused).
    ``train`` is left untouched: a shallow copy with its own (empty) cache gets the plan's scale and
    transform. ``cached``: whether the run's dataset caches decoded samples (the data config's ``cache``).
    """
    ds = copy.copy(train)
    ds._cache = {}
    ds.cache = cached
    ds.scale = 1.0
    if resize is not None:
        ds.resize = (int(resize[0]), int(resize[1]))
    elif scale != 1.0 and ds.resize is None:
        ds.set_scale(scale)
    info = ds.info
    ds.transform = None if preset is None else build_augmentation(
        preset, ignore_index=info.ignore_index, crop_size=list(patch), in_channels=info.in_channels,
        foreground=foreground, background=info.has_background)
    n = len(ds)
    indices = sorted({round(k * (n - 1) / max(samples - 1, 1)) for k in range(min(samples, n))})
    cold, warm = _time(ds, indices, seed=0), _time(ds, indices, seed=1)
    cost = DataCost(cold_s=round(cold, 5), warm_s=round(warm, 5), cases=n, cached=cached)
    log.info("data pipeline at patch %s: %.3g s per sample cold, %.3g s warm (%s)", list(patch), cold, warm,
             "cached" if cached else "not cached")
    return cost


def _time(ds: SegmentationDataset, indices: list[int], seed: int) -> float:
    start = time.perf_counter()
    for i in indices:
        ds[(i, seed)]
    return (time.perf_counter() - start) / max(len(indices), 1)
