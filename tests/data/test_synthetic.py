"""SyntheticShapes: deterministic, fast, with the structures that separate the models."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from unetfamily.data import DataConfigError, SyntheticShapes, build_dataset


def test_contract_shapes_and_classes():
    binary = SyntheticShapes(4, size=64)
    multi = SyntheticShapes(4, size=64, num_classes=4, in_channels=3)
    s = multi[0]
    assert s["image"].shape == (3, 64, 64) and s["image"].dtype == torch.float32
    assert s["mask"].shape == (64, 64) and s["mask"].dtype == torch.int64
    assert 0.0 <= s["image"].min() and s["image"].max() <= 1.0
    assert binary.info.classes == ["background", "foreground"] and binary.num_model_outputs == 1
    assert multi.info.classes == ["background", "blob", "polygon", "vessel"] and multi.num_model_outputs == 4
    assert set(binary[0]["mask"].unique().tolist()) == {0, 1}


def test_same_seed_same_data_in_any_order():
    a = SyntheticShapes(6, size=48, num_classes=4, seed=7, cache=False)
    b = SyntheticShapes(6, size=48, num_classes=4, seed=7, cache=False)
    for i in reversed(range(6)):
        assert torch.equal(a[i]["image"], b[i]["image"]) and torch.equal(a[i]["mask"], b[i]["mask"])
    assert not torch.equal(a[0]["image"], SyntheticShapes(6, size=48, num_classes=4, seed=8)[0]["image"])
    val = SyntheticShapes(6, size=48, num_classes=4, seed=7, split="val")
    assert not torch.equal(a[0]["mask"], val[0]["mask"])


def test_pinned_statistics():
    # Measured once; changes here change every result computed on the synthetic data.
    ds = SyntheticShapes(32, size=96, num_classes=4, seed=0)
    counts = torch.stack([torch.bincount(ds[i]["mask"].flatten(), minlength=4) for i in range(32)]).sum(0)
    fractions = (counts / counts.sum()).tolist()
    assert fractions == pytest.approx(PINNED_FRACTIONS, abs=1e-6)
    assert float(torch.stack([ds[i]["image"].mean() for i in range(32)]).mean()) == pytest.approx(PINNED_MEAN, abs=1e-5)


def test_has_small_large_thin_and_touching_structures():
    ds = SyntheticShapes(16, size=96, num_classes=4, seed=0)
    masks = np.stack([ds[i]["mask"].numpy() for i in range(16)])
    assert all((m == 3).any() for m in masks)  # every image has a vessel
    vessel = masks == 3
    # thin: most vessel pixels have a non-vessel pixel within 2 px across
    interior = (
        vessel[:, 2:-2, 2:-2] & vessel[:, :-4, 2:-2] & vessel[:, 4:, 2:-2] & vessel[:, 2:-2, :-4] & vessel[:, 2:-2, 4:]
    )
    assert interior.sum() < 0.1 * vessel.sum()
    assert (masks == 1).mean() > 0.03 and (masks == 2).mean() > 0.03




def test_config_type_and_errors():
    train = build_dataset({"type": "synthetic", "num_samples": {"train": 10, "val": 3}, "size": 32}, "train")
    assert len(train) == 10 and train[0]["image"].shape == (1, 32, 32)
    with pytest.raises(DataConfigError, match="synthetic split: unknown value 'test'; choose one of train"):
        build_dataset({"type": "synthetic", "num_samples": {"train": 10}}, "test")
    with pytest.raises(DataConfigError, match="num_classes 2 or 4"):
        SyntheticShapes(4, num_classes=3)


PINNED_FRACTIONS = [0.8162807822227478, 0.0792168527841568, 0.0551079660654068, 0.0493943952023983]
PINNED_MEAN = 0.4047749936580658
