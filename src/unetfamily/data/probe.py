"""Cheap, cached facts about image and mask files, for deciding dataset properties and checking data.

:func:`probe_image` reads an image's header (size, channels), checks its integrity without a full
decode where the format allows (:func:`~unetfamily.data.io.inspect_image`) and fingerprints its
bytes; :func:`probe_mask` decodes a mask once and keeps only its distinct values. Both are cached
per process by ``(path, size, mtime, inode)``, so checking a dataset's splits one after another, or
building ``train`` and then ``val``, reads each file once. A file changed on disk is read again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops

from unetfamily.data.errors import DataError
from unetfamily.data.exif import applied_orientation
from unetfamily.data.io import (
    TIFF_SUFFIXES, RawMask, image_header, image_to_float, is_lossy, mask_from_image, open_image, palette_indices,
    read_image, read_mask, regular_file,
)
from unetfamily.data.tiff import tiff_orientation

__all__ = ["ImageProbe", "MaskProbe", "dataset_channels", "detect_channels", "distinct_values", "probe_image",
           "probe_mask"]

log = logging.getLogger(__name__)

_CACHE: dict[tuple, object] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_LIMIT = 200_000  # entries; a probe is a few hundred bytes


@dataclass(frozen=True)
class ImageProbe:
    """An image file's size, its channel count as :func:`~unetfamily.data.io.read_image` returns it, and a digest.

    ``orientation`` is the EXIF orientation the image is turned upright by (1: read as stored).
    """

    path: Path
    height: int
    width: int
    channels: int
    digest: str  # BLAKE2b of the file's bytes: equal files are the same sample
    orientation: int = 1
    dtype: str = "uint8"  # the pixel type read_image returns ("uint8", "uint16", "float32"): what scales it to [0, 1]


@dataclass(frozen=True)
class MaskProbe:
    """A mask file's size and its distinct raw values, as a ``(1, N)`` or ``(1, N, 3)`` :class:`RawMask`.

    Decoding ``values`` with :func:`~unetfamily.data.encodings.decode_mask` raises exactly the errors
    decoding the whole file would, and gives the classes the file holds.
    """

    path: Path
    height: int
    width: int
    values: RawMask
    orientation: int = 1  # the EXIF orientation the mask is turned upright by (1: read as stored)


def _cached(kind: str, path: Path, make):  # noqa: ANN001, ANN202 - (kind, path) -> probe
    st = os.stat(path)
    key = (kind, str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    hit = _CACHE.get(key)
    if hit is None:
        hit = make()
        with _CACHE_LOCK:
            if len(_CACHE) >= _CACHE_LIMIT:
                _CACHE.clear()
            _CACHE[key] = hit
    return hit


def probe_image(path: str | Path, *, full: bool = False) -> ImageProbe:
    """Header, integrity and digest of the image file ``path`` (a DataError naming it if unusable).

    The size is the displayed one (EXIF orientation applied, as :func:`~unetfamily.data.io.read_image`
    does). TIFFs are decoded whole (tifffile, or Pillow for a codec tifffile lacks); other formats get the
    cheaper integrity check unless ``full=True``, which decodes every pixel.
    """
    path = regular_file(path, "image")

    def make() -> ImageProbe:
        data = path.read_bytes()
        if path.suffix.lower() in TIFF_SUFFIXES:  # tifffile: read whole; its pixel type must be one we scale
            arr = read_image(path)
            if arr.dtype not in (np.uint8, np.uint16):
                image_to_float(arr, path)  # float pixels outside [0, 1], int32, ...: refused as training would
            h, w, c, turn = arr.shape[0], arr.shape[1], 1 if arr.ndim == 2 else arr.shape[2], tiff_orientation(path)
            dtype = arr.dtype.name
        else:
            h, w, c, turn, dtype = image_header(data, path, full=full)
        return ImageProbe(path, h, w, c, hashlib.blake2b(data, digest_size=16).hexdigest(), turn, dtype)

    return _cached("image-full" if full else "image", path, make)


def distinct_values(values: np.ndarray) -> np.ndarray:
    """The distinct values of a ``(H, W)`` or ``(H, W, 3)`` mask array, as ``(1, N)`` or ``(1, N, 3)``."""
    if values.ndim == 3:
        r = values[..., 0]
        if values.shape[-1] == 3 and (r == values[..., 1]).all() and (r == values[..., 2]).all():
            gray = distinct_values(r)  # R = G = B (gray saved as RGB, e.g. Kvasir-SEG): count, don't sort
            return np.repeat(gray[..., None], 3, axis=-1)
        if values.dtype == np.uint8:
            packed = (values[..., 0].astype(np.uint32) << 16) | (values[..., 1].astype(np.uint32) << 8) | values[..., 2]
            u = np.unique(packed)
            rgb = np.stack([(u >> 16) & 255, (u >> 8) & 255, u & 255], axis=-1).astype(np.uint8)
        else:
            rgb = np.unique(values.reshape(-1, values.shape[-1]), axis=0)
        return rgb[None]
    flat = values.ravel()
    if flat.dtype in (np.uint8, np.uint16) and flat.size:  # counting beats sorting for 8/16-bit masks
        return np.flatnonzero(np.bincount(flat)).astype(flat.dtype)[None]
    return np.unique(flat)[None]


def _counted_values(im: Image.Image) -> np.ndarray | None:
    """The distinct values of an 8-bit gray, palette or R = G = B colour mask, counted by Pillow in C.

    ``None`` for other modes (and colour masks), which :func:`distinct_values` handles from the array.
    The result equals ``distinct_values(mask_from_image(im).values)``.
    """
    if im.mode in ("L", "P"):
        return np.flatnonzero(im.histogram()).astype(np.uint8)[None]
    if im.mode in ("RGB", "RGBA"):
        r, g, b = (im.getchannel(i) for i in range(3))
        if ImageChops.difference(r, g).getbbox() is None and ImageChops.difference(r, b).getbbox() is None:
            gray = np.flatnonzero(r.histogram()).astype(np.uint8)
            return np.repeat(gray[None, :, None], 3, axis=-1)
    return None


def probe_mask(path: str | Path) -> MaskProbe:
    """Size and distinct values of the mask file ``path``, decoded once (a DataError naming it if unusable)."""
    path = regular_file(path, "mask")

    def make() -> MaskProbe:
        if path.suffix.lower() in TIFF_SUFFIXES:
            raw = read_mask(path)
            values = RawMask(distinct_values(raw.values), False, False, path)
            return MaskProbe(path, *raw.values.shape[:2], values, tiff_orientation(path))
        im = open_image(path)
        indexed = palette_indices(im)
        values = _counted_values(im) if indexed or im.mode not in ("P", "PA") else None  # gray GIF: its levels
        if values is None:
            values = distinct_values(mask_from_image(im, path).values)
        raw = RawMask(values, indexed, is_lossy(im), path)
        return MaskProbe(path, im.height, im.width, raw, applied_orientation(im))

    return _cached("mask", path, make)


def dataset_channels(channels: int) -> int:
    """The ``in_channels`` an image of ``channels`` channels asks for: alpha dropped (gray+alpha -> 1, RGBA -> 3)."""
    return {1: 1, 2: 1, 3: 3, 4: 3}.get(channels, channels)


def detect_channels(paths: Sequence[Path], threads: int = 4) -> int:
    """One ``in_channels`` for a whole dataset, from every image's header (no pixels decoded).

    All gray -> 1, all colour -> 3 (alpha is dropped), all of another count (multi-sample TIFFs)
    -> that count. A mix is a DataError naming an example of each kind: whether gray images should
    be repeated to RGB or colour images made gray is the user's choice, declared as ``in_channels``.
    """
    from concurrent.futures import ThreadPoolExecutor

    if not paths:
        raise DataError("no images to decide in_channels from")
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(paths)))) as pool:
        probes = list(pool.map(probe_image, paths))
    by_count: dict[int, list[Path]] = {}
    for p in probes:
        by_count.setdefault(dataset_channels(p.channels), []).append(p.path)
    if len(by_count) > 1:
        kinds = {1: "gray", 3: "colour"}
        found = "; ".join(f"{len(files)} {kinds.get(c, f'{c}-channel')} (e.g. {files[0]})"
                          for c, files in sorted(by_count.items()))
        hint = ("declare in_channels: 3 (gray images are repeated to 3 channels) or in_channels: 1 (colour "
                "images become gray)" if set(by_count) == {1, 3} else "convert them to one channel count")
        raise DataError(f"the images do not share one channel count: {found}; {hint}")
    (channels, files), = by_count.items()
    log.info("in_channels=%d, read from the headers of %d image(s) (declare in_channels to fix it)",
             channels, len(files))
    return channels
