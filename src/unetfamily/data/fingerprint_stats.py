"""The numeric pieces of the dataset fingerprint (:mod:`unetfamily.data.fingerprint`): edges, object and width medians."""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["edges", "median_width", "object_stats", "rank_correlation", "total_variation", "weighted_median"]


def edges(mask: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: True where a pixel of ``mask`` has a 4-neighbour with another value."""
    edge = np.zeros(mask.shape, dtype=bool)
    vertical = mask[:-1, :] != mask[1:, :]
    horizontal = mask[:, :-1] != mask[:, 1:]
    edge[:-1, :] |= vertical
    edge[1:, :] |= vertical
    edge[:, :-1] |= horizontal
    edge[:, 1:] |= horizontal
    return edge


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The value at which the ``weights`` of the sorted ``values`` first reach half their total."""
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


def object_stats(areas: list[int], extents: list[int]) -> dict[str, Any]:
    """Per-object and per-pixel medians of a class's components; ``None`` values without objects.

    ``median_area``/``median_extent`` are medians over the components, ``p05_area`` their 5th percentile;
    ``pixel_area``/``pixel_extent`` are medians over the class's pixels of their component's area and
    extent: what a typical pixel of the class belongs to, unmoved by many specks of a few pixels.
    """
    if not areas:
        return {"count": 0, "median_area": None, "p05_area": None, "median_extent": None,
                "pixel_area": None, "pixel_extent": None}
    a, e = np.asarray(areas, dtype=np.float64), np.asarray(extents, dtype=np.float64)
    return {"count": len(areas), "median_area": float(np.median(a)), "p05_area": float(np.percentile(a, 5)),
            "median_extent": float(np.median(e)), "pixel_area": weighted_median(a, a),
            "pixel_extent": weighted_median(e, a)}


def median_width(distances: list[np.ndarray]) -> float | None:
    """The width ``2 d + 1`` at a typical cross-section: the median over the medial pixels' ``d``, each
    weighted by its width (a medial pixel stands for a cross-section ``2 d + 1`` pixels wide), so the
    short ridges of a region's jagged edge do not outvote its body; ``None`` without any."""
    d = np.concatenate(distances) if distances else np.zeros(0)
    if not d.size:
        return None
    w = 2 * d.astype(np.float64) + 1
    return weighted_median(w, w)


def total_variation(a: np.ndarray, b: np.ndarray) -> float:
    """Half the L1 distance between the normalised histograms ``a`` and ``b``; 0 if either is empty."""
    if a.sum() == 0 or b.sum() == 0:
        return 0.0
    return float(0.5 * np.abs(a / a.sum() - b / b.sum()).sum())



def rank_correlation(pairs: list[tuple[float, float]], min_pairs: int) -> float | None:
    """Spearman's rank correlation of the ``(x, y)`` ``pairs`` (scipy; ties share their mean rank); ``None``
    with fewer than ``min_pairs`` pairs or when either coordinate is constant."""
    if len(pairs) < min_pairs:
        return None
    xy = np.asarray(pairs, dtype=np.float64)
    if np.ptp(xy[:, 0]) == 0 or np.ptp(xy[:, 1]) == 0:
        return None
    from scipy.stats import spearmanr  # scipy is already needed for the objects (scipy.ndimage)

    return float(spearmanr(xy[:, 0], xy[:, 1]).statistic)
