"""Readers for image and mask files: PNG, JPEG, BMP, GIF, WebP (Pillow) and TIFF (:mod:`unetfamily.data.tiff`).

Every failure to read a file becomes a :class:`~unetfamily.data.errors.DataError` that names
the file. Pillow decodes only :data:`PIL_FORMATS`, whatever the file's name. Its
decompression-bomb guard stays on: an image above ``PIL.Image.MAX_IMAGE_PIXELS`` is refused with
a :class:`DataError` (Pillow only warns between 1x and 2x the limit; here both are errors), and
the same limit is applied to TIFF pages.

Pixels come back as a viewer displays them: an EXIF Orientation tag 2..8 (cameras and phones write
it into JPEG, TIFF, PNG and WebP files) turns each file, image or mask, by its own tag
(:mod:`unetfamily.data.exif`, which also words a pair whose tags differ), and :func:`inspect_image`
reports the displayed size (orientations 5..8 swap height and width). A file of several frames (animated GIF, WebP or PNG; a multi-page TIFF) is refused, never
read as its first frame; an MPO (a JPEG with extra pictures) is read as its primary picture.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from unetfamily import errors
from unetfamily.data.errors import DataError
from unetfamily.data.exif import applied_orientation, exif_transpose, orientation

__all__ = [
    "IMAGE_SUFFIXES", "RawMask", "applied_orientation", "check_pixels", "convertible", "exif_transpose",
    "image_header", "image_to_float", "inspect_image", "is_lossy", "mask_from_image", "natural_key", "open_image",
    "orientation", "palette_indices", "pil_errors", "read_image", "read_lines", "read_mask", "read_volume",
    "regular_file", "to_channels",
]  # fmt: skip

log = logging.getLogger(__name__)

#: Suffixes of the files read as images and masks (compared lower-case).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp")
TIFF_SUFFIXES = (".tif", ".tiff")
#: The only formats Pillow may decode, whatever a file's name says. Pillow identifies a file by its
#: content among ~40 plugins, some of which hand the file to other programs (EPS to Ghostscript),
#: which no untrusted file should reach.
PIL_FORMATS = ("PNG", "JPEG", "BMP", "DIB", "GIF", "TIFF", "WEBP")  # JPEG covers MPO
#: Key of ``Image.info`` where :func:`open_image` records whether a WebP file is lossy (see :func:`is_lossy`).
_LOSSY_INFO = "unetfamily.lossy"


@dataclass(frozen=True)
class RawMask:
    """A mask file's pixels before decoding into class indices.

    ``values`` is ``(H, W)`` (grayscale, 16-bit or palette indices) or ``(H, W, 3)`` (RGB).
    ``palette`` is True for palette ("P" mode) PNGs, whose ``values`` are the palette indices.
    ``lossy`` is True for lossily stored files (JPEG, lossy WebP, JPEG-compressed TIFF), whose values
    carry compression noise.
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


def check_pixels(path: Path, shape: tuple[int, ...]) -> None:
    """A DataError naming ``path`` if an image of ``shape`` ``(H, W, ...)`` is above Pillow's bomb limit."""
    limit = Image.MAX_IMAGE_PIXELS
    pixels = int(shape[0]) * int(shape[1])
    if limit is not None and pixels > limit:
        raise DataError(_bomb_message(path, pixels))


def regular_file(path: str | Path, what: str = "file") -> Path:
    """``path`` if it is a regular file (:func:`unetfamily.errors.regular_file`); a DataError naming it otherwise."""
    return errors.regular_file(path, what, DataError)


@contextlib.contextmanager
def pil_errors(name: object) -> Iterator[None]:
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
        why = re.sub(r" ?<_io\.\w+ object at 0x[0-9a-f]+>", "", f"{type(e).__name__}: {e}")  # Pillow's repr of a buffer
        raise DataError(f"{name}: cannot read image ({why}); the file is corrupt or not an image") from e


def _one_frame(im: Image.Image, name: object) -> None:
    """A DataError naming ``name`` if ``im`` holds several frames (reading frame 0 would drop the rest)."""
    frames = getattr(im, "n_frames", 1)
    if frames <= 1 or im.format == "MPO":  # an MPO's first picture is its primary image
        return
    if im.format == "TIFF":
        raise DataError(f"{name}: a TIFF with {frames} pages is a stack, not one image; "
                        "load it with the 'tiff_stack' dataset type")
    raise DataError(
        f"{name}: an animated {im.format} with {frames} frames; only single-frame images are read (frame 0 is "
        "never taken silently). Save the frame you mean as a PNG, or split the animation into one file per frame"
    )


def _webp_lossy(fp: BinaryIO) -> bool:
    """Whether the WebP file ``fp`` holds lossy (VP8) rather than lossless (VP8L) data: its RIFF chunks are walked."""
    fp.seek(12)  # "RIFF" size "WEBP"
    while len(head := fp.read(8)) == 8:
        fourcc, size = head[:4], int.from_bytes(head[4:], "little")
        if fourcc in (b"VP8 ", b"VP8L"):
            return fourcc == b"VP8 "
        fp.seek(size + (size & 1), os.SEEK_CUR)
    return False


def is_lossy(im: Image.Image) -> bool:
    """Whether ``im`` (from :func:`open_image`) was stored lossily: JPEG, lossy WebP or JPEG-compressed TIFF."""
    if im.format in ("JPEG", "MPO"):
        return True
    tiff_jpeg = im.format == "TIFF" and im.info.get("compression") in ("jpeg", "tiff_jpeg")
    return tiff_jpeg or bool(im.info.get(_LOSSY_INFO))


def open_image(source: Path | BinaryIO, name: str | Path | None = None) -> Image.Image:
    """Open and fully decode ``source`` (a path to a regular file, or a binary file object) with Pillow.

    The image comes back in its displayed orientation (:func:`exif_transpose`). A file of several
    frames (animated GIF/WebP/PNG, multi-page TIFF) is refused. Every failure, the
    decompression-bomb guard included, becomes a DataError naming ``name`` (default: ``source``).
    """
    name = name if name is not None else source
    if isinstance(source, (str, Path)):
        source = regular_file(source, "image")
    with pil_errors(name):
        with Image.open(source, formats=PIL_FORMATS) as im:
            # Pillow raises above 2x MAX_IMAGE_PIXELS and only warns between 1x and 2x; refuse both.
            # (Checked here rather than with warnings.catch_warnings, which is not thread-safe.)
            check_pixels(Path(str(name)), (im.height, im.width))
            _one_frame(im, name)
            if im.format == "WEBP" and im.fp is not None:
                im.info[_LOSSY_INFO] = _webp_lossy(im.fp)
            im.load()
            return exif_transpose(im)


def _mode_channels(im: Image.Image) -> int:
    """The channel count :func:`read_image` returns for an image of this mode (before ``to_channels``)."""
    if im.mode in ("P", "PA"):
        return 4 if im.mode == "PA" or "transparency" in im.info else 3
    if im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return 3
    if im.mode == "LA":
        return 1
    return len(im.getbands())


def _mode_dtype(im: Image.Image) -> str:
    """The pixel type :func:`read_image` returns for an image of this mode: what scales it to [0, 1]."""
    return "uint16" if im.mode.startswith("I;16") or im.mode == "I" else "float32" if im.mode == "F" else "uint8"


def inspect_image(data: bytes, name: str | Path, *, full: bool = False) -> tuple[int, int, int]:
    """``(height, width, channels)`` of the image file whose bytes are ``data`` (see :func:`image_header`)."""
    height, width, channels, _, _ = image_header(data, name, full=full)
    return height, width, channels


def image_header(data: bytes, name: str | Path, *, full: bool = False) -> tuple[int, int, int, int, str]:
    """``(height, width, channels, orientation, dtype)`` of the image file ``data``, and check its integrity cheaply.

    ``orientation`` is the EXIF orientation (1..8) the file is turned upright by (1: read as stored);
    ``dtype`` the pixel type :func:`read_image` returns for it ("uint8", "uint16" or "float32").
    The size is the displayed one (EXIF orientations 5..8 swap height and width, as :func:`read_image`
    does). Without decoding all pixels where the format allows: a PNG's chunks are read and their CRCs
    verified (a truncated or altered file fails), a JPEG's compressed data is decoded at 1/8 scale
    (a truncated file fails); other formats, and every format with ``full=True``, are decoded
    completely. A file of several frames is refused. Failures are DataErrors naming ``name``.
    """
    with pil_errors(name):
        with Image.open(io.BytesIO(data), formats=PIL_FORMATS) as im:
            check_pixels(Path(str(name)), (im.height, im.width))
            _one_frame(im, name)
            channels, dtype = _mode_channels(im), _mode_dtype(im)
            # PNG and JPEG give size, orientation and integrity without a full decode; not a PNG whose
            # eXIf chunk follows its pixels (Pillow sees it only on load)
            cheap = im.format in ("JPEG", "MPO") or im.format == "PNG" and ("exif" in im.info or b"eXIf" not in data)
            if full or not cheap:
                im.load()
                exif_transpose(im)
                if full:
                    _pil_to_array(im)
                return im.height, im.width, channels, applied_orientation(im), dtype
            turn = orientation(im) if im.format != "PNG" or "exif" in im.info else 1  # (a PNG's getexif loads it)
            h, w = (im.width, im.height) if turn >= 5 else (im.height, im.width)
            if im.format == "PNG":
                im.verify()
            else:
                im.draft(im.mode, (max(1, im.width // 8), max(1, im.height // 8)))
                im.load()
    return h, w, channels, turn, dtype


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
    """Read an image file into an array of its native dtype (uint8, uint16 or float32), as displayed.

    Returns ``(H, W)`` for grayscale or ``(H, W, C)`` otherwise (C = 3 or 4 for PNG/JPEG/BMP/GIF/WebP;
    any C for TIFF). Palette images are expanded to RGB. TIFFs are read by
    :func:`unetfamily.data.tiff.read_tiff_page`.
    """
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        from unetfamily.data.tiff import read_tiff_page  # tiff builds on this module

        return read_tiff_page(path)[0]
    return _pil_to_array(open_image(path))


def read_mask(path: str | Path) -> RawMask:
    """Read a mask file without interpreting its values (see :mod:`unetfamily.data.encodings`).

    Palette PNGs and GIFs keep their palette indices; RGBA drops alpha; TIFF masks are read as
    :func:`read_image` reads TIFFs (palette TIFFs give their indices).
    """
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        from unetfamily.data.tiff import read_tiff_page

        arr, lossy = read_tiff_page(path)
        return RawMask(arr[..., :3] if arr.ndim == 3 else arr, palette=False, lossy=lossy, path=path)
    return mask_from_image(open_image(path), path)


def palette_indices(im: Image.Image) -> bool:
    """Whether a mask image's pixels are its palette indices: palette PNGs (VOC), and GIFs with colours.

    A GIF whose used palette entries are all gray is read by its gray levels instead: GIF has no gray
    mode, so a gray mask saved as GIF gets indices in any order (Pillow saves 0/255 as 0/1 or 1/0).
    """
    if im.mode not in ("P", "PA"):
        return False
    if im.format != "GIF":
        return True
    palette = np.asarray(im.getpalette("RGB") or [], np.uint8).reshape(-1, 3)
    used = np.flatnonzero(im.histogram()[:256])
    return bool(used.size and (used.max() >= len(palette) or (palette[used] != palette[used, :1]).any()))


def mask_from_image(im: Image.Image, path: Path) -> RawMask:
    """The :class:`RawMask` of a mask image decoded by :func:`open_image` (what :func:`read_mask` returns)."""
    lossy = is_lossy(im)
    if palette_indices(im):
        return RawMask(np.asarray(im.convert("P") if im.mode == "PA" else im), palette=True, lossy=lossy, path=path)
    if im.mode in ("P", "PA"):  # a gray GIF: its gray levels
        return RawMask(np.asarray(im.convert("L")), palette=False, lossy=lossy, path=path)
    arr = _pil_to_array(im)
    if arr.ndim == 3:
        arr = arr[..., :3]
    return RawMask(arr, palette=False, lossy=lossy, path=path)


def read_volume(path: str | Path) -> np.ndarray:
    """Read a multi-page TIFF stack into ``(N, H, W)`` or ``(N, H, W, C)`` (one page per slice), as displayed.

    See :func:`unetfamily.data.tiff.read_tiff_stack`.
    """
    from unetfamily.data.tiff import read_tiff_stack

    return read_tiff_stack(path)


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
        if not np.isfinite([lo, hi]).all():  # min and max are NaN (or infinite) when any pixel is
            raise DataError(_non_finite_message(arr, path))
        if lo < 0.0 or hi > 1.0:
            raise DataError(f"{path}: float image with values in [{lo:g}, {hi:g}]; rescale it to [0, 1] first")
        return arr.astype(np.float32)
    raise DataError(f"{path}: unsupported pixel type {arr.dtype}; use 8/16-bit unsigned integers or floats in [0, 1]")


def _non_finite_message(arr: np.ndarray, path: Path | str) -> str:
    """The error for a float image holding NaN or infinite values: how many of each, and the finite range."""
    counts = " and ".join(f"{n:,d} {kind}" for n, kind in ((np.count_nonzero(np.isnan(arr)), "NaN"),
                                                            (np.count_nonzero(np.isinf(arr)), "infinite")) if n)
    finite = arr[np.isfinite(arr)]
    rest = f"the others lie in [{finite.min():g}, {finite.max():g}]" if finite.size else "none is finite"
    return (f"{path}: float image contains {counts} value(s) (of {arr.size:,d} values; {rest}); replace them "
            "with real values (e.g. numpy.nan_to_num) and rescale the image to [0, 1]")
