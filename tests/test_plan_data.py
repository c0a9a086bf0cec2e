"""Data mechanisms of ``unetfamily plan``: the ``scale`` key and foreground-oversampling crops."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.data.conftest import save
from unetfamily.data import build_dataset
from unetfamily.data.augment import ForegroundCrop, build_augmentation
from unetfamily.data.base import scaled_size
from unetfamily.data.errors import DataConfigError

SYNTH = {"type": "synthetic", "size": 40, "num_samples": {"train": 3, "val": 2}, "num_classes": 4}


@pytest.fixture(autouse=True)
def _one_thread(single_thread) -> None:  # noqa: ANN001 - the suite's fixture
    return None


# -- scale -----------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [0.5, 0.33, 1.7])
def test_scale_resizes_each_split_image_bilinear_mask_nearest(scale: float) -> None:
    for split in ("train", "val"):
        plain, scaled = build_dataset(SYNTH, split), build_dataset({**SYNTH, "scale": scale}, split)
        size = (round(40 * scale), round(40 * scale))
        for i in range(len(plain)):
            a, b = plain[i], scaled[i]
            assert b["image"].shape == (1, *size) and b["mask"].shape == size and b["mask"].dtype == torch.int64
            nearest = F.interpolate(a["mask"][None, None].float(), size=size, mode="nearest-exact")[0, 0].long()
            assert torch.equal(b["mask"], nearest)
            smooth = F.interpolate(a["image"][None], size=size, mode="bilinear", antialias=True)[0]
            torch.testing.assert_close(b["image"], smooth)


def test_scale_one_is_a_no_op_and_cache_agrees() -> None:
    plain, same = build_dataset(SYNTH), build_dataset({**SYNTH, "scale": 1.0})
    assert torch.equal(plain[0]["image"], same[0]["image"]) and torch.equal(plain[0]["mask"], same[0]["mask"])
    cached = build_dataset({**SYNTH, "scale": 0.5})  # synthetic caches by default
    assert cached.cache and torch.equal(cached[1]["mask"], cached[1]["mask"])
    cached.set_scale(0.25)  # a new scale empties the cache
    assert cached[1]["mask"].shape == (10, 10)


def test_scaled_size_rounds_and_keeps_one_pixel() -> None:
    assert scaled_size((40, 30), 0.5) == (20, 15)
    assert scaled_size((41, 3), 0.5) == (round(20.5), 2) and scaled_size((5, 2), 0.01) == (1, 1)
    assert scaled_size((7, 9), 8.0) == (56, 72)


@pytest.mark.parametrize("bad", [0, -0.5, 8.5, math.nan, math.inf, True, "half", [0.5]])
def test_bad_scale_names_the_key(bad) -> None:
    with pytest.raises(DataConfigError, match=r"scale"):
        build_dataset({**SYNTH, "scale": bad})


def _folder(root: Path, roi: bool = False) -> dict:
    """Two 12x16 RGB samples with a 4x4 square of foreground (and a ROI: the left half); their config."""
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        save(root / "images" / f"{name}.png", rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
        mask = np.zeros((12, 16), np.uint8)
        mask[4:8, 6:10] = 255
        save(root / "masks" / f"{name}.png", mask)
        if roi:
            inside = np.zeros((12, 16), np.uint8)
            inside[:, :8] = 255
            save(root / "roi" / f"{name}.png", inside)
    return {"type": "folder", "root": str(root), **({"roi": "roi"} if roi else {})}


def test_scale_with_resize_is_refused_naming_both(tmp_path: Path) -> None:
    config = _folder(tmp_path)
    with pytest.raises(DataConfigError, match=r"scale=0\.5 and resize=\[8, 8\]"):
        build_dataset({**config, "scale": 0.5, "resize": 8}, "all")
    fold = {"type": "cv_fold", "base": {**config, "resize": 8}, "assignment": {"a": 0, "b": 1}, "fold": 0,
            "pool": ["all"], "scale": 2}
    with pytest.raises(DataConfigError, match="resize"):  # resize inside a wrapped base: refused as well
        build_dataset(fold, "val")


def test_scale_carries_the_roi_in_the_mask(tmp_path: Path) -> None:
    ds = build_dataset({**_folder(tmp_path, roi=True), "scale": 2.0}, "all")
    mask = ds[0]["mask"]
    assert mask.shape == (24, 32)
    assert (mask[:, 16:] == 255).all() and (mask[:, :16] != 255).all()  # outside the ROI: ignore, nearest
    assert int((mask == 1).sum()) == 8 * 4  # the half of the 8x8 scaled square inside the ROI


def test_scale_on_the_outer_cv_fold_config_applies_to_the_fold(tmp_path: Path) -> None:
    fold = {"type": "cv_fold", "base": _folder(tmp_path), "assignment": {"a": 0, "b": 1}, "fold": 0,
            "pool": ["all"], "scale": 0.5}
    assert build_dataset(fold, "val")[0]["mask"].shape == (6, 8)


# -- foreground oversampling ------------------------------------------------------------------
def _sparse(h: int = 64, w: int = 64) -> dict:
    """One foreground pixel at (h - 14, w - 14) of a background image; the image encodes the mask."""
    mask = torch.zeros(h, w, dtype=torch.long)
    mask[h - 14, w - 14] = 1
    return {"image": mask[None].float(), "mask": mask, "name": "s"}


def _hits(crop: ForegroundCrop, sample: dict, cls: int, draws: int = 300) -> float:
    torch.manual_seed(0)
    return sum(bool((crop(sample)["mask"] == cls).any()) for _ in range(draws)) / draws


def test_foreground_one_always_holds_foreground_zero_is_the_base_rate() -> None:
    sample = _sparse()
    always = ForegroundCrop(16, foreground=1.0)
    torch.manual_seed(0)
    for _ in range(100):
        out = always(sample)
        assert out["mask"].shape == (16, 16) and out["mask"].sum() == 1
        assert torch.equal(out["image"][0].long(), out["mask"])  # image and mask cut at the same place
    base = (14 / 49) ** 2  # windows holding pixel 50 of 64 with side 16: starts 35..48 of 0..48
    assert abs(_hits(ForegroundCrop(16, foreground=0.0), sample, 1) - base) < 0.05
    half = _hits(ForegroundCrop(16, foreground=0.5), sample, 1)
    assert abs(half - (0.5 + 0.5 * base)) < 0.08


def test_rare_class_is_chosen_as_often_as_a_common_one() -> None:
    mask = torch.ones(64, 64, dtype=torch.long)
    mask[:32] = 0
    mask[5, 60] = 2  # one pixel of class 2 in the background half; class 1 has 2048 pixels
    mask[0, :] = 255  # ignored pixels are never "foreground"
    sample = {"image": torch.rand(1, 64, 64), "mask": mask}
    rate = _hits(ForegroundCrop(8, foreground=1.0, ignore_index=255), sample, 2, draws=400)
    assert 0.4 < rate < 0.6


def test_a_content_class_0_is_oversampled_like_every_class() -> None:
    mask = torch.full((64, 64), 255, dtype=torch.long)
    mask[50:52, 50:52] = 0  # a small patch of class 0 in ignored pixels
    sample = {"image": torch.rand(1, 64, 64), "mask": mask}
    content = ForegroundCrop(16, foreground=1.0, background=False)
    for seed in range(20):
        torch.manual_seed(seed)
        assert (content(sample)["mask"] == 0).any(), seed  # class 0 is the only class: every window holds it
    assert _hits(ForegroundCrop(16, foreground=1.0), sample, 0) < 0.3  # a background class 0: uniform windows
    mask = torch.ones(64, 64, dtype=torch.long)
    mask[50, 50] = 0
    sample = {"image": torch.rand(1, 64, 64), "mask": mask}
    assert 0.45 < _hits(content, sample, 0, draws=400) < 0.75  # chosen half the time, else by chance
    assert _hits(ForegroundCrop(16, foreground=1.0), sample, 0, draws=400) < 0.25
    assert "background=False" in repr(content) and "background" not in repr(ForegroundCrop(16, 1.0))


def test_no_foreground_falls_back_to_uniform_windows() -> None:
    mask = torch.full((20, 20), 255, dtype=torch.long)
    mask[10:, :] = 0
    out = ForegroundCrop(8, foreground=1.0)({"image": torch.rand(3, 20, 20), "mask": mask})
    assert out["image"].shape == (3, 8, 8) and set(out["mask"].unique().tolist()) <= {0, 255}


def test_small_images_are_padded_image_zero_mask_ignore() -> None:
    image, mask = torch.rand(2, 10, 12) + 0.5, torch.ones(10, 12, dtype=torch.long)
    out = ForegroundCrop((16, 14), foreground=1.0, ignore_index=7)({"image": image, "mask": mask})
    assert out["image"].shape == (2, 16, 14) and out["mask"].shape == (16, 14)
    assert int((out["mask"] == 7).sum()) == 16 * 14 - 120 and int((out["mask"] == 1).sum()) == 120
    assert torch.equal(out["image"][0] == 0, out["mask"] == 7)


def test_batches_crop_each_sample() -> None:
    batch = {"image": torch.rand(3, 1, 64, 64), "mask": torch.stack([_sparse()["mask"]] * 3)}
    out = ForegroundCrop(16, foreground=1.0)(batch)
    assert out["image"].shape == (3, 1, 16, 16) and (out["mask"].flatten(1).sum(1) == 1).all()


def test_bad_foreground_settings_name_the_key() -> None:
    pytest.importorskip("kornia")
    with pytest.raises(DataConfigError, match=r"augment\.foreground=0\.5 needs augment\.crop_size"):
        build_dataset({**SYNTH, "augment": {"preset": "light", "foreground": 0.5}})
    for bad in (1.5, -0.1, "yes", True):
        with pytest.raises(DataConfigError, match=r"augment\.foreground"):
            build_dataset({**SYNTH, "augment": {"preset": "light", "crop_size": 16, "foreground": bad}})


def test_config_reproducible_by_seed_and_validation_unaugmented() -> None:
    pytest.importorskip("kornia")
    config = {**SYNTH, "augment": {"preset": "medical", "crop_size": 24, "foreground": 1.0}}
    train = build_dataset(config)
    a, b, c = train[(1, 5)], train[(1, 5)], train[(1, 6)]
    assert a["image"].shape == (1, 24, 24) and torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    assert not torch.equal(a["image"], c["image"])
    assert build_dataset(config, "val").transform is None


@pytest.mark.parametrize("preset", ["light", "medical", "natural"])
def test_presets_keep_their_crop_without_foreground(preset: str) -> None:
    pytest.importorskip("kornia")
    import kornia.augmentation as K

    first = K.RandomResizedCrop if preset == "natural" else K.RandomCrop
    for foreground in (0, 0.0):
        aug = build_augmentation(preset, crop_size=24, foreground=foreground)
        assert aug.crop is None and any(isinstance(s, first) for s in aug.steps)
    aug = build_augmentation(preset, crop_size=24, foreground=0.3, in_channels=1)
    assert isinstance(aug.crop, ForegroundCrop) and aug.crop_size == (24, 24)
    assert not any(isinstance(s, (K.RandomCrop, K.RandomResizedCrop)) for s in aug.steps)
    if preset == "natural":
        assert any(isinstance(s, K.RandomAffine) for s in aug.steps)
    torch.manual_seed(0)
    out = aug({"image": torch.rand(1, 40, 30), "mask": _sparse(40, 30)["mask"]})
    assert out["image"].shape == (1, 24, 24) and out["mask"].shape == (24, 24)
