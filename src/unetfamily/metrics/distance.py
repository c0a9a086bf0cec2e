"""Boundary metrics of two binary masks: HD95 and the normalised surface Dice (NSD).

Both compare the masks' surfaces (the mask minus its 4-connected erosion, the image border
counting as outside, as MONAI does) through Euclidean distance transforms (scipy.ndimage).
They are per-image scores in pixels (HD95) or in [0, 1] (NSD).

Ignored pixels (``valid`` False: outside a region of interest, or an ignore label) are removed
from the foreground of BOTH masks before the surfaces are extracted, so they count as outside,
exactly like the image border: ignoring a frame around the image gives the same score as
cropping it away, the prediction there changes nothing, and a prediction that equals the target
on every valid pixel scores perfectly. An image with no valid pixel is scored as two empty masks.
"""
from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from unetfamily.errors import require

__all__ = ["hd95", "normalized_surface_dice", "surface"]

Mask = Tensor | np.ndarray


def _numpy(mask: Mask) -> np.ndarray:
    return np.asarray(mask.detach().cpu() if isinstance(mask, Tensor) else mask)


def _binary_pair(pred: Mask, target: Mask, what: str, valid: Mask | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Both masks as (H, W) bool, with the pixels where ``valid`` is False removed from each."""
    p, t = _numpy(pred).astype(bool), _numpy(target).astype(bool)
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"{what} takes two (H, W) masks, got {p.shape} and {t.shape}")
    if valid is not None:
        v = _numpy(valid).astype(bool)
        if v.shape != p.shape:
            raise ValueError(f"{what}: the valid mask is {v.shape} but the masks are {p.shape}")
        p, t = p & v, t & v
    return p, t


def surface(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels of ``mask`` with a 4-neighbour outside it (or on the image border)."""
    ndimage = require("scipy.ndimage", "train", "boundary metrics (HD95, NSD)")
    return mask & ~ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(2, 1), border_value=0)


def _distances(p: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances from each pred surface pixel to the target surface, and the other way round."""
    ndimage = require("scipy.ndimage", "train", "boundary metrics (HD95, NSD)")
    ps, ts = surface(p), surface(t)
    return ndimage.distance_transform_edt(~ts)[ps], ndimage.distance_transform_edt(~ps)[ts]


def hd95(pred: Mask, target: Mask, *, valid: Mask | None = None) -> float:
    """95th-percentile symmetric Hausdorff distance, in pixels, between two binary masks (H, W).

    ``max(P95 of d(pred surface -> target surface), P95 of d(target surface -> pred surface))``
    over surface pixels, as MONAI's ``compute_hausdorff_distance(percentile=95)``.
    ``valid`` (H, W) bool, optional: pixels where it is False are ignored (see the module doc).
    Both masks empty (on the valid pixels) -> 0.0; exactly one empty -> NaN. Needs scipy.
    """
    p, t = _binary_pair(pred, target, "hd95", valid)
    if not p.any() and not t.any():
        return 0.0
    if not p.any() or not t.any():
        return math.nan
    to_t, to_p = _distances(p, t)
    return float(max(np.percentile(to_t, 95), np.percentile(to_p, 95)))


def normalized_surface_dice(pred: Mask, target: Mask, tolerance: float = 2.0, *, valid: Mask | None = None) -> float:
    """Normalised surface Dice (Nikolov et al., JMIR 2021) of two binary masks (H, W), in [0, 1].

    The fraction of both surfaces lying within ``tolerance`` pixels of the other surface:
    ``(|S_p within tol of S_t| + |S_t within tol of S_p|) / (|S_p| + |S_t|)``. It forgives
    boundary disagreement up to the tolerance (annotation noise) and punishes it beyond.
    ``valid`` (H, W) bool, optional: pixels where it is False are ignored (see the module doc).
    Both masks empty (on the valid pixels) -> NaN (nothing to score, like per-image Dice);
    exactly one empty -> 0.0.
    """
    if tolerance < 0:
        raise ValueError(f"the NSD tolerance must be >= 0 pixels, got {tolerance}")
    p, t = _binary_pair(pred, target, "normalized_surface_dice", valid)
    if not p.any() and not t.any():
        return math.nan
    if not p.any() or not t.any():
        return 0.0
    to_t, to_p = _distances(p, t)
    return float(((to_t <= tolerance).sum() + (to_p <= tolerance).sum()) / (to_t.size + to_p.size))
