"""Hostile files: pickled checkpoints, configs that explode, images whose headers lie, and file
types that Pillow would hand to another program. Nothing in them runs, nothing huge is
allocated, and each is refused with an error that says why.

Also proven elsewhere: a labelme ``imagePath`` that is absolute or climbs out of the dataset root
is refused (``tests/data/test_labelme.py::test_image_path_cannot_leave_the_root`` and
``::test_symlink_escaping_the_root_is_refused``; the labelme fuzz target checks it on every
case), and Pillow's decompression-bomb limit stays on
(``tests/data/test_io.py::test_decompression_bomb_limit_is_kept_and_reported``).
"""
from __future__ import annotations

import json
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import EpsImagePlugin, Image
from safetensors.torch import save_file

from tests.reliability.conftest import tiny_config
from tools.fuzzing.configs import ALIAS_BOMB
from unetfamily.cli import main
from unetfamily.config import ConfigError, config_from_dict, load_config
from unetfamily.data import DataError
from unetfamily.data.io import read_image, read_mask, read_volume
from unetfamily.engine.checkpoint import FORMAT, CheckpointError, load_checkpoint, load_model
from unetfamily.engine.train import fit

PICKLE_REFUSED = "is a pickle or torch.save file, not a safetensors checkpoint; it was not loaded, because unpickling"


class Payload:
    """Unpickling this creates the file ``marker`` (it could as well run any command)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (open, (self.marker, "w"))


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Path, Path]:
    """(run folder, marker): ``last.safetensors`` is a pickle, ``model.pt`` a torch.save archive, both armed."""
    marker = tmp_path / "payload_ran"
    payload = pickle.dumps(Payload(marker))
    pickle.loads(payload).close()  # the payload is live: unpickling it does create the marker
    assert marker.exists()
    marker.unlink()
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.safetensors").write_bytes(payload)
    torch.save({"state_dict": Payload(marker)}, run / "checkpoints" / "model.pt")
    (run / "config.yaml").write_text(json.dumps(tiny_config(run)))
    return run, marker


def test_pickled_checkpoints_never_execute(planted: tuple[Path, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    run, marker = planted
    image = tmp_path / "in.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(image)
    for path in (run / "checkpoints" / "last.safetensors", run / "checkpoints" / "model.pt"):
        with pytest.raises(CheckpointError, match=PICKLE_REFUSED):
            load_checkpoint(path)
    assert main(["eval", "--checkpoint", str(run)]) == 2
    assert main(["predict", "--checkpoint", str(run / "checkpoints" / "model.pt"), str(image),
                 "--out", str(tmp_path / "pred")]) == 2  # every command's code for unusable input
    err = capsys.readouterr().err
    assert err.count(PICKLE_REFUSED) == 2 and "Traceback" not in err
    with pytest.raises(CheckpointError, match=PICKLE_REFUSED):
        fit(config_from_dict(tiny_config(run)), resume=True)
    assert not marker.exists()


def test_checkpoint_config_cannot_make_a_huge_model(tmp_path: Path) -> None:
    # 65536 x 131072 x 3 x 3 float32 weights would be 309 GB; the shapes are compared on the meta device first.
    config = {"model": {"name": "unet", "kwargs": {"channels": [65536, 131072], "in_channels": 3, "num_classes": 1}}}
    path = tmp_path / "huge.safetensors"
    save_file({"model.w": torch.zeros(2)}, str(path), metadata={"format": FORMAT, "config": json.dumps(config),
                                                                 "step": "0", "epoch": "0"})
    with pytest.raises(CheckpointError, match="the weights do not fit the model in its config"):
        load_model(path)


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("bomb.yaml", ALIAS_BOMB, "more than 100,000 values"),
        ("loop.yaml", b"data: &a [*a, *a]\n", "more than 100,000 values"),
        ("deep.yaml", b"data: " + b"[" * 5000 + b"]" * 5000, "is not valid YAML"),
        ("deep.toml", b"data = " + b"[" * 5000 + b"]" * 5000, "is not valid TOML"),
        ("latin1.yaml", "output_dir: caf\u00e9".encode("latin-1"), "is not UTF-8 text"),
    ],
)
def test_hostile_config_files_are_refused(tmp_path: Path, name: str, content: bytes, match: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ConfigError, match=match):
        load_config(tmp_path / name)


def test_hostile_overrides_are_refused() -> None:
    with pytest.raises(ConfigError, match="value is not valid YAML"):
        load_config(None, ["train.epochs=" + "[" * 5000 + "]" * 5000])
    with pytest.raises(ConfigError, match="unknown config key 1"):
        config_from_dict({1: {}, "train": {}})


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header(width: int, height: int) -> bytes:
    """A 67-byte PNG whose header claims ``width`` x ``height`` pixels; its pixel data is 2 bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0\0")) + _chunk(b"IEND", b"")


def test_image_headers_claiming_absurd_sizes_are_refused(tmp_path: Path) -> None:
    limit = Image.MAX_IMAGE_PIXELS
    png = tmp_path / "huge.png"
    png.write_bytes(_png_header(100_000, 100_000))
    tif = tmp_path / "huge.tif"
    tifffile.imwrite(tif, np.zeros((2, 8, 8), np.uint8))
    with tifffile.TiffFile(tif, mode="r+b") as f:
        for page in f.pages:
            page.tags["ImageWidth"].overwrite(100_000)
            page.tags["ImageLength"].overwrite(100_000)
    for read, path in ((read_image, png), (read_mask, png), (read_volume, tif)):
        with pytest.raises(DataError, match=r"huge\.(png|tif): .*10,?000,?000,?000 pixels.*decompression bomb"):
            read(path)
    assert Image.MAX_IMAGE_PIXELS == limit  # the limit is kept, not raised


def test_postscript_is_never_handed_to_ghostscript(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pillow identifies files by content: this ".png" is EPS, which Pillow renders by running Ghostscript.
    ran = []
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *args, **kwargs: ran.append(args))
    path = tmp_path / "innocent.png"
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n%%EndComments\nshowpage\n%%EOF\n")
    with pytest.raises(DataError, match="innocent.png: cannot read image"):
        read_image(path)
    assert not ran
