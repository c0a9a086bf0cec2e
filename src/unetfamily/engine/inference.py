"""Sliding-window inference: predict an image of any size from fixed-size tiles, with bounded memory.

:func:`sliding_window_strips` is the one entry point (:class:`unetfamily.engine.predict.Predictor`
uses it). The behaviour follows MONAI's ``monai.inferers.sliding_window_inference`` (2-D only):

- Tile starts along an axis of length ``size`` step by ``int(roi * (1 - overlap))`` (at least 1)
  and the last tile is moved back to end at the border, so tiles cover the image and never leave
  it (:func:`tile_starts`).
- An axis shorter than the ROI is padded symmetrically (``pad_mode``, ``cval``) and the output
  cropped back.
- Each tile's output is weighted by an importance map, ``"constant"`` (all ones) or
  ``"gaussian"`` (sigma = ``sigma_scale`` * ROI size, peak 1), and overlapping tiles are
  averaged with those weights.

Departures, all deliberate:

- The Gaussian is centred at (roi - 1) / 2, so it is symmetric for even ROI sizes too (MONAI
  centres it on pixel roi // 2), and it is clamped to >= 1e-3 per axis (MONAI clamps the 2-D map
  to >= 1e-3). The weights are separable, and because the tile positions are a grid, so is their
  sum: the normaliser is the outer product of two 1-D sums. No full-size count map is kept.
- The output is produced in horizontal strips (:func:`sliding_window_strips`): the tiles of one
  tile row are run, and the rows that no later tile touches are finished, normalised and handed
  out. Memory is one ROI-high accumulator (N, K, roi_h, W) plus one batch of tiles, whatever the
  image height; a caller that wants the whole (N, K, H, W) output concatenates the strips along
  H. Accumulation is float32 on ``device`` (the CPU unless told otherwise).
- The predictor's output must have the tile's size (no zoomed outputs, no dict/tuple outputs).

What is blended is up to ``model_fn``: :class:`unetfamily.engine.predict.Predictor` blends
probabilities, not logits (see docs/predict_export.md for why).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["sliding_window_strips", "tile_starts", "window_weights"]

BlendMode = Literal["gaussian", "constant"]
PadMode = Literal["constant", "reflect", "replicate", "circular"]
MIN_WEIGHT = 1e-3


def tile_starts(size: int, roi: int, overlap: float) -> list[int]:
    """Start offsets of windows of length ``roi`` that cover ``[0, size)`` (MONAI's rule).

    One window when ``roi >= size``; otherwise the stride is ``max(1, int(roi * (1 - overlap)))``
    and the last window ends exactly at ``size``.
    """
    if roi >= size:
        return [0]
    stride = max(1, int(roi * (1 - overlap)))
    count = 1 + math.ceil((size - roi) / stride)
    return [min(i * stride, size - roi) for i in range(count)]


def window_weights(
    roi_size: tuple[int, int], mode: BlendMode = "gaussian", sigma_scale: float = 0.125, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor]:
    """The separable importance map of one tile as two 1-D float32 factors of lengths (roi_h,), (roi_w,).

    ``"constant"``: ones. ``"gaussian"``: exp(-d^2 / (2 sigma^2)) with d the distance to the tile
    centre (roi - 1) / 2 and sigma = ``sigma_scale`` * roi, peak 1, clamped to >= 1e-3.
    The 2-D map is ``wy[:, None] * wx[None, :]``.
    """
    if mode not in ("gaussian", "constant"):
        raise ValueError(f"mode={mode!r} is not valid; choose 'gaussian' or 'constant'")
    factors = []
    for size in roi_size:
        if mode == "constant":
            factors.append(torch.ones(size, device=device))
            continue
        if sigma_scale <= 0:
            raise ValueError(f"sigma_scale={sigma_scale} must be positive")
        d = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
        g = torch.exp(-(d**2) / (2 * (sigma_scale * size) ** 2))
        factors.append((g / g.max()).clamp_(min=MIN_WEIGHT).float().to(device))
    return factors[0], factors[1]


def _axis_plan(size: int, roi: int, overlap: float) -> tuple[list[int], int, int]:
    """Tile starts in image coordinates, padding before the image, and the tile's valid length."""
    if roi >= size:  # one tile; the image is padded to the ROI and the output cropped back
        return [0], (roi - size) // 2, size
    return tile_starts(size, roi, overlap), 0, roi


def _check_arguments(image: Tensor, roi_size: tuple[int, int], overlap: float, sw_batch_size: int) -> None:
    if image.dim() != 4:
        raise ValueError(f"image must be (N, C, H, W), got shape {tuple(image.shape)}")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap={overlap} must be in [0, 1)")
    if sw_batch_size < 1 or min(roi_size) < 1:
        raise ValueError(f"sw_batch_size={sw_batch_size} and roi_size={tuple(roi_size)} must be positive")


def _padding(size: tuple[int, int], roi: tuple[int, int], start: tuple[int, int], valid: tuple[int, int],
             pad_mode: PadMode) -> tuple[int, int, int, int] | None:
    """``F.pad`` amounts (left, right, top, bottom) that bring a tile to the ROI, or None when none is needed."""
    (roi_h, roi_w), (top, left), (valid_h, valid_w) = roi, start, valid
    if valid_h == roi_h and valid_w == roi_w:
        return None
    pad = (left, roi_w - valid_w - left, top, roi_h - valid_h - top)
    if pad_mode == "reflect" and (valid_h <= max(pad[2:]) or valid_w <= max(pad[:2])):
        raise ValueError(
            f"pad_mode='reflect' cannot pad a {size[0]}x{size[1]} image to the ROI {roi_h}x{roi_w} "
            f"(padding must be smaller than the image); use 'replicate' or 'constant'"
        )
    return pad


def _coverage(starts: list[int], weights: Tensor, length: int) -> Tensor:
    """(length,) sum of the 1-D tile weights over every tile along one axis: the blend's normaliser."""
    total = torch.zeros(length, device=weights.device)
    for start in starts:
        total[start : start + len(weights)] += weights
    return total


def _run_tiles(model_fn: Callable[[Tensor], Tensor], tiles: Tensor, pad: tuple[int, int, int, int] | None,
               pad_mode: PadMode, cval: float, roi: tuple[int, int]) -> Tensor:
    """``model_fn`` on a batch of tiles (B, C, h, w) padded to the ROI; checks that it returns (B, K, *roi)."""
    if pad is not None:
        tiles = F.pad(tiles, pad, mode=pad_mode, value=cval if pad_mode == "constant" else None)
    out = model_fn(tiles)
    if out.dim() != 4 or out.shape[0] != len(tiles) or tuple(out.shape[-2:]) != roi:
        raise ValueError(f"model_fn must map tiles {tuple(tiles.shape)} to (B, K, {roi[0]}, {roi[1]}), got {tuple(out.shape)}")
    return out


def sliding_window_strips(
    model_fn: Callable[[Tensor], Tensor],
    image: Tensor,
    roi_size: tuple[int, int],
    overlap: float = 0.25,
    sw_batch_size: int = 4,
    mode: BlendMode = "gaussian",
    sigma_scale: float = 0.125,
    pad_mode: PadMode = "constant",
    cval: float = 0.0,
    sw_device: torch.device | str | None = None,
    device: torch.device | str | None = None,
) -> Iterator[tuple[int, Tensor]]:
    """Run ``model_fn`` on overlapping tiles of ``image`` and yield the blended output strip by strip.

    Args:
        model_fn: maps a batch of tiles (B, C, roi_h, roi_w) on ``sw_device``, in ``image``'s dtype,
            to outputs (B, K, roi_h, roi_w).
        image: (N, C, H, W), any dtype (converted by ``model_fn``), any device.
        roi_size: tile size (roi_h, roi_w); an image axis shorter than it is padded.
        overlap: fraction of a tile shared with its neighbour, in [0, 1).
        sw_batch_size: tiles per ``model_fn`` call (tiles of one tile row, over all N images).
        mode, sigma_scale: importance map (:func:`window_weights`).
        pad_mode, cval: how axes shorter than the ROI are padded (``torch.nn.functional.pad``).
        sw_device, device: where tiles are sent, and where outputs are accumulated in float32
            (both default to the image's device).

    Yields ``(row, block)``: ``block`` (N, K, rows, W) float32 holds output rows ``row .. row + rows``;
    blocks come in order and together cover rows 0..H.
    """
    _check_arguments(image, roi_size, overlap, sw_batch_size)
    n, _, height, width = image.shape
    roi_h, roi_w = int(roi_size[0]), int(roi_size[1])
    sw_device = image.device if sw_device is None else torch.device(sw_device)
    device = image.device if device is None else torch.device(device)
    ys, top, valid_h = _axis_plan(height, roi_h, overlap)
    xs, left, valid_w = _axis_plan(width, roi_w, overlap)
    pad = _padding((height, width), (roi_h, roi_w), (top, left), (valid_h, valid_w), pad_mode)
    wy, wx = window_weights((roi_h, roi_w), mode, sigma_scale, device)
    wy, wx = wy[top : top + valid_h], wx[left : left + valid_w]
    weight = wy[:, None] * wx[None, :]  # (valid_h, valid_w)
    norm_y, norm_x = _coverage(ys, wy, height), _coverage(xs, wx, width)
    acc: Tensor | None = None  # rows [ys[i], ys[i] + valid_h) of the output
    jobs = [(b, x) for b in range(n) for x in xs]  # the tiles of one tile row
    for i, y in enumerate(ys):
        for start in range(0, len(jobs), sw_batch_size):
            chunk = jobs[start : start + sw_batch_size]
            tiles = torch.stack([image[b, :, y : y + valid_h, x : x + valid_w] for b, x in chunk]).to(sw_device)
            out = _run_tiles(model_fn, tiles, pad, pad_mode, cval, (roi_h, roi_w))
            out = out[..., top : top + valid_h, left : left + valid_w].to(device=device, dtype=torch.float32)
            if acc is None:
                acc = torch.zeros(n, out.shape[1], valid_h, width, device=device)
            for k, (b, x) in enumerate(chunk):
                acc[b, :, :, x : x + valid_w].addcmul_(out[k], weight)
        assert acc is not None
        done = ys[i + 1] - y if i + 1 < len(ys) else valid_h  # rows no later tile touches
        yield y, acc[:, :, :done] / (norm_y[y : y + done, None] * norm_x[None, :])
        if done < valid_h:
            acc[:, :, : valid_h - done] = acc[:, :, done:].clone()
        acc[:, :, valid_h - done :] = 0

