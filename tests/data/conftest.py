"""Shared helpers for the data tests: writing small image/mask files and locating real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetfamily.data import data_root

FIXTURES = Path(__file__).parent / "fixtures"


def save(path: Path, array: np.ndarray, **kwargs) -> Path:
    """Write ``array`` with Pillow (format from the suffix); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def tiff_stack_config(folder: Path, images: np.ndarray, labels: np.ndarray, slices: dict) -> dict:
    """Write (N, H, W) ``images`` and ``labels`` as ISBI 2012's two TIFF stacks; the config that reads them.

    Labels follow ISBI: 0 is membrane (class 1), 255 is cell interior (class 0).
    """
    import tifffile

    tifffile.imwrite(folder / "train-volume.tif", images, photometric="minisblack")
    tifffile.imwrite(folder / "train-labels.tif", labels, photometric="minisblack")
    return {
        "type": "tiff_stack",
        "images": str(folder / "train-volume.tif"),
        "labels": str(folder / "train-labels.tif"),
        "classes": ["background", "membrane"],
        "mask_encoding": {"kind": "map", "values": {0: 1, 255: 0}},
        "slices": slices,
    }


def real_dataset(name: str) -> Path:
    """The folder of a real dataset under UNETFAMILY_DATA_ROOT; skips the test when it is absent."""
    path = data_root() / name
    if not path.is_dir():
        pytest.skip(f"real dataset {name!r} not found at {path} (set UNETFAMILY_DATA_ROOT to the folder holding it)")
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def pairs_dir(tmp_path: Path, rng: np.random.Generator) -> Path:
    """``images/`` (PNG RGB, JPEG, BMP gray, TIFF RGB) and ``masks/`` named ``NAME_mask.png`` in 0/255."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    for i, suffix in enumerate([".png", ".jpg", ".bmp", ".tif"]):
        h, w = 20 + i, 24
        image = rng.integers(0, 256, (h, w) if suffix == ".bmp" else (h, w, 3), dtype=np.uint8)
        save(images / f"s{i}{suffix}", image)
        mask = np.zeros((h, w), np.uint8)
        mask[2 : 6 + i, 3:9] = 255
        save(masks / f"s{i}_mask.png", mask)
    return tmp_path
