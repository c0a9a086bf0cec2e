"""kornia-based joint augmentation: masks follow the image, stay integer, and pad with ignore."""

from __future__ import annotations

import sys

import pytest
import torch

from unetfamily.data import SyntheticShapes, build_augmentation, build_dataset
from unetfamily.data.augment import PRESETS, Augmentation

pytest.importorskip("kornia")


def _batch(n=4, size=64, num_classes=4):
    ds = SyntheticShapes(n, size=size, num_classes=num_classes, seed=1)
    return {
        "image": torch.stack([ds[i]["image"] for i in range(n)]),
        "mask": torch.stack([ds[i]["mask"] for i in range(n)]),
    }


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_on_samples_and_batches(preset):
    batch = _batch()
    aug = build_augmentation(preset, ignore_index=255, in_channels=1)
    torch.manual_seed(0)
    out = aug(batch)
    assert out["image"].shape == batch["image"].shape and out["mask"].shape == batch["mask"].shape
    assert out["mask"].dtype == torch.int64 and 0.0 <= out["image"].min() and out["image"].max() <= 1.0
    assert set(out["mask"].unique().tolist()) <= {0, 1, 2, 3, 255}  # nearest: no new values
    one = aug({"image": batch["image"][0], "mask": batch["mask"][0], "name": "x"})
    assert one["image"].shape == (1, 64, 64) and one["mask"].shape == (64, 64) and one["name"] == "x"


def test_mask_stays_aligned_with_image_under_geometric_warps():
    import kornia.augmentation as K

    batch = _batch(8)
    encoded = batch["mask"].float()[:, None] / 3  # the image *is* the mask, so they must agree after warping
    aug = Augmentation(
        K.RandomAffine(degrees=30.0, translate=(0.1, 0.1), scale=(0.8, 1.2), shear=10.0, p=1.0),
        K.RandomElasticTransform(kernel_size=(31, 31), sigma=(6.0, 6.0), alpha=(1.0, 1.0), p=1.0),
        K.RandomRotation90(times=(1, 3), p=1.0),
        ignore_index=255,
    )
    torch.manual_seed(0)
    out = aug({"image": encoded, "mask": batch["mask"]})
    scaled = out["image"][:, 0] * 3
    # Where the interpolated image is still exactly a class value (away from boundaries) it must
    # equal the warped mask; the unwarped mask, a misalignment, agrees far less.
    exact = ((scaled - scaled.round()).abs() < 0.02) & (out["mask"] != 255)
    agree = (scaled.round().long()[exact] == out["mask"][exact]).float().mean()
    control = (scaled.round().long()[exact] == batch["mask"][exact]).float().mean()
    assert exact.float().mean() > 0.5 and agree > 0.99 and control < 0.8
    assert (out["mask"] == 255).any()  # the affine step padded something


def test_padding_is_ignore_not_background():
    import kornia.augmentation as K

    mask = torch.ones(1, 32, 32, dtype=torch.long)  # all class 1: any 0 would be invented by padding
    aug = Augmentation(K.RandomAffine(degrees=0.0, translate=(0.4, 0.4), p=1.0), ignore_index=7)
    torch.manual_seed(3)
    out = aug({"image": torch.rand(1, 1, 32, 32), "mask": mask})
    assert set(out["mask"].unique().tolist()) == {1, 7}
    crop = build_augmentation("light", crop_size=48, ignore_index=255)
    out = crop({"image": torch.rand(1, 32, 32), "mask": torch.zeros(32, 32, dtype=torch.long)})
    assert out["mask"].shape == (48, 48) and (out["mask"] == 255).sum() == 48 * 48 - 32 * 32


def test_existing_ignore_pixels_survive():
    mask = torch.full((1, 16, 16), 255, dtype=torch.long)
    mask[:, 4:12, 4:12] = 2
    out = build_augmentation("light")({"image": torch.rand(1, 3, 16, 16), "mask": mask})
    assert (out["mask"] == 2).sum() == 64 and (out["mask"] == 255).sum() == 256 - 64


def test_augment_config_applies_to_train_only():
    config = {"type": "synthetic", "num_samples": 4, "size": 32, "augment": {"preset": "medical"}}
    assert isinstance(build_dataset(config, "train").transform, Augmentation)
    assert build_dataset(config, "val").transform is None


def test_missing_kornia_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "kornia", None)
    monkeypatch.setitem(sys.modules, "kornia.augmentation", None)
    with pytest.raises(ImportError, match=r"pip install 'unetfamily\[augment\]'"):
        build_augmentation("light")


def test_unknown_preset_names_the_close_match():
    from unetfamily.data import DataConfigError

    with pytest.raises(DataConfigError, match=r"augment preset: unknown value 'medicall'; did you mean 'medical'\?"):
        build_augmentation("medicall")
