"""Readers for image and mask files: PNG, JPEG, BMP (Pillow) and TIFF (tifffile).

Every failure to read a file becomes a :class:`~unetfamily.data.errors.DataError` that names
the file. Pillow decodes only :data:`PIL_FORMATS`, whatever the file's name. Its
decompression-bomb guard stays on: an image above ``PIL.Image.MAX_IMAGE_PIXELS`` is refused with
a :class:`DataError` (Pillow only warns between 1x and 2x the limit; here both are errors), and
the same limit is applied to TIFF pages.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from unetfamily.data.errors import DataError

__all__ = [
    "IMAGE_SUFFIXES",
    "RawMask",
    "convertible",
    "image_to_float",
    "inspect_image",
    "mask_from_image",
    "natural_key",
    "open_image",
    "read_image",
    "read_lines",
    "read_mask",
    "read_volume",
    "regular_file",
    "to_channels",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")
#: The only formats Pillow may decode, whatever a file's name says. Pillow identifies a file by its
#: content among ~40 plugins, some of which hand the file to other programs (EPS to Ghostscript),
#: which no untrusted file should reach. GIF and WebP are kept for labelme's imageData.
PIL_FORMATS = ("PNG", "JPEG", "BMP", "DIB", "GIF", "TIFF", "WEBP")  # JPEG covers MPO


@dataclass(frozen=True)
class RawMask:
    """A mask file's pixels before decoding into class indices.

    ``values`` is ``(H, W)`` (grayscale, 16-bit or palette indices) or ``(H, W, 3)`` (RGB).
    ``palette`` is True for palette ("P" mode) PNGs, whose ``values`` are the palette indices.
    ``lossy`` is True for JPEG files, whose values carry compression noise.
    """

    values: np.ndarray
    palette: bool
    lossy: bool
    path: Path


def natural_key(text: str) -> tuple:
    """Sort key that orders ``"2" < "10"`` (file names that number their samples)."""
    return tuple(int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", text))


def read_lines(path: Path, what: str) -> list[str]:
    """The non-blank lines of the text file ``path``, stripped; a DataError naming ``what`` if unreadable."""
    path = regular_file(path, what)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (Windows editors) is not part of a name
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read {what} ({e})") from e
    return [line.strip() for line in text.splitlines() if line.strip()]


def _bomb_message(path: Path, pixels: int) -> str:
    return (
        f"{path}: {pixels:,d} pixels is above Pillow's decompression bomb limit "
        f"PIL.Image.MAX_IMAGE_PIXELS={Image.MAX_IMAGE_PIXELS:,d}. If the file is trusted, raise "
        "that limit in your script before loading; otherwise resize or tile the image."
    )


def _check_pixels(path: Path, shape: tuple[int, ...]) -> None:
    limit = Image.MAX_IMAGE_PIXELS
    pixels = int(shape[0]) * int(shape[1])
    if limit is not None and pixels > limit:
        raise DataError(_bomb_message(path, pixels))


_SPECIAL_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def regular_file(path: str | Path, what: str = "file") -> Path:
    """``path`` if it is a regular file (a symlink to one is fine), checked with ``os.stat`` before any open.

    Anything else is a DataError naming it: a missing file or broken symlink, a directory, and the
    special files (FIFOs, sockets, devices) whose opening could block forever or read without end.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as e:
        broken = " (a broken symbolic link)" if path.is_symlink() else ""
        raise DataError(f"{path}: {what} not found{broken}") from e
    except OSError as e:
        raise DataError(f"{path}: cannot access {what} ({e.strerror or e})") from e
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _SPECIAL_KINDS if test(mode)), "not a regular file")
        raise DataError(
            f"{path}: is {kind}, not a regular file; the {what} must be a regular file (remove or rename it)"
        )
    return path


@contextlib.contextmanager
def _pil_errors(name: object) -> Iterator[None]:
    """Turn anything Pillow raises while reading ``name`` into a :class:`DataError` naming it."""
    try:
        yield
    except DataError:
        raise
    except Image.DecompressionBombError as e:
        raise DataError(f"{name}: {e} Keep the limit unless the file is trusted.") from e
    except FileNotFoundError as e:
        raise DataError(f"{name}: file not found") from e
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, EOFError ...
        raise DataError(
            f"{name}: cannot read image ({type(e).__name__}: {e}); the file is corrupt or not an image"
        ) from e


def open_image(source: Path | BinaryIO, name: str | Path | None = None) -> Image.Image:
    """Open and fully decode ``source`` (a path to a regular file, or a binary file object) with Pillow.

    Every failure, the decompression-bomb guard included, becomes a DataError naming ``name``
    (default: ``source``).
    """
    name = name if name is not None else source
    if isinstance(source, (str, Path)):
        source = regular_file(source, "image")
    with _pil_errors(name):
        with Image.open(source, formats=PIL_FORMATS) as im:
            # Pillow raises above 2x MAX_IMAGE_PIXELS and only warns between 1x and 2x; refuse both.
            # (Checked here rather than with warnings.catch_warnings, which is not thread-safe.)
            _check_pixels(Path(str(name)), (im.height, im.width))
            im.load()
            return im


def _mode_channels(im: Image.Image) -> int:
    """The channel count :func:`read_image` returns for an image of this mode (before ``to_channels``)."""
    if im.mode in ("P", "PA"):
        return 4 if im.mode == "PA" or "transparency" in im.info else 3
    if im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return 3
    if im.mode == "LA":
        return 1
    return len(im.getbands())


def inspect_image(data: bytes, name: str | Path, *, full: bool = False) -> tuple[int, int, int]:
    """``(height, width, channels)`` of the image file whose bytes are ``data``, and check its integrity cheaply.

    Without decoding all pixels where the format allows: a PNG's chunks are read and their CRCs
    verified (a truncated or altered file fails), a JPEG's compressed data is decoded at 1/8 scale
    (a truncated file fails); other formats, and every format with ``full=True``, are decoded
    completely. Failures are DataErrors naming ``name``.
    """
    with _pil_errors(name):
        with Image.open(io.BytesIO(data), formats=PIL_FORMATS) as im:
            _check_pixels(Path(str(name)), (im.height, im.width))
            shape = (im.height, im.width, _mode_channels(im))
            if full:
                _pil_to_array(im)
            elif im.format == "PNG":
                im.verify()
            elif im.format in ("JPEG", "MPO"):
                im.draft(im.mode, (max(1, im.width // 8), max(1, im.height // 8)))
                im.load()
            else:
                im.load()
    return shape


@contextlib.contextmanager
def _tiff_errors(path: Path, what: str) -> Iterator[None]:
    """Turn anything tifffile raises while reading ``path`` into a :class:`DataError` naming it."""
    try:
        yield
    except DataError:
        raise
    except FileNotFoundError as e:
        raise DataError(f"{path}: file not found") from e
    except Exception as e:
        raise DataError(f"{path}: cannot read {what} ({type(e).__name__}: {e}); the file is corrupt or not a TIFF") from e


def _read_tiff_page(path: Path) -> np.ndarray:
    import tifffile

    regular_file(path, "image")
    with _tiff_errors(path, "TIFF"):
        with tifffile.TiffFile(path) as tif:
            pages = len(tif.pages)
            if pages != 1:
                raise DataError(
                    f"{path}: a TIFF with {pages} pages is a stack, not one image; "
                    "load it with the 'tiff_stack' dataset type"
                )
            page = tif.pages[0]
            _check_pixels(path, (page.imagelength, page.imagewidth))
            arr = page.asarray()
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)  # planar (S, H, W) -> (H, W, S)
    return arr


def _pil_to_array(im: Image.Image) -> np.ndarray:
    if im.mode == "1":
        im = im.convert("L")
    elif im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
    elif im.mode == "LA":
        im = im.getchannel("L")
    arr = np.asarray(im)
    if im.mode == "I":  # 32-bit integer (e.g. some 16-bit PNGs); keep it when it fits uint16
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise DataError(f"{im.filename}: 32-bit integer pixels outside 0..65535 are not supported")
        arr = arr.astype(np.uint16)
    return arr


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file into an array of its native dtype (uint8, uint16 or float32).

    Returns ``(H, W)`` for grayscale or ``(H, W, C)`` otherwise (C = 3 or 4 for PNG/JPEG/BMP;
    any C for TIFF). Palette images are expanded to RGB.
    """
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        return _read_tiff_page(path)
    return _pil_to_array(open_image(path))


def read_mask(path: str | Path) -> RawMask:
    """Read a mask file without interpreting its values (see :mod:`unetfamily.data.encodings`).

    Palette PNGs keep their palette indices; RGBA drops alpha; TIFF masks are read with tifffile.
    """
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        arr = _read_tiff_page(path)
        return RawMask(arr[..., :3] if arr.ndim == 3 else arr, palette=False, lossy=False, path=path)
    return mask_from_image(open_image(path), path)


def mask_from_image(im: Image.Image, path: Path) -> RawMask:
    """The :class:`RawMask` of a mask image decoded by :func:`open_image` (what :func:`read_mask` returns)."""
    lossy = im.format in ("JPEG", "MPO")
    if im.mode in ("P", "PA"):
        return RawMask(np.asarray(im.convert("P") if im.mode == "PA" else im), palette=True, lossy=lossy, path=path)
    arr = _pil_to_array(im)
    if arr.ndim == 3:
        arr = arr[..., :3]
    return RawMask(arr, palette=False, lossy=lossy, path=path)


def read_volume(path: str | Path) -> np.ndarray:
    """Read a multi-page TIFF stack into ``(N, H, W)`` or ``(N, H, W, C)`` (one page per slice)."""
    import tifffile

    path = regular_file(path, "TIFF stack")
    with _tiff_errors(path, "TIFF stack"):
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape = series.shape
            axes = series.axes
            spatial = [shape[i] for i, a in enumerate(axes) if a in "YX"]
            _check_pixels(path, tuple(spatial))
            arr = series.asarray()
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim not in (3, 4):
        raise DataError(f"{path}: expected a stack of 2-D pages (N, H, W[, C]); got shape {arr.shape} (axes {axes})")
    return arr


def _drop_alpha(channels: int, in_channels: int) -> int:
    """The channel count left after :func:`to_channels` drops an alpha channel (RGBA -> RGB, gray+alpha -> gray)."""
    if channels == 4 and in_channels != 4:
        return 3
    if channels == 2 and in_channels != 2:
        return 1
    return channels


def convertible(channels: int, in_channels: int) -> bool:
    """Whether :func:`to_channels` turns an image of ``channels`` channels into ``in_channels``."""
    c = _drop_alpha(channels, in_channels)
    return c == in_channels or (c, in_channels) in ((1, 3), (3, 1))


def to_channels(arr: np.ndarray, in_channels: int, path: Path | str) -> np.ndarray:
    """Convert ``(H, W)`` or ``(H, W, C)`` pixels to ``(H, W, in_channels)``.

    Gray -> RGB repeats the channel; RGB -> gray uses ITU-R 601 luma (as Pillow's ``convert("L")``);
    RGBA drops alpha; other channel counts must already equal ``in_channels``.
    """
    if arr.ndim == 2:
        arr = arr[..., None]
    c = _drop_alpha(arr.shape[-1], in_channels)
    arr = arr[..., :c]
    if c == in_channels:
        return arr
    if c == 1 and in_channels == 3:
        return np.repeat(arr, 3, axis=-1)
    if c == 3 and in_channels == 1:
        luma = arr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        if np.issubdtype(arr.dtype, np.integer):
            luma = np.clip(np.rint(luma), 0, np.iinfo(arr.dtype).max).astype(arr.dtype)
        return luma[..., None]
    raise DataError(f"{path}: image has {c} channels; cannot convert to in_channels={in_channels}")


def image_to_float(arr: np.ndarray, path: Path | str) -> np.ndarray:
    """Scale pixels to float32 in [0, 1] by their dtype's range (uint8 /255, uint16 /65535).

    Float images must already lie in [0, 1]; anything else is a DataError (rescale them first).
    """
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if arr.dtype == bool:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.floating):
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if lo < 0.0 or hi > 1.0 or not np.isfinite([lo, hi]).all():
            raise DataError(f"{path}: float image with values in [{lo:g}, {hi:g}]; rescale it to [0, 1] first")
        return arr.astype(np.float32)
    raise DataError(f"{path}: unsupported pixel type {arr.dtype}; use 8/16-bit unsigned integers or floats in [0, 1]")
