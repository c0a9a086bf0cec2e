"""EXIF orientation: turning a file upright, and pairing an image with a mask whose tag differs.

Every reader turns a file upright by its own EXIF Orientation tag (2..8; cameras and phones write
it), as viewers show it (:func:`exif_transpose`; TIFFs read by tifffile: :func:`unetfamily.data.tiff.orient`).
An image and a mask that carry the same tag are turned the same way and stay aligned. When the tags
differ (typically a phone photo tagged 6 whose mask, drawn on its stored pixels, has no tag), one is
turned and the other is not:

- the sizes tell when the turn swaps height and width of a non-square image: the mask fits the
  image's stored size, not its upright one. :func:`size_mismatch` says so (stored size, tag, size
  after turning upright) and what to do; it words every size mismatch of a pair;
- a square image, or a 180-degree turn or flip (tags 2..4), leaves the sizes equal either way, so
  nothing can tell whether the mask was drawn on the stored or on the upright pixels:
  :func:`turned_differently` finds such pairs and :func:`unturned_warning` words the one WARNING
  the data check gives per dataset (:func:`unetfamily.data.check.check_dataset`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PIL import ExifTags, Image, ImageOps

__all__ = [
    "Oriented", "applied_orientation", "exif_transpose", "file_orientation", "orientation", "size_mismatch",
    "stored_size", "turned_differently", "unturned_warning",
]  # fmt: skip

#: Key of ``Image.info`` where :func:`exif_transpose` records the orientation it applied.
_ORIENTATION_INFO = "unetfamily.orientation"


def orientation(im: Image.Image) -> int:
    """The EXIF Orientation (1..8) ``im`` is stored with; 1 (as stored) when absent or invalid."""
    value = im.getexif().get(ExifTags.Base.Orientation, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def exif_transpose(im: Image.Image) -> Image.Image:
    """Turn the loaded ``im`` in place to its displayed orientation (``PIL.ImageOps.exif_transpose``); return it.

    Mode, palette, ``format`` and ``info`` are kept; a second call changes nothing (the tag is dropped).
    The orientation applied is recorded (:func:`applied_orientation`).
    """
    turn = orientation(im)
    if turn != 1:
        ImageOps.exif_transpose(im, in_place=True)
        im.info[_ORIENTATION_INFO] = turn
    return im


def applied_orientation(im: Image.Image) -> int:
    """The EXIF orientation :func:`exif_transpose` turned ``im`` upright by; 1 when it was read as stored."""
    return im.info.get(_ORIENTATION_INFO, 1)


def file_orientation(path: str | Path) -> int:
    """The EXIF orientation (1..8) the readers turn the image file ``path`` upright by; 1: read as stored."""
    from unetfamily.data.io import TIFF_SUFFIXES, image_header, regular_file  # io builds on this module
    from unetfamily.data.tiff import tiff_orientation

    path = regular_file(path, "image")
    if path.suffix.lower() in TIFF_SUFFIXES:
        return tiff_orientation(path)
    return image_header(path.read_bytes(), path)[3]


class _Placed(Protocol):
    path: Path
    height: int
    width: int
    orientation: int


@dataclass(frozen=True)
class Oriented:
    """A file's size as read (turned upright) and the EXIF orientation it was turned by (1: as stored)."""

    path: Path
    height: int
    width: int
    orientation: int = 1


def stored_size(f: _Placed) -> tuple[int, int]:
    """``(height, width)`` of ``f`` as stored in its file: orientations 5..8 swap the upright size."""
    return (f.width, f.height) if f.orientation >= 5 else (f.height, f.width)


def _size(f: _Placed, unit: str = "") -> str:
    if f.orientation == 1:
        return f"{f.width}x{f.height}{unit}" + ("" if unit else " (no orientation tag, read as stored)")
    h, w = stored_size(f)
    return f"{f.width}x{f.height}{unit} once turned upright by its EXIF Orientation {f.orientation} (stored {w}x{h})"


def _advice(image: _Placed, other: _Placed, what: str) -> str:
    """How to make a pair turned differently read alike."""
    how = ("keeping the stored pixels (e.g. exiftool -Orientation= FILE; re-saving a PNG, JPEG or WebP with Pillow "
           "drops it)")
    if other.orientation == 1 or image.orientation == 1:
        tagged, plain = ("image", what) if other.orientation == 1 else (what, "image")
        return f"strip the {tagged}'s orientation tag, {how}, or give the {plain} the same tag"
    return f"give the image and its {what} the same orientation tag, or strip both, {how}"


def size_mismatch(image: _Placed, other: _Placed, what: str = "mask") -> str | None:
    """``None`` when ``other`` (a mask) has ``image``'s size as read; else the error naming both files.

    Where an EXIF orientation turned either, the message gives stored size, tag and upright size of
    each; when the two have the same size as stored, it says so and how to read them alike.
    """
    if (image.height, image.width) == (other.height, other.width):
        return None
    need = "image and mask must have the same size" if what == "mask" else f"the {what} must have the image's size"
    if image.orientation == other.orientation == 1:
        return f"{image.path} is {image.width}x{image.height} (WxH) but its {what} {other.path} is " \
               f"{other.width}x{other.height}; {need}"
    text = f"{image.path} is {_size(image, ' (WxH)')} but its {what} {other.path} is {_size(other)}"
    if image.orientation == other.orientation:
        return f"{text}; {need}"
    if stored_size(image) == stored_size(other):
        return (f"{text}: it fits the image as stored, not turned upright. Each file is turned upright by its own "
                f"EXIF orientation tag, as viewers show it; {_advice(image, other, what)}")
    return f"{text}; {need} (each file is turned upright by its own EXIF orientation tag, as viewers show it)"


def turned_differently(image: _Placed, other: _Placed) -> bool:
    """Whether a pair of equal size is turned differently and would have equal sizes as stored too.

    Then nothing tells whether the mask was drawn on the image's stored or upright pixels. A
    non-square image turned by 90 degrees whose mask has its upright size is not: that mask cannot
    have been drawn on the stored pixels.
    """
    same = (image.height, image.width) == (other.height, other.width)
    return same and image.orientation != other.orientation and stored_size(image) == stored_size(other)


def unturned_warning(count: int, image: _Placed, other: _Placed, what: str = "mask") -> str:
    """The data check's one WARNING about ``count`` pairs :func:`turned_differently`; ``image``, ``other``: one."""
    def tag(f: _Placed) -> str:
        return f"EXIF Orientation {f.orientation}" if f.orientation != 1 else "no orientation tag"

    if other.orientation == 1:
        how = f"images are turned upright as viewers show them while the {what}s are used as stored"
    else:
        how = "each file is turned upright by its own tag, as viewers show it"
    return (f"{count} image(s) carry another EXIF orientation than their {what} and the sizes agree either way, "
            f"e.g. {image.path} ({tag(image)}) and {other.path} ({tag(other)}): {how}, so a {what} drawn on the "
            f"stored pixels is misaligned. To read both alike, {_advice(image, other, what)}")
