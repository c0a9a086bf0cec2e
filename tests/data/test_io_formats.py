"""Every format real datasets ship, as images and as masks: PNG, JPEG, BMP, GIF, WebP and TIFF in every
common compression (with imagecodecs, and through the Pillow fallback without it), EXIF orientation,
and files of several frames refused."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from unetfamily.data import DataError, build_dataset
from unetfamily.data.encodings import MaskEncoding, decode_mask
from unetfamily.data.io import IMAGE_SUFFIXES, inspect_image, read_image, read_mask, read_volume
from unetfamily.data.probe import probe_image, probe_mask
from unetfamily.data.tiff import orient

from .conftest import save

HAS_IMAGECODECS = importlib.util.find_spec("imagecodecs") is not None
needs_imagecodecs = pytest.mark.skipif(not HAS_IMAGECODECS, reason="writing this TIFF needs imagecodecs "
                                       "(pip install 'unetfamily[tiff]')")
TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
             5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
             8: Image.Transpose.ROTATE_90}


def hide_imagecodecs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make tifffile behave as it does when imagecodecs is not installed (checked against a real absence below)."""
    tt = importlib.import_module("tifffile.tifffile")
    monkeypatch.setitem(sys.modules, "imagecodecs", None)
    monkeypatch.setattr(tt, "imagecodecs", importlib.import_module("tifffile._imagecodecs"))  # its fallback import
    monkeypatch.setattr(tt.TIFF, "DECOMPRESSORS", tt.CompressionCodec(encode=False))  # drop cached lookups
    monkeypatch.setattr(tt.TIFF, "UNPREDICTORS", tt.PredictorCodec(encode=False))


@pytest.fixture(params=["imagecodecs", "no-imagecodecs"])
def codecs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with tifffile's full codecs, and again as without imagecodecs (Pillow fallback)."""
    if request.param == "imagecodecs":
        if not HAS_IMAGECODECS:
            pytest.skip("imagecodecs is not installed")
    else:
        hide_imagecodecs(monkeypatch)
    return request.param


@pytest.fixture
def labels() -> np.ndarray:
    """A (12, 16) class-index mask holding 0, 1 and 2, asymmetric so any flip or turn shows."""
    m = np.zeros((12, 16), np.uint8)
    m[1:4, 2:9] = 1
    m[6:11, 10:15] = 2
    m[0, 0] = 2
    return m


# -- Pillow formats ------------------------------------------------------------------------------------------------


def _palette(values: np.ndarray) -> Image.Image:
    im = Image.fromarray(values, "P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    return im


@pytest.mark.parametrize("kind", ["png-L", "png-RGB", "png-RGBA", "png-P", "png-I;16", "jpeg", "bmp", "gif",
                                  "webp-lossless", "webp-lossless-RGBA"])
def test_pillow_formats_read_back_as_written(tmp_path, rng, kind):
    fmt, _, mode = kind.partition("-")
    rgb = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    if mode in ("", "RGB", "lossless"):
        written, expected = Image.fromarray(rgb), rgb
    elif mode == "L":
        written, expected = Image.fromarray(rgb[..., 0]), rgb[..., 0]
    elif mode in ("RGBA", "lossless-RGBA"):
        rgba = np.dstack([rgb, rng.integers(1, 256, (12, 16), dtype=np.uint8)])
        written, expected = Image.fromarray(rgba), rgba
    elif mode == "I;16":
        deep = rng.integers(0, 65536, (12, 16), dtype=np.uint16)
        written, expected = Image.fromarray(deep), deep
    else:  # P: palette indices expand to the palette's colours
        idx = rng.integers(0, 3, (12, 16), dtype=np.uint8)
        written, expected = _palette(idx), np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8)[idx]
    if fmt == "gif":  # GIF is palette-only: write a palette image, read its colours
        idx = rng.integers(0, 3, (12, 16), dtype=np.uint8)
        written, expected = _palette(idx), np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8)[idx]
    path = tmp_path / f"x.{ {'jpeg': 'jpg'}.get(fmt, fmt)}"
    options = {"webp": {"lossless": True}, "jpeg": {"quality": 100, "subsampling": 0}}.get(fmt, {})
    written.save(path, **options)
    got = read_image(path)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert np.abs(got.astype(int) - expected).max() <= (8 if fmt == "jpeg" else 0)
    assert inspect_image(path.read_bytes(), path) == (*got.shape[:2], 1 if got.ndim == 2 else got.shape[2])


def test_image_suffixes_take_gif_and_webp_in_any_case():
    for name in ("a.gif", "a.GIF", "a.webp", "a.WebP", "a.TIFF", "a.Png"):
        assert Path(name).suffix.lower() in IMAGE_SUFFIXES


def test_palette_gif_mask_keeps_its_indices(tmp_path, labels):
    path = tmp_path / "m.gif"
    _palette(labels).save(path)
    raw = read_mask(path)
    assert raw.palette and not raw.lossy and np.array_equal(raw.values, labels)
    assert np.array_equal(decode_mask(raw, MaskEncoding(), 3), labels)  # auto: palette indices are classes
    probe = probe_mask(path)
    assert (probe.height, probe.width) == labels.shape and probe.values.values.ravel().tolist() == [0, 1, 2]


def test_gray_gif_masks_are_read_by_gray_level_whatever_the_palette_order(tmp_path, labels):
    """GIF has no gray mode: a 0/255 mask saved as GIF gets palette indices in any order (here white = 0)."""
    path = tmp_path / "inverted.gif"
    inverted = Image.fromarray((labels == 0).astype(np.uint8), "P")
    inverted.putpalette([255, 255, 255, 0, 0, 0])
    inverted.save(path, optimize=False)
    assert np.array_equal(np.asarray(Image.open(path)), labels == 0)  # index 1 is black, i.e. background
    raw = read_mask(path)
    assert not raw.palette and np.array_equal(raw.values, np.where(labels > 0, 255, 0))
    assert np.array_equal(decode_mask(raw, MaskEncoding(), 2), labels > 0)  # auto: 0/255 is binary
    probe = probe_mask(path).values
    assert not probe.palette and probe.values.ravel().tolist() == [0, 255]


def test_webp_masks_lossless_decode_and_lossy_are_refused(tmp_path, labels):
    lossless, lossy = tmp_path / "m.webp", tmp_path / "lossy.webp"
    Image.fromarray(labels).save(lossless, lossless=True)
    Image.fromarray(labels * 100).save(lossy, quality=80)
    raw = read_mask(lossless)
    assert not raw.lossy and np.array_equal(decode_mask(raw, MaskEncoding("index"), 3), labels)
    assert read_mask(lossy).lossy and probe_mask(lossy).values.lossy and not probe_mask(lossless).values.lossy
    with pytest.raises(DataError, match=r"lossy.webp: .*compression noise"):
        decode_mask(read_mask(lossy), MaskEncoding("index"), 3)


@pytest.mark.parametrize("fmt", ["gif", "webp", "png"])
def test_animations_are_refused_naming_the_frame_count(tmp_path, labels, fmt):
    path = tmp_path / f"anim.{fmt}"
    frames = [Image.fromarray(labels * 50), Image.fromarray(labels * 100), Image.fromarray(labels * 20)]
    frames[0].save(path, save_all=True, append_images=frames[1:], **({"lossless": True} if fmt == "webp" else {}))
    message = rf"anim.{fmt}: an animated {fmt.upper()} with 3 frames; .*frame 0 is never taken silently"
    for read in (read_image, read_mask, lambda p: inspect_image(p.read_bytes(), p), probe_mask):
        with pytest.raises(DataError, match=message):
            read(path)


# -- TIFF -----------------------------------------------------------------------------------------------------------

TIFF_COMPRESSIONS = [None, "tiff_lzw", "tiff_adobe_deflate", "packbits", "jpeg"]


@pytest.mark.parametrize(("compression", "mode"), [(c, m) for c in TIFF_COMPRESSIONS for m in ("RGB", "L", "I;16")
                                                   if not (c == "jpeg" and m == "I;16")])  # JPEG holds 8 bits
def test_tiff_compressions_read_back_with_and_without_imagecodecs(tmp_path, rng, codecs, compression, mode):
    shape = {"RGB": (12, 16, 3), "L": (12, 16), "I;16": (12, 16)}[mode]
    pixels = rng.integers(0, 65536 if mode == "I;16" else 256, shape).astype(np.uint16 if mode == "I;16" else np.uint8)
    if compression == "jpeg":  # a smooth ramp, so JPEG's error stays small
        ramp = np.repeat(np.linspace(0, 255, 16).astype(np.uint8)[None], 12, axis=0)
        pixels = np.dstack([ramp] * 3) if mode == "RGB" else ramp
    path = tmp_path / "x.tif"
    Image.fromarray(pixels).save(path, compression=compression, **({"quality": 95} if compression == "jpeg" else {}))
    got, raw = read_image(path), read_mask(path)
    assert got.dtype == pixels.dtype and got.shape == pixels.shape
    assert np.abs(got.astype(int) - pixels).max() <= (6 if compression == "jpeg" else 0)
    assert raw.lossy == (compression == "jpeg") and raw.values.shape == pixels.shape
    probe = probe_image(path)
    assert (probe.height, probe.width, probe.channels) == (12, 16, 3 if mode == "RGB" else 1)


@pytest.mark.parametrize("compression", ["tiff_lzw", "tiff_adobe_deflate", "packbits", None])
def test_tiff_stacks_read_back_with_and_without_imagecodecs(tmp_path, rng, codecs, compression):
    pages = rng.integers(0, 256, (3, 12, 16), dtype=np.uint8)
    path = tmp_path / "stack.tif"
    frames = [Image.fromarray(p) for p in pages]
    frames[0].save(path, save_all=True, append_images=frames[1:], compression=compression)
    got = read_volume(path)
    assert got.dtype == np.uint8 and np.array_equal(got, pages)
    with pytest.raises(DataError, match=r"stack.tif: a TIFF with 3 pages is a stack.*'tiff_stack'"):
        read_image(path)


@needs_imagecodecs
@pytest.mark.parametrize("kwargs", [{"compression": "lzw", "predictor": True},
                                    {"compression": "zlib", "predictor": True},
                                    {"compression": "lzw", "planarconfig": "separate"}])
def test_tifffile_written_predictors_and_planar_pages_without_imagecodecs(tmp_path, rng, monkeypatch, kwargs):
    rgb = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    deep = rng.integers(0, 65536, (12, 16), dtype=np.uint16)
    planar = kwargs.get("planarconfig") == "separate"
    tifffile.imwrite(tmp_path / "rgb.tif", np.moveaxis(rgb, -1, 0) if planar else rgb, photometric="rgb", **kwargs)
    tifffile.imwrite(tmp_path / "deep.tif", deep, **{k: v for k, v in kwargs.items() if k != "planarconfig"})
    hide_imagecodecs(monkeypatch)
    assert np.array_equal(read_image(tmp_path / "rgb.tif"), rgb)
    got = read_image(tmp_path / "deep.tif")
    assert got.dtype == np.uint16 and np.array_equal(got, deep)


@pytest.mark.parametrize("shape", [(4, 3, 5), (3, 4, 2), (12, 16, 4)])
def test_samples_come_last_whatever_the_page_size_or_planar_layout(tmp_path, rng, shape):
    """Rows of 3 or 4 pixels are not mistaken for planar samples; planar pages come back (H, W, S)."""
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    tifffile.imwrite(tmp_path / "contig.tif", pixels, photometric="minisblack", planarconfig="contig")
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(pixels, -1, 0), photometric="minisblack",
                     planarconfig="separate")
    for name in ("contig.tif", "planar.tif"):
        assert np.array_equal(read_image(tmp_path / name), pixels), name
    stack = np.stack([pixels, pixels // 2])
    tifffile.imwrite(tmp_path / "stack.tif", np.moveaxis(stack, -1, 1), photometric="minisblack",
                     planarconfig="separate")
    assert np.array_equal(read_volume(tmp_path / "stack.tif"), stack)


@needs_imagecodecs
@pytest.mark.parametrize("stack", [False, True])
def test_a_codec_neither_library_has_is_named_never_called_corrupt(tmp_path, rng, monkeypatch, stack):
    pixels = rng.integers(0, 256, (2, 12, 16) if stack else (12, 16), dtype=np.uint8)
    path = tmp_path / "lerc.tif"
    tifffile.imwrite(path, pixels, compression="lerc")
    assert np.array_equal(read_volume(path) if stack else read_image(path), pixels)  # imagecodecs reads it
    hide_imagecodecs(monkeypatch)
    with pytest.raises(DataError) as err:
        read_volume(path) if stack else read_image(path)
    text = str(err.value)
    assert "lerc.tif: TIFF compression LERC needs the imagecodecs package" in text
    assert "pip install imagecodecs" in text and "corrupt" not in text


def test_a_damaged_tiff_is_still_called_corrupt(tmp_path):
    path = tmp_path / "bad.tif"
    path.write_bytes(b"II*\x00" + b"\x00" * 4)  # a header whose first page is missing
    with pytest.raises(DataError, match=r"bad.tif: a TIFF holding no image \(0 pages\); the file is corrupt"):
        read_image(path)
    path.write_bytes(b"II*\x00\xff\xff\xff\x7f")  # a first page far past the end
    with pytest.raises(DataError, match=r"bad.tif: (cannot read TIFF .*)?.*corrupt or not a TIFF"):
        read_image(path)


_ABSENCE_PROBE = """
import json, sys
{hide}
import tifffile
out = {{}}
for path in sys.argv[1:]:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        try:
            page.asarray()
            out[path] = "ok"
        except Exception as e:
            out[path] = type(e).__name__ + ": " + str(e)
print(json.dumps(out))
"""


def test_simulated_absence_of_imagecodecs_fails_as_a_real_absence(tmp_path, rng):
    """hide_imagecodecs() must make tifffile fail exactly as a Python without imagecodecs does."""
    paths = []
    for compression in TIFF_COMPRESSIONS:
        paths.append(str(save(tmp_path / f"{compression}.tif", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8),
                              compression=compression)))
    real = subprocess.run([sys.executable, "-c", _ABSENCE_PROBE.format(hide='sys.modules["imagecodecs"] = None'),
                           *paths], capture_output=True, text=True, timeout=60, check=True)
    absent = json.loads(real.stdout)
    assert absent[paths[1]].startswith("ValueError") and "imagecodecs" in absent[paths[1]]  # LZW: the reported bug
    with pytest.MonkeyPatch.context() as mp:
        hide_imagecodecs(mp)
        simulated = {}
        for path in paths:
            with tifffile.TiffFile(path) as tif:
                try:
                    tif.pages[0].asarray()
                    simulated[path] = "ok"
                except Exception as e:
                    simulated[path] = f"{type(e).__name__}: {e}"
    assert simulated == absent


# -- EXIF orientation ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_turns_pixels_as_pillow_does(rng, orientation):
    pixels = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(pixels).transpose(TRANSPOSE[orientation])) if orientation > 1 else pixels
    assert np.array_equal(orient(pixels, orientation), expected)
    stack = np.stack([pixels, pixels[::-1]])
    assert np.array_equal(orient(stack, orientation, axis=1)[1], orient(pixels[::-1], orientation))


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[274] = orientation
    return exif.tobytes()


@pytest.mark.parametrize("image_format", ["jpg", "png", "webp", "tif"])
def test_exif_orientation_6_pair_stays_aligned_and_inspect_swaps(tmp_path, labels, image_format):
    """A phone photo stored on its side (orientation 6) and its mask saved the same way read as displayed."""
    rgb = np.repeat((labels * 100)[..., None], 3, axis=-1).astype(np.uint8)
    image, mask = tmp_path / f"img.{image_format}", tmp_path / "mask.png"
    kwargs = {"lossless": True} if image_format == "webp" else {"quality": 100} if image_format == "jpg" else {}
    Image.fromarray(rgb).save(image, exif=_exif(6), **kwargs)
    Image.fromarray(labels).save(mask, exif=_exif(6))
    shown = np.rot90(labels, -1)  # orientation 6: turn 90 degrees clockwise to display
    got_image, got_mask = read_image(image), read_mask(mask).values
    assert got_image.shape[:2] == got_mask.shape == shown.shape == (16, 12)
    assert np.array_equal(got_mask, shown)
    assert np.abs(got_image[..., 0].astype(int) - shown * 100).max() <= (8 if image_format == "jpg" else 0)
    assert inspect_image(image.read_bytes(), image)[:2] == (16, 12) == inspect_image(mask.read_bytes(), mask)[:2]
    assert (probe_image(image).height, probe_mask(mask).height) == (16, 16)


@pytest.mark.parametrize("orientation", [3, 5, 6, 7, 8])
def test_tiff_orientation_tag_is_applied_by_tifffile_and_by_the_fallback(tmp_path, labels, codecs, orientation):
    path = tmp_path / "o.tif"
    tifffile.imwrite(path, labels, extratags=[(274, "H", 1, orientation, True)])  # uncompressed: tifffile reads it
    lzw = tmp_path / "o_lzw.tif"
    Image.fromarray(labels).save(lzw, compression="tiff_lzw", exif=_exif(orientation))  # LZW: the fallback without
    shown = np.asarray(Image.fromarray(labels).transpose(TRANSPOSE[orientation]))
    for p in (path, lzw):
        assert np.array_equal(read_image(p), shown), p.name
        assert np.array_equal(read_mask(p).values, shown), p.name


def test_a_png_exif_chunk_after_the_pixels_still_turns_it(tmp_path, labels):
    """Pillow sees an eXIf chunk after IDAT only on decoding: inspect_image must not report the stored size."""
    path = tmp_path / "late.png"
    Image.fromarray(labels).save(path, exif=_exif(8))
    data = path.read_bytes()
    start = data.index(b"eXIf") - 4
    length = int.from_bytes(data[start : start + 4], "big")
    chunk = data[start : start + 12 + length]
    rest = data[:start] + data[start + len(chunk) :]
    end = rest.index(b"IEND") - 4
    path.write_bytes(rest[:end] + chunk + rest[end:])  # eXIf moved just before IEND
    assert read_image(path).shape == (16, 12)
    assert inspect_image(path.read_bytes(), path) == (16, 12, 1)


# -- a dataset in these formats -----------------------------------------------------------------------------------


def test_folder_of_lzw_tiff_images_and_gif_masks_builds_and_reads(tmp_path, rng, labels, codecs):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    expected = {}
    for name in ("01", "02"):
        rgb = rng.integers(0, 256, (*labels.shape, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(images / f"{name}.tif", compression="tiff_lzw")
        _palette(labels).save(masks / f"{name}.gif")
        expected[name] = rgb
    ds = build_dataset({"type": "folder", "root": str(tmp_path), "classes": ["bg", "a", "b"]}, "all")
    assert ds.names == ["01", "02"] and ds.info.in_channels == 3
    for i, name in enumerate(ds.names):
        image, mask = ds.read(i)
        assert np.array_equal(image, expected[name]) and np.array_equal(mask, labels)
