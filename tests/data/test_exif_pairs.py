"""An image and a mask whose EXIF orientation tags differ: refused with stored and upright sizes, or one WARNING.

Every file is turned upright by its own tag. A phone photo tagged 6 whose mask was drawn on its
stored pixels (no tag) used to pass the data check silently when square (image and mask misaligned)
and, when not square, to be refused with the turned size as if it were the file's size.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from unetfamily.data import DataError, build_dataset, check_dataset
from unetfamily.data.exif import Oriented, size_mismatch, turned_differently
from unetfamily.data.probe import probe_image, probe_mask

from .conftest import save


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[274] = orientation
    return exif


def pair(root: Path, name: str, image_hw: tuple[int, int], image_tag: int = 1, mask_hw: tuple[int, int] | None = None,
         mask_tag: int = 1, fmt: str = "png") -> None:
    """Write images/NAME.FMT (stored ``image_hw``, EXIF ``image_tag``) and masks/NAME.png (stored ``mask_hw``)."""
    h, w = image_hw
    image = np.zeros((h, w, 3), np.uint8)
    image[1:4, 1 : w - 2] = 255  # asymmetric: any turn shows
    path = root / "images" / f"{name}.{fmt}"
    if fmt == "tif":
        path.parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(path, image, extratags=[(274, "H", 1, image_tag, True)] if image_tag != 1 else [])
    else:
        save(path, image, **({"exif": _exif(image_tag)} if image_tag != 1 else {}), **({"quality": 95} if fmt == "jpg"
                                                                                       else {}))
    mh, mw = mask_hw or image_hw
    mask = np.zeros((mh, mw), np.uint8)
    mask[1:4, 1 : mw - 2] = 1
    save(root / "masks" / f"{name}.png", mask, **({"exif": _exif(mask_tag)} if mask_tag != 1 else {}))


def check(root: Path):
    return check_dataset({"type": "folder", "root": str(root)}, ["all"], optional=[])


def exif_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "EXIF" in r.getMessage()]


@pytest.mark.parametrize("fmt", ["png", "jpg", "tif"])
@pytest.mark.parametrize("tag", [5, 6, 7, 8])
def test_a_mask_of_the_stored_size_of_a_turned_image_is_refused_naming_tag_and_both_sizes(tmp_path, tag, fmt):
    pair(tmp_path, "s0", (40, 60), tag, fmt=fmt)  # stored 60x40 (WxH), 40x60 upright; the mask drawn on the stored
    assert probe_image(tmp_path / "images" / f"s0.{fmt}").orientation == tag
    expected = (rf"s0.{fmt} is 40x60 \(WxH\) once turned upright by its EXIF Orientation {tag} \(stored 60x40\) but "
                r"its mask .*s0.png is 60x40 \(no orientation tag, read as stored\): it fits the image as stored, not "
                r"turned upright\. .*strip the image's orientation tag, keeping the stored pixels \(e\.g\. exiftool "
                r"-Orientation= FILE.*or give the mask the same tag")
    with pytest.raises(DataError, match=expected):
        check(tmp_path)
    ds = build_dataset({"type": "folder", "root": str(tmp_path)}, "all")
    with pytest.raises(DataError, match=expected):  # read without the check: the same words
        ds.read(0)


def test_any_size_mismatch_of_a_turned_image_says_it_was_turned(tmp_path):
    pair(tmp_path, "s0", (40, 60), 6, mask_hw=(50, 50))
    with pytest.raises(DataError, match=r"s0.png is 40x60 \(WxH\) once turned upright by its EXIF Orientation 6 "
                                        r"\(stored 60x40\) but its mask .*s0.png is 50x50 \(no orientation tag, read "
                                        r"as stored\); image and mask must have the same size \(each file is turned"):
        check(tmp_path)
    pair(tmp_path, "s0", (40, 60), 6, mask_hw=(50, 50), mask_tag=6)  # both turned: the sizes alone are wrong
    with pytest.raises(DataError, match=r"is 40x60 \(WxH\) once turned .* is 50x50 once turned upright by its EXIF "
                                        r"Orientation 6 \(stored 50x50\); image and mask must have the same size$"):
        build_dataset({"type": "folder", "root": str(tmp_path)}, "all").read(0)


def test_pairs_whose_sizes_cannot_tell_get_one_warning_per_dataset(tmp_path, caplog):
    """Square images (any tag) and 180-degree turns or flips (tags 2..4) agree in size either way."""
    for i in range(3):
        pair(tmp_path, f"sq{i}", (48, 48), 6)
    for tag in (2, 3, 4):
        pair(tmp_path, f"flip{tag}", (40, 60), tag, fmt="tif")
    with caplog.at_level(logging.WARNING):
        result = check(tmp_path)
    (warning,) = exif_warnings(caplog)
    assert [w for w in result.warnings if "EXIF" in w] == [warning]
    assert warning.startswith("6 image(s) carry another EXIF orientation than their mask and the sizes agree either")
    assert "flip2.tif (EXIF Orientation 2) and" in warning and "flip2.png (no orientation tag)" in warning
    assert "images are turned upright as viewers show them while the masks are used as stored" in warning
    assert "strip the image's orientation tag" in warning and "exiftool -Orientation= FILE" in warning


def test_a_tagged_mask_of_an_untagged_square_image_is_warned_about_too(tmp_path, caplog):
    pair(tmp_path, "s0", (32, 32), mask_tag=8)
    assert probe_mask(tmp_path / "masks" / "s0.png").orientation == 8
    with caplog.at_level(logging.WARNING):
        check(tmp_path)
    (warning,) = exif_warnings(caplog)
    assert "s0.png (no orientation tag) and" in warning and "(EXIF Orientation 8)" in warning
    assert "each file is turned upright by its own tag" in warning and "strip the mask's orientation tag" in warning


@pytest.mark.parametrize("image_hw, mask_hw, mask_tag", [
    ((48, 48), None, 6),  # the same tag: turned the same way
    ((40, 60), None, 6),
    ((40, 60), (60, 40), 1),  # stored 60x40 turned to 40x60; a 40x60 mask was drawn on the upright image
])
def test_pairs_turned_alike_or_with_a_mask_of_the_upright_size_pass_silently(tmp_path, caplog, image_hw, mask_hw,
                                                                              mask_tag):
    pair(tmp_path, "s0", image_hw, 6, mask_hw=mask_hw, mask_tag=mask_tag)
    with caplog.at_level(logging.WARNING):
        check(tmp_path)
    assert not exif_warnings(caplog)
    image, mask = build_dataset({"type": "folder", "root": str(tmp_path)}, "all").read(0)
    if mask_tag == 6:  # the mask is turned as its image: the bright stripe lies on the foreground
        assert np.array_equal(image[..., 0] > 127, mask == 1)


def test_size_mismatch_and_turned_differently_are_a_class_rule():
    image = Oriented(Path("i.png"), 48, 48, 3)
    assert size_mismatch(image, Oriented(Path("m.png"), 48, 48)) is None
    assert turned_differently(image, Oriented(Path("m.png"), 48, 48))
    assert not turned_differently(image, Oriented(Path("m.png"), 48, 48, 3))
    turned = Oriented(Path("i.png"), 40, 60, 6)  # (H, W) upright; stored 60 high, 40 wide
    assert not turned_differently(turned, Oriented(Path("m.png"), 40, 60))  # drawn upright: no doubt
    message = size_mismatch(turned, Oriented(Path("roi.png"), 60, 40), "region-of-interest mask")
    assert message.startswith("i.png is 60x40 (WxH) once turned upright by its EXIF Orientation 6 (stored 40x60) but "
                              "its region-of-interest mask roi.png is 40x60 (no orientation tag, read as stored): it "
                              "fits the image as stored, not turned upright.")
    assert message.endswith("or give the region-of-interest mask the same tag")
