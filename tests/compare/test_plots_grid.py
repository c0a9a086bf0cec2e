"""compare.plots_grid: the report's image grids as one mosaic."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from unetfamily.compare.plots_grid import CELL_PX, Cell, _fitted, _outlined, grid_png
from unetfamily.overlay import IGNORE_INDEX


def _grey(h: int, w: int) -> np.ndarray:
    return np.full((h, w, 3), 128, dtype=np.uint8)


@pytest.mark.parametrize("h,w", [(64, 64), (40, 300), (900, 120), (3, 2)])
def test_a_picture_of_any_size_fits_its_cell_keeping_its_aspect(h: int, w: int) -> None:
    out = _fitted(Cell(_grey(h, w), ""))
    scale = CELL_PX / max(h, w)
    assert out.dtype == np.uint8 and out.shape == (max(1, round(h * scale)), max(1, round(w * scale)), 3)


def test_the_outline_is_the_foreground_boundary_white_on_black() -> None:
    labels = np.zeros((20, 20), dtype=np.int64)
    labels[5:15, 5:15] = 1
    out = _outlined(_grey(20, 20), labels)
    white = (out == 255).all(-1)
    black = (out == 0).all(-1)
    ring = np.zeros((20, 20), dtype=bool)
    ring[5:15, 5:15] = True
    ring[6:14, 6:14] = False
    assert (white == ring).all()  # the inner boundary of the square, nothing else
    assert black[4, 5:15].all() and black[6, 6:14].all() and not black[10, 10]  # edged on both sides


def test_no_outline_for_an_empty_or_full_foreground_and_ignored_pixels_are_not_foreground() -> None:
    grey = _grey(8, 8)
    assert _outlined(grey, np.zeros((8, 8), dtype=np.int64)) is grey
    assert _outlined(grey, np.ones((8, 8), dtype=np.int64)) is grey
    assert _outlined(grey, np.full((8, 8), IGNORE_INDEX)) is grey
    touching = np.zeros((8, 8), dtype=np.int64)
    touching[:, :4] = 1  # the picture's border is not a boundary: only column 3 is
    white = (_outlined(grey, touching) == 255).all(-1)
    assert white[:, 3].all() and white.sum() == 8


def test_two_classes_that_touch_are_told_apart_and_a_content_class_0_is_outlined() -> None:
    grey = _grey(8, 8)
    two = np.ones((8, 8), dtype=np.int64)
    two[:, 4:] = 2  # no background at all: the foreground-union outline drew nothing
    white = (_outlined(grey, two) == 255).all(-1)
    assert white[:, 3].all() and white[:, 4].all() and white.sum() == 16
    sky = np.zeros((8, 8), dtype=np.int64)
    sky[4:, :] = 1  # class 0 (sky) above class 1 (road)
    assert (_outlined(grey, sky) == 255).all(-1).sum() == 8  # a background class 0: only class 1's edge
    white = (_outlined(grey, sky, background=False) == 255).all(-1)
    assert white[3].all() and white[4].all() and white.sum() == 16  # content: both sides of the boundary


def test_grid_png_draws_every_cell_with_empty_places_and_row_labels() -> None:
    mask = np.zeros((32, 48), dtype=np.int64)
    mask[8:20, 10:30] = 1
    def pixels(outline: np.ndarray | None) -> np.ndarray:
        rows = [[Cell(_grey(32, 48), "a\nDice 1.0", outline), None], [Cell(_grey(200, 50), "b"), Cell(_grey(10, 10), "c")]]
        png = Image.open(io.BytesIO(grid_png(rows, "a title", ["first", "second"])))
        assert png.format == "PNG"
        return np.asarray(png.convert("RGB"))

    plain, outlined = pixels(None), pixels(mask)
    assert plain.shape == outlined.shape and plain.shape[0] > 2 * CELL_PX and plain.shape[1] > 2 * CELL_PX
    grey = (plain == 128).all(-1).sum()
    assert grey > (CELL_PX * CELL_PX * 32 / 48 + CELL_PX * CELL_PX * 50 / 200 + CELL_PX**2) * 0.9  # the three pictures
    assert (outlined == 0).all(-1).sum() > (plain == 0).all(-1).sum()  # the outline's black edge


@pytest.mark.parametrize("letters", [0, 27, 28, 29, 57, 58, 113, 200])
def test_grids_of_any_width_draw(letters: int) -> None:
    """The figure is sized in inches: widths like 427 px (427 / 100 * 100 = 426.99999999999994 in Python) draw."""
    png = Image.open(io.BytesIO(grid_png([[Cell(_grey(10, 10), "x")]], "t" * letters)))
    assert png.size[0] >= CELL_PX
