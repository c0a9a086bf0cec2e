"""The report's image grids (sample predictions, worst cases), drawn as one mosaic.

A grid of K x M pictures drawn as K x M matplotlib axes took over a second per figure on a 2-core
machine (every axes is created, laid out, measured and drawn; ``samples.png`` was a third of the
report's time). Here the pictures are scaled into one RGB array (nearest neighbour when enlarged, a
box filter when reduced, so a picture of any size fits its cell), the ground truth is outlined in
pixels (white with a black edge, as the contours were drawn), and matplotlib only draws the captions,
which are laid over the mosaic.
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from unetfamily.overlay import IGNORE_INDEX

__all__ = ["Cell", "grid_png"]

CELL_PX = 170  # the longer side of each picture
GAP_PX = 14  # between cells
CAPTION_PX = 28  # two lines at 8 pt above each picture
TITLE_PX = 36
LABEL_PX = 26  # the row labels' column, when there are row labels
DPI = 100


@dataclass(frozen=True)
class Cell:
    """One picture of a grid: (H, W, 3) uint8 ``picture``, the ``caption`` above it, and an (H, W) label map
    whose class boundaries are outlined on it (``outline``; ignored pixels are outlined as no class, class 0 only
    when it is content, not a ``background``)."""

    picture: np.ndarray
    caption: str
    outline: np.ndarray | None = None
    background: bool = True


def _shifted(mask: np.ndarray, fill: bool) -> list[np.ndarray]:
    """``mask`` moved one pixel up, down, left and right, the vacated border set to ``fill``."""
    padded = np.pad(mask, 1, constant_values=fill)
    return [padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]]


def _outlined(rgb: np.ndarray, labels: np.ndarray, background: bool = True) -> np.ndarray:
    """``rgb`` with the class boundaries of ``labels`` white, edged in black: the pixels of a class (class 0 too
    unless it is a ``background``) beside a pixel of another label, so objects of two classes that touch are told
    apart; the picture's border is not a boundary. Unchanged when there is none."""
    drawn = (labels != IGNORE_INDEX) & ((labels > 0) if background else True)
    padded = np.pad(labels, 1, mode="edge")  # the border of the picture is not a boundary
    beside = [padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]]
    edge = drawn & np.logical_or.reduce([other != labels for other in beside])
    if not edge.any():
        return rgb
    halo = np.logical_or.reduce([edge, *_shifted(edge, False)])
    out = rgb.copy()
    out[halo] = 0
    out[edge] = 255
    return out


def _fitted(cell: Cell) -> np.ndarray:
    """The cell's picture scaled to fit a CELL_PX square, its outline drawn at that scale."""
    from PIL import Image

    h, w = cell.picture.shape[:2]
    scale = min(CELL_PX / h, CELL_PX / w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BOX
    rgb = np.asarray(Image.fromarray(np.ascontiguousarray(cell.picture)).resize(size, resample))
    if cell.outline is None:
        return rgb
    labels = np.asarray(Image.fromarray(np.asarray(cell.outline).astype(np.int32)).resize(size, Image.Resampling.NEAREST))
    return _outlined(rgb, labels, cell.background)


def grid_png(rows: Sequence[Sequence[Cell | None]], title: str, row_labels: Sequence[str] | None = None) -> bytes:
    """PNG bytes of ``rows`` of cells (None: an empty place) under ``title``, each row labelled on the left by
    ``row_labels`` if given; every picture framed in black with its caption above it. Texts are drawn as written
    (no mathtext: a caption holding two ``$`` is not a formula)."""
    from matplotlib.figure import Figure

    cols = max(len(row) for row in rows)
    left = GAP_PX + (LABEL_PX if row_labels else 0)
    row_px = CAPTION_PX + CELL_PX + GAP_PX
    width = max(left + cols * (CELL_PX + GAP_PX), 7 * len(title) + 2 * GAP_PX)  # the title fits (~7 px a letter)
    left += (width - left - cols * (CELL_PX + GAP_PX)) // 2
    height = TITLE_PX + len(rows) * row_px
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    for r, row in enumerate(rows):
        top = TITLE_PX + r * row_px + CAPTION_PX
        for c, cell in enumerate(row):
            if cell is None:
                continue
            pic = _fitted(cell)
            h, w = pic.shape[:2]
            y, x = top + (CELL_PX - h) // 2, left + c * (CELL_PX + GAP_PX) + (CELL_PX - w) // 2
            canvas[y - 1:y + h + 1, x - 1:x + w + 1] = 0  # the frame
            canvas[y:y + h, x:x + w] = pic
            fig.text((x + w / 2) / width, 1 - (y - 3) / height, cell.caption, ha="center", va="bottom", fontsize=8,
                     parse_math=False)
        if row_labels:
            fig.text((left - GAP_PX // 2) / width, 1 - (top + CELL_PX / 2) / height, row_labels[r], rotation=90,
                     ha="right", va="center", fontsize=9, parse_math=False)
    fig.text(0.5, 1 - 8 / height, title, ha="center", va="top", fontsize=12, parse_math=False)
    return _png(canvas, fig)


def _png(canvas: np.ndarray, fig: Any) -> bytes:
    """PNG bytes of the (H, W, 3) ``canvas`` under ``fig``'s text, drawn by Agg on a transparent figure of the same
    size in pixels (matplotlib's ``figimage`` resamples a large picture with masked arrays: seconds)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    fig.patch.set_alpha(0)
    agg = FigureCanvasAgg(fig)
    agg.draw()
    height, width = canvas.shape[:2]
    text = np.asarray(agg.buffer_rgba())[:height, :width]  # a pixel more or less, should inches x dpi round off
    text = np.pad(text, ((0, height - text.shape[0]), (0, width - text.shape[1]), (0, 0)))
    alpha = text[..., 3:4].astype(np.float32) / 255
    out = (canvas * (1 - alpha) + text[..., :3] * alpha).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(out).save(buffer, format="PNG")
    return buffer.getvalue()
