"""What ``unetfamily dataset info`` reports about a dataset: class pixel fractions, image sizes and means."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from unetfamily.data.base import SegmentationDataset

__all__ = ["DatasetStatistics", "dataset_statistics"]


@dataclass(frozen=True)
class DatasetStatistics:
    """Statistics over the first ``decoded`` samples of a dataset.

    ``image_sizes_hw`` is ``{"distinct": n, "smallest": [H, W], "largest": [H, W]}`` (by area;
    empty when nothing was decoded); ``image_mean`` is the mean pixel value in [0, 1];
    ``class_fractions`` maps each class name, and ``"<ignore>"``, to its share of the mask pixels
    (pixels outside a region of interest count as ``"<ignore>"``); ``roi_fraction`` is the share of
    the decoded samples' pixels inside their region of interest, ``None`` when no sample has one.
    """

    decoded: int
    image_sizes_hw: dict[str, Any] = field(default_factory=dict)
    image_mean: float | None = None
    class_fractions: dict[str, float] = field(default_factory=dict)
    roi_fraction: float | None = None


def dataset_statistics(dataset: SegmentationDataset, samples: int = 8) -> DatasetStatistics:
    """Decode the first ``samples`` samples of ``dataset`` (images (C, H, W), masks (H, W)) and summarise them."""
    info = dataset.info
    n = min(samples, len(dataset))
    counts = np.zeros(max(info.num_classes, info.ignore_index + 1), np.int64)
    sizes: set[tuple[int, int]] = set()
    means = []
    inside, pixels, with_roi = 0, 0, False
    for i in range(n):
        sample = dataset[i]
        roi = dataset.read_roi(i)  # at the file's size, before any resize
        with_roi = with_roi or roi is not None
        inside += int(roi.sum()) if roi is not None else sample["mask"].numel()
        pixels += roi.size if roi is not None else sample["mask"].numel()
        counts += np.bincount(sample["mask"].flatten().numpy(), minlength=counts.size)[: counts.size]
        sizes.add(tuple(sample["image"].shape[-2:]))
        means.append(float(sample["image"].mean()))
    total = max(int(counts.sum()), 1)
    fractions = {name: float(round(counts[i] / total, 6)) for i, name in enumerate(info.classes)}
    fractions["<ignore>"] = float(round(counts[info.ignore_index] / total, 6))
    by_area = sorted(sizes, key=lambda hw: (hw[0] * hw[1], hw))
    image_sizes = {"distinct": len(sizes), "smallest": list(by_area[0]), "largest": list(by_area[-1])} if sizes else {}
    mean = round(float(np.mean(means)), 6) if means else None
    roi_fraction = float(round(inside / max(pixels, 1), 6)) if with_roi else None
    return DatasetStatistics(n, image_sizes, mean, fractions, roi_fraction)
