"""The plan's cached fingerprint follows the files, not only their names (audit A).

``unetfamily plan DATA --out plan.yaml --overwrite`` after fixing the masks (same file names) reused
``plan.fingerprint.json`` and planned from the old masks: 12% foreground where the data now had 50%.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from unetfamily.data import build_dataset
from unetfamily.data.fingerprint import load_or_compute_fingerprint
from unetfamily.plan.make import dataset_key


def _folder(root: Path) -> dict:
    for i in range(3):
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((16, 16), 50 * i, np.uint8)).save(root / "images" / f"s{i}.png")
        m = np.zeros((16, 16), np.uint8)
        m[:2, :2] = 255
        Image.fromarray(m).save(root / "masks" / f"s{i}.png")
    return {"type": "folder", "root": str(root)}


def _stack(root: Path) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(root / "vol.tif", np.full((3, 16, 16), 90, np.uint8), photometric="minisblack")
    labels = np.zeros((3, 16, 16), np.uint8)
    labels[:, :2, :2] = 1
    tifffile.imwrite(root / "lab.tif", labels, photometric="minisblack")
    return {"type": "tiff_stack", "images": str(root / "vol.tif"), "labels": str(root / "lab.tif")}


def _edit_masks(config: dict) -> None:
    """Half of every mask becomes foreground; the file names stay."""
    if config["type"] == "tiff_stack":
        path = Path(config["labels"])
        labels = np.zeros((3, 16, 16), np.uint8)
        labels[:, :8] = 1
        tifffile.imwrite(path, labels, photometric="minisblack")
        paths = [path]
    else:
        paths = sorted(Path(config["root"], "masks").glob("*.png"))
        for path in paths:
            m = np.zeros((16, 16), np.uint8)
            m[:8] = 255
            Image.fromarray(m).save(path)
    for path in paths:  # a later modification time even on a coarse clock
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


@pytest.mark.parametrize("make", [_folder, _stack], ids=["folder", "tiff_stack"])
def test_an_edited_mask_is_fingerprinted_again(tmp_path, make):
    config = make(tmp_path / "data")
    cache = tmp_path / "plan.fingerprint.json"
    first = build_dataset(config, "all")
    before = load_or_compute_fingerprint(first, cache, dataset_key(config, first))
    assert before.class_fraction["foreground"] == pytest.approx(4 / 256)
    _edit_masks(config)
    train = build_dataset(config, "all")
    after = load_or_compute_fingerprint(train, cache, dataset_key(config, train))
    assert after.class_fraction["foreground"] == pytest.approx(0.5)
    again = build_dataset(config, "all")  # nothing changed since: the cache is used
    assert dataset_key(config, again) == dataset_key(config, train)
