"""Centreline Dice (clDice) for thin, tubular structures (vessels, membranes, neurites).

Shit et al., "clDice - a Novel Topology-Preserving Loss Function for Tubular Structure
Segmentation", CVPR 2021. Pixel overlap barely notices a vessel cut in two or a membrane with
a gap, because the missing pixels are few; clDice compares each mask's skeleton with the other
mask, so a break costs in proportion to the centreline it removes. Skeletons come from
scikit-image's ``skeletonize`` (the maintained implementation of the thinning the paper uses).
"""
from __future__ import annotations

import math

from unetfamily.errors import require
from unetfamily.metrics.distance import Mask, _binary_pair

__all__ = ["cldice"]


def cldice(pred: Mask, target: Mask, *, valid: Mask | None = None) -> float:
    """clDice of two binary masks (H, W), in [0, 1].

    ``Tprec = |skel(pred) & target| / |skel(pred)|`` (how much of the predicted centreline lies in
    the target), ``Tsens = |skel(target) & pred| / |skel(target)|`` (how much of the target's
    centreline is covered), clDice = their harmonic mean. Both masks empty -> NaN (nothing to
    score, like per-image Dice); exactly one empty, or no overlap -> 0.0.

    ``valid`` (H, W) bool, optional: pixels where it is False are removed from both masks before
    skeletonisation (as by :mod:`~unetfamily.metrics.distance`), so the prediction there changes
    nothing and a prediction equal to the target on the valid pixels scores 1; a structure cut by
    the region of interest is skeletonised as the part inside it.
    """
    morphology = require("skimage.morphology", "train", "clDice")
    p, t = _binary_pair(pred, target, "cldice", valid)
    if not p.any() and not t.any():
        return math.nan
    if not p.any() or not t.any():
        return 0.0
    skel_p, skel_t = morphology.skeletonize(p), morphology.skeletonize(t)
    tprec = (skel_p & t).sum() / max(int(skel_p.sum()), 1)
    tsens = (skel_t & p).sum() / max(int(skel_t.sum()), 1)
    return 0.0 if tprec + tsens == 0 else float(2 * tprec * tsens / (tprec + tsens))
