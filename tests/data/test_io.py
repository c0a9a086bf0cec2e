"""Readers: formats, channel handling, scaling, and DataError for bad files."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from unetfamily.data import DataError
from unetfamily.data.io import image_to_float, natural_key, read_image, read_mask, read_volume, to_channels

from .conftest import save


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".jpg"])
def test_read_image_roundtrips_rgb_and_gray(tmp_path, rng, suffix):
    rgb = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (9, 11), dtype=np.uint8)
    kwargs = {"quality": 100, "subsampling": 0} if suffix == ".jpg" else {}
    got_rgb = read_image(save(tmp_path / f"rgb{suffix}", rgb, **kwargs))
    got_gray = read_image(save(tmp_path / f"gray{suffix}", gray, **kwargs))
    assert got_rgb.shape == (9, 11, 3) and got_gray.shape == (9, 11)
    tol = 6 if suffix == ".jpg" else 0  # JPEG is lossy even at quality 100
    assert np.abs(got_rgb.astype(int) - rgb).max() <= tol
    assert np.abs(got_gray.astype(int) - gray).max() <= tol


def test_rgba_16bit_palette_and_float_tiff(tmp_path, rng):
    rgba = rng.integers(0, 256, (5, 6, 4), dtype=np.uint8)
    assert read_image(save(tmp_path / "a.png", rgba)).shape == (5, 6, 4)
    deep = rng.integers(0, 65536, (5, 6), dtype=np.uint16)
    got = read_image(save(tmp_path / "d.png", deep))
    assert got.dtype == np.uint16 and np.array_equal(got, deep)
    pal = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8)).convert("L")
    pal.putpalette([10, 20, 30, 40, 50, 60, 70, 80, 90] + [0] * 759)
    pal.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png")[0, 1].tolist() == [40, 50, 60]  # palette expanded to RGB
    floats = rng.random((5, 6)).astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tif", floats)
    assert np.array_equal(image_to_float(read_image(tmp_path / "f.tif"), "f"), floats)


def test_to_channels_and_scaling():
    gray = np.array([[0, 255]], np.uint8)
    assert to_channels(gray, 3, "x").shape == (1, 2, 3)
    rgb = np.array([[[255, 0, 0], [0, 0, 255]]], np.uint8)
    assert to_channels(rgb, 1, "x")[..., 0].tolist() == [[76, 29]]  # ITU-R 601 luma, as Pillow's convert("L")
    assert to_channels(np.zeros((2, 2, 4), np.uint8), 3, "x").shape == (2, 2, 3)
    with pytest.raises(DataError, match="5 channels"):
        to_channels(np.zeros((2, 2, 5), np.uint8), 3, "multi.tif")
    assert image_to_float(np.array([0, 255], np.uint8), "x").tolist() == [0.0, 1.0]
    assert image_to_float(np.array([65535], np.uint16), "x").tolist() == [1.0]
    with pytest.raises(DataError, match=r"rescale it to \[0, 1\]"):
        image_to_float(np.array([0.0, 3.5], np.float32), "raw.tif")


@pytest.mark.parametrize("values, match", [
    ([0.25, np.nan, 0.5, 0.75], r"nan.tif: float image contains 1 NaN value\(s\) \(of 4 values; the others lie in "
                                r"\[0.25, 0.75\]\); replace them"),
    ([np.inf, -np.inf, np.nan, 2.0], r"contains 1 NaN and 2 infinite value\(s\) \(of 4 values; the others lie in \[2, 2\]"),
    ([np.nan, np.nan], r"contains 2 NaN value\(s\) \(of 2 values; none is finite\)"),
])
def test_non_finite_float_pixels_are_counted_not_shown_as_a_nan_range(values, match):
    """NaN made the message read 'values in [nan, nan]; rescale it to [0, 1]'."""
    with pytest.raises(DataError, match=match) as caught:
        image_to_float(np.array(values, np.float32), "nan.tif")
    assert "[nan" not in str(caught.value)


def test_corrupt_truncated_and_missing_files_name_the_file(tmp_path, rng):
    not_image = tmp_path / "notes.png"
    not_image.write_text("this is not a PNG")
    with pytest.raises(DataError, match="notes.png.*corrupt"):
        read_image(not_image)
    good = save(tmp_path / "t.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(DataError, match="truncated.png"):
        read_image(truncated)
    with pytest.raises(DataError, match="broken.tif"):
        (tmp_path / "broken.tif").write_bytes(b"II*\x00garbage")
        read_image(tmp_path / "broken.tif")
    with pytest.raises(DataError, match="missing.png: image not found"):
        read_mask(tmp_path / "missing.png")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("limit", [1000, 3000])  # above 2x (Pillow error) and 1x-2x (Pillow warning)
def test_decompression_bomb_limit_is_kept_and_reported(tmp_path, monkeypatch, limit):
    path = save(tmp_path / "big.png", np.zeros((64, 64), np.uint8))  # 4096 pixels
    tifffile.imwrite(tmp_path / "big.tif", np.zeros((64, 64), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(DataError, match="big.png.*decompression bomb"):
        read_image(path)
    with pytest.raises(DataError, match="big.tif.*MAX_IMAGE_PIXELS"):
        read_image(tmp_path / "big.tif")


def test_multipage_tiff_is_refused_as_an_image_and_read_as_a_volume(tmp_path, rng):
    stack = rng.integers(0, 256, (3, 8, 9), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    with pytest.raises(DataError, match="3 pages.*tiff_stack"):
        read_image(tmp_path / "stack.tif")
    assert np.array_equal(read_volume(tmp_path / "stack.tif"), stack)


def test_read_mask_keeps_palette_indices_and_flags_jpeg(tmp_path):
    idx = np.array([[0, 3], [255, 1]], np.uint8)
    im = Image.fromarray(idx)
    im.putpalette(list(range(256)) * 3)
    im.save(tmp_path / "m.png")
    raw = read_mask(tmp_path / "m.png")
    assert raw.palette and not raw.lossy and raw.values.tolist() == idx.tolist()
    assert read_mask(save(tmp_path / "m.jpg", np.zeros((8, 8), np.uint8))).lossy


def test_natural_key_orders_numbers():
    assert sorted(["10", "2", "1"], key=natural_key) == ["1", "2", "10"]
