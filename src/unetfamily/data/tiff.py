"""TIFF files: one page (:func:`read_tiff_page`) or a stack of pages (:func:`read_tiff_stack`).

tifffile reads them. Without the optional ``imagecodecs`` package tifffile decodes only
uncompressed, Deflate, PackBits and LZMA data; for any other compression (LZW, JPEG, ZSTD, ...) the
file is read by Pillow instead, whose libtiff decodes LZW, Deflate, PackBits, JPEG and usually ZSTD.
When neither can decode it, the :class:`~unetfamily.data.errors.DataError` names the file and the
compression and says to install imagecodecs; it never calls a file corrupt for want of a codec.

The TIFF Orientation tag (274, the EXIF orientation) is applied, as for every other format (see
:mod:`unetfamily.data.io`): pixels come back as a viewer displays them, orientations 5..8 swapping
height and width, whichever library decoded them. A stack's pages all take its first page's
orientation.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageSequence

from unetfamily.data.errors import DataError
from unetfamily.data.io import check_pixels, exif_transpose, open_image, pil_errors, regular_file

__all__ = ["LOSSY_COMPRESSIONS", "orient", "read_tiff_page", "read_tiff_stack", "tiff_orientation"]

log = logging.getLogger(__name__)

#: TIFF compressions whose pixels carry compression noise (old-style JPEG, JPEG, lossy JPEG of DNG).
LOSSY_COMPRESSIONS = frozenset({6, 7, 34892})
ORIENTATION_TAG = 274


def orient(pixels: np.ndarray, orientation: int, axis: int = 0) -> np.ndarray:
    """``pixels`` stored with EXIF ``orientation`` (1..8), turned as displayed.

    The image's rows and columns are axes ``axis`` and ``axis + 1`` (``(H, W[, C])`` with ``axis=0``,
    ``(N, H, W[, C])`` with ``axis=1``). Orientations 5..8 swap them; others (1, unknown) change nothing.
    Equal to Pillow's ``ImageOps.exif_transpose`` on the same pixels.
    """
    rows, cols = axis, axis + 1
    if orientation == 2:
        return np.flip(pixels, cols)
    if orientation == 3:
        return np.flip(pixels, (rows, cols))
    if orientation == 4:
        return np.flip(pixels, rows)
    if orientation == 5:
        return np.swapaxes(pixels, rows, cols)
    if orientation == 6:
        return np.rot90(pixels, -1, axes=(rows, cols))
    if orientation == 7:
        return np.flip(np.swapaxes(pixels, rows, cols), (rows, cols))
    if orientation == 8:
        return np.rot90(pixels, 1, axes=(rows, cols))
    return pixels


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


def _codec_name(page: Any) -> str:
    """The page's compression (and predictor, when one is used) as tifffile names them, e.g. ``'LZW'``."""
    name = getattr(page.compression, "name", str(page.compression))
    predictor = page.predictor
    return name if predictor == 1 else f"{name} with predictor {getattr(predictor, 'name', predictor)}"


def _missing_codec(page: Any, error: Exception) -> str | None:
    """The codec tifffile lacked when decoding ``page`` failed with ``error``; ``None`` if it had it.

    Without imagecodecs tifffile's codec lookup fails (a ValueError naming 'imagecodecs' at decode
    time), or its pure-Python stand-in needs a module this Python lacks (an ImportError).
    """
    import tifffile

    decodable = (page.compression == 1 or page.compression in tifffile.TIFF.DECOMPRESSORS) and (
        page.predictor == 1 or page.predictor in tifffile.TIFF.UNPREDICTORS
    )
    if decodable and not isinstance(error, ImportError) and "imagecodecs" not in str(error):
        return None
    return _codec_name(page)


def _codec_error(path: Path, codec: str, cause: BaseException) -> DataError:
    installed = importlib.util.find_spec("imagecodecs") is not None
    need = ("is not in the installed imagecodecs build" if installed
            else "needs the imagecodecs package, which is not installed")
    todo = "pip install --upgrade imagecodecs" if installed else "pip install imagecodecs"
    return DataError(
        f"{path}: TIFF compression {codec} {need}, and Pillow cannot decode it either ({type(cause).__name__}: "
        f"{cause}); install imagecodecs ({todo}) to read it"
    )


def _native(pixels: np.ndarray) -> np.ndarray:
    """Pixels of a Pillow-decoded TIFF in native byte order, as tifffile returns them."""
    if pixels.dtype.byteorder not in ("=", "|"):
        pixels = pixels.astype(pixels.dtype.newbyteorder("="))
    return pixels


def _pillow_page(path: Path, codec: str) -> np.ndarray:
    """Page 0 of ``path`` decoded by Pillow (already turned by its orientation, see :func:`open_image`)."""
    log.debug("%s: tifffile lacks the %s codec; decoding with Pillow", path, codec)
    try:
        im = open_image(path)
    except DataError as e:
        raise _codec_error(path, codec, e.__cause__ or e) from e
    return _native(np.asarray(im))


def _samples_last(pixels: np.ndarray, axes: str) -> np.ndarray:
    """``pixels`` with tifffile's sample axis ``S`` (planar pages give ``(S, H, W)``) moved last: ``(..., H, W, S)``."""
    if "S" in axes and len(axes) == pixels.ndim and axes[-1] != "S":
        return np.moveaxis(pixels, axes.index("S"), -1)
    return pixels


def _orientation(page: Any) -> int:
    value = page.tags.valueof(ORIENTATION_TAG, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def tiff_orientation(path: str | Path) -> int:
    """The Orientation tag (1..8) of the TIFF ``path``'s first page, from its header; 1 (as stored) without one."""
    path = regular_file(path, "image")
    import tifffile

    with _tiff_errors(path, "TIFF"), tifffile.TiffFile(path) as tif:
        return _orientation(tif.pages[0]) if len(tif.pages) else 1


def read_tiff_page(path: str | Path) -> tuple[np.ndarray, bool]:
    """The one page of the TIFF ``path``: ``(H, W)`` or ``(H, W, S)`` in its stored dtype, and whether it is lossy.

    uint16 stays uint16, 1-bit pages are bool, palette pages give their indices, planar pages
    (stored ``(S, H, W)``) come back ``(H, W, S)``. A file of more pages is a DataError (a stack).
    """
    path = regular_file(path, "image")
    import tifffile

    with _tiff_errors(path, "TIFF"):
        with tifffile.TiffFile(path) as tif:
            pages = len(tif.pages)
            if pages == 0:
                raise DataError(f"{path}: a TIFF holding no image (0 pages); the file is corrupt or not a TIFF")
            if pages != 1:
                raise DataError(
                    f"{path}: a TIFF with {pages} pages is a stack, not one image; "
                    "load it with the 'tiff_stack' dataset type"
                )
            page = tif.pages[0]
            check_pixels(path, (page.imagelength, page.imagewidth))
            lossy, orientation, axes = page.compression in LOSSY_COMPRESSIONS, _orientation(page), page.axes
            pixels, codec = _decode(page.asarray, page)
    if codec is not None:
        return _pillow_page(path, codec), lossy
    return orient(_samples_last(pixels, axes), orientation), lossy


def _decode(read: Any, page: Any) -> tuple[np.ndarray | None, str | None]:
    """``(read(), None)``, or ``(None, codec)`` when tifffile lacks the codec ``page`` needs (other errors propagate)."""
    try:
        return read(), None
    except Exception as e:
        codec = _missing_codec(page, e)
        if codec is None:
            raise
        return None, codec


def _pillow_stack(path: Path, codec: str) -> np.ndarray:
    """Every page of ``path`` decoded by Pillow, ``(N, H, W[, S])``; each page turned by its orientation."""
    log.debug("%s: tifffile lacks the %s codec; decoding the stack with Pillow", path, codec)
    pages = []
    try:
        with pil_errors(path), Image.open(path, formats=["TIFF"]) as im:
            for n, frame in enumerate(ImageSequence.Iterator(im)):
                check_pixels(path, (frame.height, frame.width))
                frame.load()
                pages.append(_native(np.array(exif_transpose(frame))))
                if pages[-1].shape != pages[0].shape or pages[-1].dtype != pages[0].dtype:
                    raise DataError(f"{path}: page {n} is {pages[-1].shape} {pages[-1].dtype} but page 0 is "
                                    f"{pages[0].shape} {pages[0].dtype}; a stack's pages must match")
    except DataError as e:
        if e.__cause__ is None:
            raise
        raise _codec_error(path, codec, e.__cause__) from e
    return np.stack(pages)


def read_tiff_stack(path: str | Path) -> np.ndarray:
    """A multi-page TIFF as ``(N, H, W)`` or ``(N, H, W, C)`` (one page per slice), turned by its orientation."""
    path = regular_file(path, "TIFF stack")
    import tifffile

    with _tiff_errors(path, "TIFF stack"):
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = series.axes
            check_pixels(path, tuple(n for n, a in zip(series.shape, axes) if a in "YX"))
            key = series.keyframe
            orientation = _orientation(key)
            pixels, codec = _decode(series.asarray, key)
    if codec is not None:
        return _pillow_stack(path, codec)
    pixels = _samples_last(pixels, axes)
    if pixels.ndim == 2:
        pixels = pixels[None]
    if pixels.ndim not in (3, 4):
        raise DataError(f"{path}: expected a stack of 2-D pages (N, H, W[, C]); got shape {pixels.shape} (axes {axes})")
    return orient(pixels, orientation, axis=1)
