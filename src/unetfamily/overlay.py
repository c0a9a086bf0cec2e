"""One colour map and one overlay for every picture the project draws.

Used by ``predict --overlay``, TensorBoard image grids and the compare report. Class 0 is not
painted when it is a background (``background=True``, the default); when it is a content class
(``background=False``, CamVid's ``sky``: the data's ``background`` key) it is painted in its own
colour, :data:`CONTENT_CLASS0_COLOR`. Classes 1.. keep their colours either way, so a legend stays
valid. Ignored pixels (255) are greyed; the colours are distinct on grey-scale microscopy and on
natural images alike.
"""
from __future__ import annotations

import numpy as np

__all__ = ["CLASS_COLORS", "CONTENT_CLASS0_COLOR", "IGNORE_INDEX", "class_colors", "overlay", "overlay_rows"]

#: RGB colours of classes 0..13 (0 = background, black); higher classes cycle through 1..13.
CLASS_COLORS = np.array([
    (0, 0, 0), (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (0, 128, 128), (170, 110, 40), (128, 0, 0), (0, 0, 128),
], dtype=np.uint8)
#: RGB colour of class 0 when it is a content class (pink: none of CLASS_COLORS, nor the ignore grey).
CONTENT_CLASS0_COLOR = (250, 190, 212)
_CONTENT_COLORS = np.concatenate([np.array([CONTENT_CLASS0_COLOR], dtype=np.uint8), CLASS_COLORS[1:]])
IGNORE_INDEX = 255


def class_colors(mask: np.ndarray, background: bool = True) -> np.ndarray:
    """(..., 3) uint8 colour of every class index in ``mask`` (classes 1.. cycled through 13 colours); class 0 is
    black when it is a ``background``, else :data:`CONTENT_CLASS0_COLOR`."""
    m = np.asarray(mask).astype(np.int64)
    index = np.where(m > 0, (m - 1) % (len(CLASS_COLORS) - 1) + 1, 0)
    return (CLASS_COLORS if background else _CONTENT_COLORS)[index]


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.5, ignore_index: int | None = IGNORE_INDEX,
            background: bool = True) -> np.ndarray:
    """(H, W, 3) uint8: ``image`` with the class pixels of ``mask`` (H, W) tinted by their class colour.

    ``image`` is (C, H, W), uint8 or float in [0, 1]; one channel is shown as grey, more than
    three keep the first three. Pixels equal to ``ignore_index`` are greyed out. Class 0 is left
    untinted when it is a ``background``, else tinted in its own colour like every class.
    """
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = (np.clip(img.astype(np.float32), 0, 1) * 255).round().astype(np.uint8)
    rgb = (img[:3] if img.shape[0] >= 3 else np.repeat(img[:1], 3, axis=0)).transpose(1, 2, 0).astype(np.float32)
    m = np.asarray(mask).astype(np.int64)
    ignored = (m == ignore_index) if ignore_index is not None else np.zeros(m.shape, dtype=bool)
    fg = ((m > 0) if background else np.ones(m.shape, dtype=bool)) & ~ignored
    out = np.where(fg[..., None], (1 - alpha) * rgb + alpha * class_colors(np.where(fg, m, 0), background), rgb)
    out = np.where(ignored[..., None], 0.5 * out + 64, out)
    return out.round().clip(0, 255).astype(np.uint8)


def overlay_rows(images: np.ndarray, masks: np.ndarray, predictions: np.ndarray, background: bool = True) -> np.ndarray:
    """(N*H, 3*W, 3) uint8: one row per sample of ``images`` (N, C, H, W), its mask and its prediction (N, H, W):
    the image alone, the mask's overlay and the prediction's overlay side by side (class 0 painted unless it
    is a ``background``)."""
    rows = [np.concatenate([overlay(image, np.zeros_like(mask)), overlay(image, mask, background=background),
                            overlay(image, pred, background=background)], axis=1)
            for image, mask, pred in zip(images, masks, predictions)]
    return np.concatenate(rows, axis=0)
