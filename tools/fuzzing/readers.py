"""Fuzz targets for the readers of untrusted files: images, masks, TIFF volumes and labelme JSON.

Inputs are random bytes, or small valid files corrupted by :func:`~.common.corrupted` so the
decoders get past their first checks.
"""
from __future__ import annotations

import base64
import io
import json
import shutil
from typing import Any

import numpy as np
import tifffile
from hypothesis import strategies as st
from PIL import Image

from unetfamily.data.io import image_to_float, read_image, read_mask, read_volume, to_channels
from unetfamily.data.labelme import convert_labelme

from .common import corrupted, json_values, outcome, workdir, write_case


# --- seeds: small valid files --------------------------------------------------------------------

def _pil(array: np.ndarray, fmt: str, mode: str | None = None, **kw: Any) -> bytes:
    im = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    buffer = io.BytesIO()
    im.save(buffer, format=fmt, **kw)
    return buffer.getvalue()


def _tiff(array: np.ndarray, **kw: Any) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **kw)
    return buffer.getvalue()


_rng = np.random.default_rng(0)
_gray = _rng.integers(0, 255, (6, 8), dtype=np.uint8)
_rgb = _rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
IMAGE_SEEDS = [
    _pil(_gray, "PNG"),
    _pil(_rgb, "PNG"),
    _pil(_rgb, "PNG", "RGBA"),
    _pil(_rgb, "PNG", "P"),
    _pil((_gray.astype(np.uint16) * 200), "PNG"),
    _pil(_rgb, "JPEG", quality=90),
    _pil(_rgb, "BMP"),
    _pil(_rgb, "GIF"),
    _tiff(_gray),
    _tiff(_rgb, photometric="rgb"),
    _tiff(_gray.astype(np.uint16), compression="zlib"),
    _tiff(_gray.astype(np.float32) / 255),
]
VOLUME_SEEDS = [
    _tiff(np.stack([_gray] * 3), photometric="minisblack"),
    _tiff(np.stack([_gray] * 2).astype(np.uint16), imagej=True),
    _tiff(np.stack([_rgb] * 2), photometric="rgb", planarconfig="contig"),
]
IMAGE_SUFFIXES = [".png", ".jpg", ".bmp", ".tif", ".tiff"]

MAGICS = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"GIF89a", b"II*\x00", b"MM\x00*", b"II+\x00"]
file_bytes = st.one_of(
    corrupted(IMAGE_SEEDS),
    st.binary(max_size=256),
    st.builds(lambda m, b: m + b, st.sampled_from(MAGICS), st.binary(max_size=256)),
)


# --- image and mask readers ------------------------------------------------------------------------

def image_target(case: tuple[str, bytes, int]) -> str:
    """read_image, then the dataset's conversions (channels, scaling to [0, 1])."""
    suffix, data, channels = case
    path = write_case(f"image{suffix}", data)

    def run() -> None:
        arr = read_image(path)
        image_to_float(to_channels(arr, channels, path), path)

    return outcome(run)


def mask_target(case: tuple[str, bytes]) -> str:
    suffix, data = case
    path = write_case(f"mask{suffix}", data)
    return outcome(lambda: read_mask(path))


def volume_target(data: bytes) -> str:
    path = write_case("stack.tif", data)
    return outcome(lambda: read_volume(path))


image_cases = st.tuples(st.sampled_from(IMAGE_SUFFIXES), file_bytes, st.sampled_from([1, 3]))
mask_cases = st.tuples(st.sampled_from(IMAGE_SUFFIXES), file_bytes)
volume_cases = st.one_of(corrupted(VOLUME_SEEDS), corrupted(IMAGE_SEEDS[8:]), st.binary(max_size=256))


# --- labelme ---------------------------------------------------------------------------------------

IMAGE_B64 = base64.b64encode(IMAGE_SEEDS[1]).decode()
MASK_B64 = base64.b64encode(IMAGE_SEEDS[0]).decode()
OUTSIDE = IMAGE_SEEDS[6]  # what lies just outside the dataset root: it must never be read
number = st.one_of(st.integers(-(2**40), 2**40), st.floats(), st.floats(-100, 100), st.text(max_size=3))
points = st.one_of(st.lists(st.lists(number, min_size=0, max_size=3), max_size=6), json_values)
shape = st.fixed_dictionaries(
    {
        "label": st.one_of(st.sampled_from(["cat", "dog", "__ignore__", "_background_"]), json_values),
        "points": points,
        "shape_type": st.one_of(
            st.sampled_from(["polygon", "rectangle", "circle", "line", "linestrip", "point", "oriented_rectangle",
                             "mask", None, "blob"]),
            json_values,
        ),
    },
    optional={"mask": st.one_of(st.just(MASK_B64), st.text(max_size=12), json_values)},
)
coordinate = st.floats(-20, 40)
VALID_POINTS = {"polygon": (3, 6), "rectangle": (2, 2), "circle": (2, 2), "line": (2, 2), "linestrip": (2, 5),
                "point": (1, 1), "oriented_rectangle": (4, 4), "mask": (2, 2)}


def _valid_shape(kind: str) -> st.SearchStrategy:
    low, high = VALID_POINTS[kind]
    fields = {"label": st.sampled_from(["cat", "dog", "__ignore__", "_background_"]), "shape_type": st.just(kind),
              "points": st.lists(st.tuples(coordinate, coordinate).map(list), min_size=low, max_size=high)}
    if kind == "mask":
        fields["mask"] = st.just(MASK_B64)
    return st.fixed_dictionaries(fields)


valid_shape = st.sampled_from(sorted(VALID_POINTS)).flatmap(_valid_shape)
labelme_doc = st.fixed_dictionaries(
    {"shapes": st.one_of(st.lists(st.one_of(valid_shape, valid_shape, shape, json_values), max_size=4), json_values)},
    optional={
        "imageData": st.one_of(st.just(IMAGE_B64), st.just(IMAGE_B64), st.text(max_size=16), json_values,
                               corrupted([IMAGE_SEEDS[1]]).map(lambda b: base64.b64encode(b).decode())),
        "imagePath": st.one_of(
            st.just("img.png"),
            st.sampled_from(["img.png", "../outside.png", "sub/../../outside.png", "/etc/hostname", "..\\outside.png",
                             "C:\\outside.png", "", ".", "missing.png", "img.png/..", "//server/share/x.png"]),
            st.text(max_size=12), json_values),
        "imageHeight": st.one_of(st.sampled_from([6, 7]), json_values),
        "imageWidth": st.one_of(st.sampled_from([8, 9]), json_values),
    },
)
valid_doc = st.fixed_dictionaries(
    {"shapes": st.lists(valid_shape, max_size=4), "imageHeight": st.just(6), "imageWidth": st.just(8)},
    optional={"imageData": st.just(IMAGE_B64), "imagePath": st.just("img.png")},
).filter(lambda d: "imageData" in d or "imagePath" in d)
labelme_files = st.one_of(
    valid_doc.map(lambda d: json.dumps(d).encode()),
    labelme_doc.map(lambda d: json.dumps(d).encode()),
    st.one_of(valid_doc, labelme_doc).flatmap(lambda d: corrupted([json.dumps(d).encode()])),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=128),
)


def labelme_target(case: tuple[bytes, bool]) -> str:
    """``convert_labelme`` of one JSON file in a dataset root; an image just outside the root must stay unread."""
    data, with_labels = case
    base = workdir() / "labelme"
    shutil.rmtree(base, ignore_errors=True)
    (base / "root").mkdir(parents=True)
    (base / "root" / "ann.json").write_bytes(data)
    (base / "root" / "img.png").write_bytes(IMAGE_SEEDS[1])
    (base / "outside.png").write_bytes(OUTSIDE)
    (base / "labels.txt").write_text("__ignore__\n_background_\ncat\ndog\n")
    labels = base / "labels.txt" if with_labels else None
    result = outcome(lambda: convert_labelme(base / "root", base / "out", labels_file=labels))
    if result == "ok":
        for written in (base / "out" / "images").iterdir():
            assert written.read_bytes() != OUTSIDE, "an image outside the dataset root was read"
    leftovers = [p.name for p in (base / "out").rglob(".*")] if (base / "out").is_dir() else []
    assert not leftovers, f"temporary files left behind: {leftovers}"  # every write is atomic
    return result


labelme_cases = st.tuples(labelme_files, st.booleans())
