"""Known values of the normalised surface Dice and clDice, and their per-class wiring."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unetfamily.metrics import cldice, normalized_surface_dice, per_image_scores


def _line(rows: range, col: int, shape: tuple[int, int] = (24, 24)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[rows.start:rows.stop, col] = True
    return mask


def test_nsd_counts_surface_points_within_the_tolerance() -> None:
    # One-pixel lines are their own surface. Short line rows 0..9, long line rows 0..19 in the
    # same column: all 10 short points lie on the long line; of the long line's 20 points, rows
    # 0..9 (distance 0) and rows 10, 11 (distance 1, 2) are within 2 px: (10 + 12) / 30.
    short, long = _line(range(0, 10), 5), _line(range(0, 20), 5)
    assert normalized_surface_dice(short, long, tolerance=2) == pytest.approx(22 / 30)
    assert normalized_surface_dice(short, long, tolerance=0) == pytest.approx(20 / 30)
    # Parallel lines 3 px apart: nothing within 2 px, everything within 3.
    a, b = _line(range(0, 10), 5), _line(range(0, 10), 8)
    assert normalized_surface_dice(a, b, tolerance=2) == 0.0
    assert normalized_surface_dice(a, b, tolerance=3) == 1.0


def test_nsd_empty_masks_and_bad_tolerance() -> None:
    empty, some = np.zeros((8, 8), bool), _line(range(0, 4), 2, (8, 8))
    assert math.isnan(normalized_surface_dice(empty, empty))
    assert normalized_surface_dice(some, empty) == 0.0 and normalized_surface_dice(empty, some) == 0.0
    with pytest.raises(ValueError, match="tolerance"):
        normalized_surface_dice(some, some, tolerance=-1)


def test_cldice_sees_topology_that_pixel_dice_misses() -> None:
    target = _line(range(2, 22), 10)
    thick = np.zeros_like(target)
    thick[2:22, 9:12] = True  # a 3-px bar whose centreline is the target line
    assert cldice(thick, target) == pytest.approx(1.0)  # pixel Dice would be 2*20/(60+20) = 0.5
    broken = target.copy()
    broken[11:13] = False  # a 2-pixel gap: 18 of the 20 target centreline pixels covered
    assert cldice(broken, target) == pytest.approx(2 * 1.0 * 0.9 / 1.9)


def test_cldice_empty_masks() -> None:
    empty, some = np.zeros((8, 8), bool), _line(range(0, 4), 2, (8, 8))
    assert math.isnan(cldice(empty, empty))
    assert cldice(some, empty) == 0.0 and cldice(empty, some) == 0.0


def test_per_image_scores_per_class_and_ignore() -> None:
    target = torch.zeros(2, 16, 16, dtype=torch.long)
    target[0, 2:8, 2:8] = 1
    target[0, 10:14, 10:14] = 2
    pred = target.clone()
    pred[1, 3:5, 3:5] = 1             # image 1: class 1 predicted where the target is empty
    target[1, 0, :] = 255             # ignored pixels change nothing
    scores = per_image_scores(pred, target, 3, nsd_tolerance=1, with_cldice=True)
    assert scores["per_class_nsd"].shape == (2, 3) and math.isnan(scores["per_class_nsd"][0, 0])
    assert scores["nsd"][0] == 1.0 and scores["cldice"][0] == 1.0
    assert scores["nsd"][1] == 0.0 and scores["cldice"][1] == 0.0  # class 2 absent from both: left out
