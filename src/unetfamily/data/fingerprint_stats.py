"""The numeric pieces of the dataset fingerprint (:mod:`unetfamily.data.fingerprint`): intensity moments, edges,
object and width medians, the up's flip test."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["PERCENTILE_PIXELS", "Moments", "edges", "flip_p", "median_width", "object_stats", "rank_correlation",
           "total_variation", "weighted_median"]

#: Pixels per image (and channel) kept for the intensity percentiles; a strided, deterministic subsample.
PERCENTILE_PIXELS = 10_000


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


def flip_p(top: np.ndarray, bottom: np.ndarray, draws: int = 2048, seed: int = 0) -> float | None:
    """How often the pooled top/bottom :func:`total_variation` is at least the observed one when each image is as
    likely upside down (its halves swapped): the p-value of "the images have an up". ``top``, ``bottom``: ``(N, K)``
    class pixel counts of each image's halves. Every one of the ``2^N`` flips when there are at most ``draws``, else
    ``draws`` drawn with ``seed`` (p counts the observed layout once more). With a few images a random layout is as
    far from its flips as a real up: 1 image gives p = 1, 5 images laid out alike 2/32. None without images."""
    n = len(top)
    if n == 0:
        return None
    top, bottom = np.asarray(top, np.float64), np.asarray(bottom, np.float64)
    observed = total_variation(top.sum(0), bottom.sum(0)) - 1e-12
    exact = 2.0 ** n <= draws
    if exact:
        flips = (np.arange(2 ** n)[:, None] >> np.arange(n)[None, :]) & 1
    else:
        flips = np.random.default_rng(seed).integers(0, 2, (draws, n))
    moved = flips.astype(np.float64) @ (bottom - top)  # (R, K): what the flipped images move from top to bottom
    t, b = top.sum(0) + moved, bottom.sum(0) - moved
    with np.errstate(invalid="ignore", divide="ignore"):
        tv = 0.5 * np.abs(t / t.sum(1, keepdims=True) - b / b.sum(1, keepdims=True)).sum(1)
    at_least = int(np.sum(np.nan_to_num(tv, nan=0.0) >= observed))
    return at_least / len(flips) if exact else (at_least + 1) / (draws + 1)



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


class Moments:
    """Per-channel mean/std (exact, float64, Chan's pairwise update) and a pixel subsample for percentiles."""

    def __init__(self, channels: int) -> None:
        self.n = 0
        self.mean = np.zeros(channels)
        self.m2 = np.zeros(channels)
        self.samples: list[np.ndarray] = []

    def add(self, x: np.ndarray) -> None:
        """Add pixels ``x``: ``(C, N)`` float32."""
        nb = x.shape[1]
        if nb == 0:
            return
        x64 = x.astype(np.float64)
        mb = x64.mean(axis=1)
        m2b = ((x64 - mb[:, None]) ** 2).sum(axis=1)
        n = self.n + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + m2b + delta**2 * (self.n * nb / n)
        self.n = n
        self.samples.append(x[:, :: max(1, math.ceil(nb / PERCENTILE_PIXELS))])

    def result(self) -> list[dict[str, float]] | None:
        """Per channel ``{"mean", "std", "p00_5", "p99_5"}``; ``None`` if no pixel was added."""
        if self.n == 0:
            return None
        std = np.sqrt(self.m2 / self.n)
        lo, hi = np.percentile(np.concatenate(self.samples, axis=1), [0.5, 99.5], axis=1)
        return [{"mean": float(self.mean[c]), "std": float(std[c]), "p00_5": float(lo[c]), "p99_5": float(hi[c])}
                for c in range(len(self.mean))]
