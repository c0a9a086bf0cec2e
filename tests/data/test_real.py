"""The four real datasets: counts, shapes, classes, foreground definitions and pinned statistics.

Each test decodes a few samples only; full counts come from file listings. Pinned values were
measured once with this loader (see docs/data.md); the tests skip when the data is absent.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetfamily.data import build_dataset

from .conftest import real_dataset, tiff_stack_config


def _by_name(ds, names):
    index = {n: i for i, n in enumerate(ds.names)}
    return [ds[index[n]] for n in names]


def _fg_and_mean(samples):
    fg = np.mean([float((s["mask"] == 1).double().mean()) for s in samples])
    mean = np.mean([float(s["image"].double().mean()) for s in samples])
    return fg, mean


def test_isbi2012_em():
    root = real_dataset("isbi2012_em")
    assert len(list((root / "train" / "image").glob("*.png"))) == 30
    train, val = build_dataset({"type": "isbi2012_em"}, "train"), build_dataset({"type": "isbi2012_em"}, "val")
    assert len(train) == 24 and val.names == ["24", "25", "26", "27", "28", "29"]  # numeric order, not 1, 10, 11
    assert train.info.classes == ["background", "membrane"] and train.info.in_channels == 1
    samples = _by_name(build_dataset({"type": "isbi2012_em"}, "all"), ["0", "7", "29"])
    assert samples[0]["image"].shape == (1, 512, 512) and set(samples[0]["mask"].unique().tolist()) == {0, 1}
    fg, mean = _fg_and_mean(samples)
    assert fg == pytest.approx(0.2096278, abs=1e-6)  # membrane (label 0) is the ~22 % minority
    assert mean == pytest.approx(0.5003816, abs=1e-6)
    cell = build_dataset({"type": "isbi2012_em", "foreground": "cell"}, "all")
    assert torch.equal(cell[0]["mask"], 1 - samples[0]["mask"])
    with pytest.raises(Exception, match="no labels"):
        build_dataset({"type": "isbi2012_em"}, "test")


DSB_NAMES = [
    "0a7d30b252359a10fd298b638b90cb9ada3acced4e0c0e5a3692013f432ee4e9",
    "05a8f65ebd0b30d3b210f30b4d640c847c2e710d0d135e0aeeaccbe1988e3b6e",
    "e4537e7893e631f3ba6ae5b1023e24b233c78249a31c2f5e561f6c4cad88fcf6",
]


def test_dsb2018_nuclei():
    root = real_dataset("dsb2018_nuclei")
    assert len(list((root / "images").glob("*.png"))) == 664
    sizes = {s: len(build_dataset({"type": "dsb2018_nuclei"}, s)) for s in ("train", "val", "test", "all")}
    assert sizes == {"train": 532, "val": 66, "test": 66, "all": 664}
    train, val = build_dataset({"type": "dsb2018_nuclei"}, "train"), build_dataset({"type": "dsb2018_nuclei"}, "val")
    assert not set(train.names) & set(val.names)
    assert train.info.classes == ["background", "nucleus"] and train.info.in_channels == 3  # RGBA -> RGB
    every = build_dataset({"type": "dsb2018_nuclei"}, "all")
    samples = _by_name(every, DSB_NAMES)
    assert samples[0]["image"].shape == (3, 256, 256)
    fg, mean = _fg_and_mean(samples)
    assert fg == pytest.approx(0.0827128, abs=1e-6) and mean == pytest.approx(0.0589064, abs=1e-6)
    instances = _by_name(build_dataset({"type": "dsb2018_nuclei", "masks": "instances"}, "all"), DSB_NAMES)
    for a, b in zip(samples, instances, strict=True):  # instance maps reduced to semantic masks == the binary masks
        assert torch.equal(a["mask"], b["mask"])


KVASIR_NAMES = ["cju0s690hkp960855tjuaqvv0", "cju0sr5ghl0nd08789uzf1raf", "cju0sxqiclckk08551ycbwhno"]


def test_kvasir_seg():
    root = real_dataset("kvasir_seg")
    assert len(list((root / "images").glob("*.jpg"))) == 1000
    train, val = build_dataset({"type": "kvasir_seg"}, "train"), build_dataset({"type": "kvasir_seg"}, "val")
    assert (len(train), len(val)) == (880, 120) and not set(train.names) & set(val.names)
    assert val.info.classes == ["background", "polyp"] and val.num_model_outputs == 1
    samples = _by_name(val, KVASIR_NAMES)
    assert samples[1]["image"].shape == (3, 1019, 1214) and set(samples[1]["mask"].unique().tolist()) == {0, 1}
    fg, mean = _fg_and_mean(samples)
    assert fg == pytest.approx(0.0712199, abs=1e-6) and mean == pytest.approx(0.3540881, abs=1e-6)
    small = build_dataset({"type": "kvasir_seg", "resize": 64}, "val")[0]
    assert small["image"].shape == (3, 64, 64) and small["mask"].shape == (64, 64)


def test_camvid():
    root = real_dataset("camvid")
    assert len(list((root / "trainannot").glob("*.png"))) == 123
    sizes = {s: len(build_dataset({"type": "camvid"}, s)) for s in ("train", "val", "test", "all")}
    assert sizes == {"train": 123, "val": 34, "test": 39, "all": 196}
    test = build_dataset({"type": "camvid"}, "test")
    assert len(test.info.classes) == 11 and test.info.ignore_index == 11 and test.num_model_outputs == 11
    assert not test.info.has_background  # sky is class 0: scored like the other classes
    assert test.names[:3] == ["0001TP_008550", "0001TP_008730", "0001TP_008910"]
    counts = sum(torch.bincount(test[i]["mask"].flatten(), minlength=12) for i in range(3))
    assert test[0]["image"].shape == (3, 360, 480)
    expected = [
        0.205473,
        0.195108,
        0.004905,
        0.191698,
        0.042795,
        0.202467,
        0.005446,
        0.0,
        0.05701,
        0.013113,
        0.016275,
        0.06571,
    ]
    assert (counts / counts.sum()).tolist() == pytest.approx(expected, abs=1e-6)  # index 11 = void, ignored


def test_isbi_as_tiff_stacks_matches_the_png_slices(tmp_path):
    """Rebuild the original ISBI form (train-volume.tif + train-labels.tif) from the real slices."""
    from PIL import Image

    root = real_dataset("isbi2012_em")
    names = [str(i) for i in range(30)]
    volume = np.stack([np.asarray(Image.open(root / "train" / "image" / f"{n}.png")) for n in names])
    labels = np.stack([np.asarray(Image.open(root / "train" / "label" / f"{n}.png")) for n in names])
    config = tiff_stack_config(tmp_path, volume, labels, {"train": [0, 24], "val": [24, 30]})
    stack, pngs = build_dataset(config, "val"), build_dataset({"type": "isbi2012_em"}, "val")
    assert len(stack) == len(pngs) == 6
    for i in (0, 5):
        assert torch.equal(stack[i]["image"], pngs[i]["image"]) and torch.equal(stack[i]["mask"], pngs[i]["mask"])


def test_real_jpeg_mask_without_threshold_is_refused():
    from unetfamily.data import DataError

    real_dataset("kvasir_seg")
    ds = build_dataset({"type": "folder", "root": str(real_dataset("kvasir_seg"))}, "all")
    with pytest.raises(DataError, match=r"masks/.*\.jpg: lossy \(JPEG or lossy WebP\) mask.*threshold: 127"):
        ds[0]
