"""Fuzz targets and the inputs hypothesis draws for them.

Shared by ``tests/reliability/test_fuzz.py`` (a few hundred cases per target) and
``tools/fuzz.py`` (long runs). A target feeds one drawn input to public entry points and returns
the outcome: ``"ok"`` or the name of the documented exception (a
:class:`~unetfamily.errors.UnetFamilyError`) that came out. Any other exception propagates, and
so does :class:`Hang` when one case runs longer than :data:`TIMEOUT_S`; hypothesis then reports
the smallest input it can find that does it.

Inputs are either random (bytes, JSON-like trees, text) or valid files and documents corrupted
by a few mutations (bit flips, truncation, inserted bytes, absurd 16/32-bit integers written
over header fields), so the decoders get past their first checks.
"""
from __future__ import annotations

import atexit
import base64
import contextlib
import io
import json
import shutil
import signal
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch
from hypothesis import strategies as st
from PIL import Image

from unetfamily.config import apply_overrides, config_from_dict, load_config
from unetfamily.data.io import image_to_float, read_image, read_mask, read_volume, to_channels
from unetfamily.data.labelme import convert_labelme
from unetfamily.engine.checkpoint import load_model, save_checkpoint
from unetfamily.errors import UnetFamilyError
from unetfamily.models import create_model

TIMEOUT_S = 10.0  # one case; the slowest legitimate case here takes well under a second
ROOT = Path(__file__).resolve().parents[2]


class Hang(AssertionError):
    """One fuzz case ran longer than TIMEOUT_S."""


@contextlib.contextmanager
def time_limit(seconds: float = TIMEOUT_S) -> Iterator[None]:
    """Raise :class:`Hang` in the main thread after ``seconds`` (no limit in other threads)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(*_: Any) -> None:
        raise Hang(f"a fuzz case ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def outcome(fn: Callable[[], Any]) -> str:
    """Run ``fn``: ``"ok"``, or the documented error's class name; anything else propagates."""
    with time_limit():
        try:
            fn()
        except UnetFamilyError as exc:
            return type(exc).__name__
    return "ok"


_work: list[Path] = []


def workdir() -> Path:
    """A private temporary folder for this process, removed at exit."""
    if not _work:
        _work.append(Path(tempfile.mkdtemp(prefix="unetfamily-fuzz-")))
        atexit.register(shutil.rmtree, _work[0], True)
    return _work[0]


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
BIG_INTS = [0, 1, 255, 256, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF]


@st.composite
def corrupted(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """One of ``seeds`` with 1-6 mutations."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, max(0, len(data) - 1)))
        op = draw(st.sampled_from(["flip", "byte", "int", "truncate", "insert", "delete"]))
        if op == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte" and data:
            data[i] = draw(st.integers(0, 255))
        elif op == "int":
            fmt = draw(st.sampled_from(["<H", ">H", "<I", ">I"]))
            value = draw(st.sampled_from(BIG_INTS)) & (0xFFFF if fmt.endswith("H") else 0xFFFFFFFF)
            data[i : i + struct.calcsize(fmt)] = struct.pack(fmt, value)
        elif op == "truncate":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 16))]
    return bytes(data)


MAGICS = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"GIF89a", b"II*\x00", b"MM\x00*", b"II+\x00"]
file_bytes = st.one_of(
    corrupted(IMAGE_SEEDS),
    st.binary(max_size=256),
    st.builds(lambda m, b: m + b, st.sampled_from(MAGICS), st.binary(max_size=256)),
)


# --- image and mask readers ------------------------------------------------------------------------

def _write(name: str, data: bytes) -> Path:
    path = workdir() / name
    path.write_bytes(data)
    return path


def image_target(case: tuple[str, bytes, int]) -> str:
    """read_image, then the dataset's conversions (channels, scaling to [0, 1])."""
    suffix, data, channels = case
    path = _write(f"image{suffix}", data)

    def run() -> None:
        arr = read_image(path)
        image_to_float(to_channels(arr, channels, path), path)

    return outcome(run)


def mask_target(case: tuple[str, bytes]) -> str:
    suffix, data = case
    path = _write(f"mask{suffix}", data)
    return outcome(lambda: read_mask(path))


def volume_target(data: bytes) -> str:
    path = _write("stack.tif", data)
    return outcome(lambda: read_volume(path))


image_cases = st.tuples(st.sampled_from(IMAGE_SUFFIXES), file_bytes, st.sampled_from([1, 3]))
mask_cases = st.tuples(st.sampled_from(IMAGE_SUFFIXES), file_bytes)
volume_cases = st.one_of(corrupted(VOLUME_SEEDS), corrupted(IMAGE_SEEDS[8:]), st.binary(max_size=256))


# --- labelme ---------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
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
    return result


labelme_cases = st.tuples(labelme_files, st.booleans())


# --- config ----------------------------------------------------------------------------------------

SECTIONS = {
    "model": ["name", "kwargs"], "loader": ["batch_size", "val_batch_size", "num_workers"],
    "loss": ["name", "ds_weights", "cgm_weight", "kwargs"], "optim": ["name", "lr", "weight_decay", "momentum"],
    "schedule": ["name", "warmup_steps", "min_lr_ratio", "power"],
    "train": ["epochs", "max_steps", "max_seconds", "grad_clip", "amp", "seed", "nan_policy", "monitor", "progress"],
}
key = st.one_of(st.sampled_from([*SECTIONS, "data", "output_dir"]), st.text(max_size=6), st.integers(), st.none())
section = st.one_of(
    st.sampled_from(list(SECTIONS)).flatmap(
        lambda s: st.dictionaries(st.one_of(st.sampled_from(SECTIONS[s]), st.text(max_size=6)), json_values, max_size=4)
    ),
    json_values,
)


@st.composite
def edited_configs(draw: st.DrawFn) -> dict:
    """The default config with 1-4 keys replaced by random values, deleted or added."""
    from unetfamily.config import Config

    data = Config().to_dict()
    for _ in range(draw(st.integers(1, 4))):
        top = draw(st.sampled_from(sorted(data)))
        node = data[top]
        if isinstance(node, dict) and node and draw(st.booleans()):
            name = draw(st.one_of(st.sampled_from(sorted(node)), st.text(max_size=6)))
            if draw(st.integers(0, 5)) == 0:
                node.pop(name, None)
            else:
                node[name] = draw(st.one_of(json_values, st.sampled_from([0, 1, -1, 0.5, "1e-3", "adamw", "skip", True])))
        else:
            data[top] = draw(json_values)
    return data


config_dicts = st.one_of(st.dictionaries(key, st.one_of(section, json_values), max_size=5), edited_configs())
CONFIG_SEEDS = [p.read_bytes() for p in sorted((ROOT / "configs").glob("*.yaml"))[:4]] + [
    b'[train]\nepochs = 3\n[optim]\nlr = 3e-4\n[model]\nname = "unet"\nkwargs = {channels = [4, 8]}\n'
]
ALIAS_BOMB = b"data:\n  a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + b"".join(  # "billion laughs": 10^7 values
    f"  {k}: &{k} [{', '.join(['*' + p] * 10)}]\n".encode() for p, k in zip("abcdef", "bcdefg")
)
override = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from([f"{s}.{k}" for s, ks in SECTIONS.items() for k in ks] + ["data.size"]),
              st.text(max_size=10)),
    st.text(max_size=16),
)
config_files = st.tuples(
    st.sampled_from([".yaml", ".toml"]),
    st.one_of(corrupted(CONFIG_SEEDS), st.binary(max_size=128), json_values.map(lambda v: json.dumps(v).encode()),
              st.sampled_from([b"data: &a [*a, *a]\n", ALIAS_BOMB])),
    st.lists(override, max_size=3),
)


def config_dict_target(data: dict) -> str:
    return outcome(lambda: config_from_dict(data).to_json())


def config_file_target(case: tuple[str, bytes, list[str]]) -> str:
    suffix, data, overrides = case
    path = _write(f"config{suffix}", data)
    return outcome(lambda: load_config(path, overrides).to_json())


def overrides_target(case: tuple[dict, list[str]]) -> str:
    data, overrides = case
    return outcome(lambda: config_from_dict(apply_overrides(data, overrides)).to_json())


overrides_cases = st.tuples(config_dicts, st.lists(override, max_size=4))


# --- checkpoints -----------------------------------------------------------------------------------

_ckpt_seed: dict[str, Any] = {}


def _checkpoint_seed() -> dict[str, Any]:
    """A real checkpoint of a tiny U-Net: its bytes, tensors and metadata (made once)."""
    if not _ckpt_seed:
        from safetensors import safe_open
        from safetensors.torch import load_file

        torch.manual_seed(0)
        model = create_model("unet", in_channels=1, num_classes=1, channels=(2, 4))
        path = workdir() / "seed.safetensors"
        config = {"model": {"name": "unet", "kwargs": {"in_channels": 1, "num_classes": 1, "channels": [2, 4]}}}
        save_checkpoint(path, model, config, step=3, optimizer=torch.optim.AdamW(model.parameters()))
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata()
        _ckpt_seed.update(bytes=path.read_bytes(), tensors=load_file(str(path)), metadata=metadata)
    return _ckpt_seed


@st.composite
def checkpoint_bytes(draw: st.DrawFn) -> bytes:
    """A real checkpoint with mutations, mostly in its JSON header (where the metadata lives)."""
    seed = _checkpoint_seed()["bytes"]
    header = 8 + struct.unpack("<Q", seed[:8])[0]
    head = draw(corrupted([seed[:header]]))
    return head + (seed[header:] if draw(st.booleans()) else draw(corrupted([seed[header:]])))


meta_value = st.one_of(st.text(max_size=8), json_values.map(json.dumps))
model_configs = st.fixed_dictionaries({"model": st.fixed_dictionaries(
    {"name": st.one_of(st.sampled_from(["unet", "fcn8s", "nope"]), json_values),
     "kwargs": st.one_of(json_values, st.fixed_dictionaries({"channels": st.one_of(
         st.lists(st.integers(-2, 2**20), max_size=3), json_values)}))})}).map(json.dumps)


@st.composite
def checkpoint_metadata(draw: st.DrawFn) -> dict[str, str]:
    """The real checkpoint's metadata with 1-3 entries replaced by random ones, deleted or added."""
    meta = dict(_checkpoint_seed()["metadata"])
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from([*sorted(meta), "other"]))
        if draw(st.integers(0, 4)) == 0:
            meta.pop(name, None)
        else:
            meta[name] = draw(st.one_of(meta_value, model_configs, st.just(_checkpoint_seed()["metadata"].get(name, ""))))
    return meta


def checkpoint_target(data: bytes) -> str:
    path = _write("ckpt.safetensors", data)
    return outcome(lambda: load_model(path))


def checkpoint_meta_target(meta: dict[str, str]) -> str:
    """The real checkpoint's tensors under fuzzed metadata."""
    from safetensors.torch import save_file

    path = workdir() / "meta.safetensors"
    save_file(_checkpoint_seed()["tensors"], str(path), metadata=meta)
    return outcome(lambda: load_model(path))


# name -> (strategy, target); the order is the order of the report.
TARGETS: dict[str, tuple[st.SearchStrategy, Callable[[Any], str]]] = {
    "read_image": (image_cases, image_target),
    "read_mask": (mask_cases, mask_target),
    "read_volume": (volume_cases, volume_target),
    "labelme": (labelme_cases, labelme_target),
    "config_from_dict": (config_dicts, config_dict_target),
    "load_config": (config_files, config_file_target),
    "apply_overrides": (overrides_cases, overrides_target),
    "checkpoint_bytes": (checkpoint_bytes(), checkpoint_target),
    "checkpoint_metadata": (checkpoint_metadata(), checkpoint_meta_target),
}
