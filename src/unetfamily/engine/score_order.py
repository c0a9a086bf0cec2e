"""Which of two scores is better: one rule for the best checkpoint, early stopping and compare's rankings.

A metric's direction comes from its name (:func:`lower_is_better`): losses and distances (HD95)
are better low, every overlap score (Dice, IoU, precision, accuracy, NSD, clDice) high.

A score that is not a finite number (NaN, an infinity, None) is worse than every finite score,
in either direction, and never better than anything, itself included. Python's comparisons with
NaN are all false, so ``score > best`` alone would freeze a NaN best forever, and ``max`` or
``sorted`` would put a NaN wherever it happens to stand; every place that picks or orders
scores goes through :func:`is_better`, :func:`order_key` or :func:`best_index` instead.

Pure Python, no torch: ``compare`` imports it to rank variants from a ``results.json``.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

__all__ = ["LOWER_IS_BETTER", "lower_is_better", "finite_score", "is_better", "order_key", "best_index"]

#: Metric names whose lower values are better (besides every name ending in ``loss``).
LOWER_IS_BETTER = frozenset({"hd95", "hausdorff", "assd", "asd"})


def lower_is_better(metric: str) -> bool:
    """True for losses (``loss``, ``val/loss``, ``dice_loss``) and distances (``hd95``), False for overlap scores."""
    name = str(metric).rsplit("/", 1)[-1].lower()
    return name in LOWER_IS_BETTER or name.endswith("loss")


def finite_score(value: Any) -> float | None:
    """``value`` as a float when it is a finite real number (numpy scalars included), else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def is_better(new: Any, old: Any, lower: bool = False) -> bool:
    """True when score ``new`` beats ``old``: a finite score beats a missing or non-finite one; a tie does not."""
    a, b = finite_score(new), finite_score(old)
    if a is None:
        return False
    if b is None:
        return True
    return a < b if lower else a > b


def order_key(value: Any, lower: bool = False) -> tuple[int, float]:
    """Sort key that puts the best score first and every non-finite or missing score last (in input order)."""
    score = finite_score(value)
    if score is None:
        return 1, 0.0
    return 0, score if lower else -score


def best_index(values: Iterable[Any], lower: bool = False) -> int | None:
    """Index of the best finite score of ``values`` (the first of equals); None when none is finite."""
    best: int | None = None
    kept: Any = None
    for i, value in enumerate(values):
        if is_better(value, kept, lower):
            best, kept = i, value
    return best
