"""Sliding-window validation (train.val_window): equal to whole-image validation where one window
covers the image, consistent with the Predictor's probability blending, and end to end on images
of varied sizes in fit, evaluate_checkpoint and compare's evaluation of a run."""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from tests.engine.conftest import tiny_model
from unetfamily.compare.data import eval_split
from unetfamily.compare.run import _evaluate, _levels, _predictions, _Window
from unetfamily.config import ConfigError, config_from_dict, load_config
from unetfamily.engine.evaluate import evaluate, evaluate_checkpoint, window_labels
from unetfamily.engine.train import fit

SIZES = [(40, 36), (28, 44), (32, 32), (36, 30), (44, 40), (30, 26)]  # (H, W): native sizes, all different


@pytest.fixture(autouse=True)
def _one_thread(single_thread: None) -> None:
    """Tiny tensors: one thread."""


def _batches(num_classes: int, sizes: list[tuple[int, int]], n: int = 2, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    k = max(num_classes, 2)
    return [{"image": torch.rand(n, 3, h, w, generator=g), "mask": torch.randint(0, k, (n, h, w), generator=g),
             "name": [f"{h}x{w}_{i}" for i in range(n)]} for h, w in sizes]


class _Counting(nn.Module):
    """A model that counts the images (windows) it is called on."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.calls, self.shapes = model, 0, set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += len(x)
        self.shapes.add(tuple(x.shape[-2:]))
        return self.model(x)


def _scalars(result: dict) -> dict:
    return {k: v for k, v in result.items() if isinstance(v, float)}


def _assert_same_scores(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in _scalars(a).items():
        assert (math.isnan(value) and math.isnan(b[key])) or abs(value - b[key]) <= 1e-6, (key, value, b[key])
    assert a["confusion_matrix"] == b["confusion_matrix"]


@pytest.mark.parametrize("name,num_classes", [("unet", 1), ("unet", 3), ("unet_plusplus", 1), ("unet_3plus", 2)])
def test_one_window_per_image_scores_as_the_whole_image(name: str, num_classes: int) -> None:
    model = _Counting(tiny_model(name, num_classes))
    batches = _batches(num_classes, [(32, 32)], n=3)
    whole = evaluate(model, batches, "cpu", max(num_classes, 2), per_image=True, hd95=num_classes == 1)
    model.calls = 0
    windowed = evaluate(model, batches, "cpu", max(num_classes, 2), per_image=True, hd95=num_classes == 1,
                        window=[32, 32], overlap=0.5)
    assert model.calls == 3 and model.shapes == {(32, 32)}  # exactly one window per image
    _assert_same_scores(whole, windowed)
    for a, b in zip(whole["per_image"], windowed["per_image"]):
        assert a["name"] == b["name"] and (a["dice"] == b["dice"] or (math.isnan(a["dice"]) and math.isnan(b["dice"])))


def test_a_window_larger_than_the_image_pads_it_and_scores_the_image_alone() -> None:
    model = tiny_model("unet", 1)
    batches = _batches(1, [(20, 28)])
    labels = window_labels(model, batches[0]["image"], [32, 32])
    assert labels.shape == (2, 20, 28) and labels.dtype == torch.long
    result = evaluate(model, batches, "cpu", 2, window=[32, 32])
    assert sum(map(sum, result["confusion_matrix"])) == 2 * 20 * 28  # every pixel of the image, no padding


@pytest.mark.parametrize("channels", [1, 3])
def test_windows_blend_probabilities(channels: int) -> None:
    # A pixel-wise model sees the same pixel in every window, so blended probabilities equal its own
    # probabilities: the windowed labels equal the whole image's however the windows overlap.
    torch.manual_seed(0)
    model = nn.Conv2d(3, channels, 1).eval()
    image = torch.rand(2, 3, 37, 53)
    with torch.no_grad():
        logits = model(image)
    expected = (logits.sigmoid()[:, 0] > 0.5).long() if channels == 1 else logits.argmax(1)
    for window, overlap in (([16, 16], 0.5), ([16, 24], 0.0), ([8, 40], 0.9)):
        assert torch.equal(window_labels(model, image, window, overlap, batch_size=3), expected)


@pytest.mark.parametrize("name,num_classes,kwargs",
                         [("unet", 1, {}), ("unet", 3, {}), ("unet_3plus", 1, {"cgm": True})])
def test_windowed_labels_are_the_predictors_masks(name: str, num_classes: int, kwargs: dict) -> None:
    from unetfamily.engine.predict import Predictor

    model = tiny_model(name, num_classes, **kwargs)
    image = torch.rand(1, 3, 40, 36, generator=torch.Generator().manual_seed(1))
    predictor = Predictor(model, tile_size=16, overlap=0.5, blend="gaussian", threshold=0.3)
    expected = predictor.predict(image[0], keep_probabilities=False).mask.long()
    assert torch.equal(window_labels(model, image, [16, 16], 0.5, threshold=0.3, batch_size=3)[0], expected)


class _TileVote(nn.Module):
    """Binary model answering each window as a whole: logit +100 when the window is mostly bright, else -2."""

    num_classes, in_channels = 1, 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bright = x.mean((1, 2, 3), keepdim=True) > 0.5
        return torch.where(bright, 100.0, -2.0).expand(len(x), 1, *x.shape[-2:])


def test_probabilities_are_blended_not_logits() -> None:
    # One confident window (+100) beside weak ones (-2): averaged logits would let it win pixels that
    # its Gaussian weight gives mostly to the others; averaged probabilities make it one weighted vote.
    from unetfamily.engine.predict import Predictor

    image = torch.zeros(1, 1, 32, 32)
    image[..., 20:, 20:] = 1
    labels = window_labels(_TileVote(), image, [16, 16], 0.5)
    expected = Predictor(_TileVote(), tile_size=16, overlap=0.5).predict(image[0], keep_probabilities=False).mask
    assert torch.equal(labels[0], expected.long())
    assert 0 < int(labels.sum()) < 190  # averaged logits label 193 pixels foreground, probabilities 144


def test_window_smaller_than_the_image_uses_many_windows_and_the_threshold() -> None:
    model = _Counting(tiny_model("unet", 1))
    batches = _batches(1, [(40, 36)], n=1)
    evaluate(model, batches, "cpu", 2, window=[16, 16], overlap=0.5)
    assert model.shapes == {(16, 16)} and model.calls == 4 * 4  # starts 0, 8, 16, 24 on both axes
    low = window_labels(model, batches[0]["image"], [16, 16], threshold=0.01)
    high = window_labels(model, batches[0]["image"], [16, 16], threshold=0.99)
    assert bool((low >= high).all()) and low.sum() >= high.sum()


def test_val_window_keys_are_checked() -> None:
    cfg = load_config(None, ["train.val_window=[64, 48]", "train.val_overlap=0.25"])
    assert cfg.train.val_window == [64, 48] and cfg.train.val_overlap == 0.25
    for overrides, key in ((["train.val_overlap=0.25"], "train.val_overlap"),
                           (["train.val_window=[0, 8]"], "train.val_window[0]"),
                           (["train.val_window=[8]"], "train.val_window"),
                           (["train.val_window=[8, 8]", "train.val_overlap=0.96"], "train.val_overlap")):
        with pytest.raises(ConfigError, match=key.replace("[", r"\[")):
            load_config(None, overrides)


# ------------------------------------------------------------------ end to end, images of varied sizes


def _folder_data(root: Path) -> dict:
    """A folder dataset of SIZES-sized grey images (bright discs = foreground), split train/val by folders."""
    rng = np.random.default_rng(0)
    for split, sizes in (("train", SIZES), ("val", SIZES[::-1][:4])):
        for folder in ("images", "masks"):
            (root / split / folder).mkdir(parents=True)
        for i, (h, w) in enumerate(sizes):
            yy, xx = np.mgrid[:h, :w]
            mask = (yy - rng.uniform(8, h - 8)) ** 2 + (xx - rng.uniform(8, w - 8)) ** 2 < rng.uniform(20, 50)
            image = np.clip(0.3 + 0.5 * mask + rng.normal(0, 0.1, (h, w)), 0, 1)
            Image.fromarray((image * 255).astype(np.uint8)).save(root / split / "images" / f"s{i}.png")
            Image.fromarray(mask.astype(np.uint8) * 255).save(root / split / "masks" / f"s{i}.png")
    return {"type": "folder", "root": str(root), "images": "{split}/images", "masks": "{split}/masks",
            "augment": {"preset": "light", "crop_size": 16}}


def test_fit_validates_images_of_varied_sizes_in_windows(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = _folder_data(tmp_path / "data")
    config = {"model": {"name": "unet", "kwargs": {"channels": [4, 8]}}, "data": data,
              "loader": {"batch_size": 2, "val_batch_size": 3}, "output_dir": str(tmp_path / "run"),
              "train": {"epochs": 2, "steps_per_epoch": 2, "val_window": [16, 16], "val_overlap": 0.25,
                        "progress": False, "tensorboard": False}}
    with caplog.at_level(logging.INFO, logger="unetfamily"):
        summary = fit(config_from_dict(config))
    assert summary.steps == 4 and len(summary.history) == 2
    assert all(math.isfinite(h[k]) for h in summary.history for k in ("dice", "iou", "pixel_accuracy"))
    text = caplog.text
    assert "epoch = 2 steps of 2 samples" in text and "sliding windows of 16x16 (overlap 0.25" in text
    # evaluate_checkpoint reads the run's window: images of varied sizes at batch_size 4, one per batch
    result = evaluate_checkpoint(tmp_path / "run", batch_size=4, device="cpu")
    assert len(result["per_image"]) == 4 and math.isfinite(result["pixel_accuracy"])
    assert result["pixel_accuracy"] == pytest.approx(summary.history[-1]["pixel_accuracy"], abs=1e-9)


def test_whole_image_validation_is_announced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from tests.reliability.conftest import tiny_config

    with caplog.at_level(logging.INFO, logger="unetfamily"):
        fit(config_from_dict(tiny_config(tmp_path / "run", epochs=1, max_steps=1)))
    assert "epoch = one pass over 16 training images (4 steps of 4)" in caplog.text
    assert "validation predicts each of 8 images whole" in caplog.text


def test_compare_evaluates_a_run_as_it_was_validated(tmp_path: Path) -> None:
    split = eval_split("val", {"type": "synthetic", "num_samples": {"train": 4, "val": 3}, "size": 32}, "val",
                       batch_size=2)
    model = tiny_model("unet_plusplus", 1, in_channels=1)
    whole, one = _Window(), _Window([32, 32], 0.5)
    scores, per_image = _evaluate(model, split, torch.device("cpu"), 2.0, whole)
    w_scores, w_per_image = _evaluate(model, split, torch.device("cpu"), 2.0, one)
    for key, value in scores.items():
        if isinstance(value, float):
            assert value == pytest.approx(w_scores[key], abs=1e-6, nan_ok=True), key
    assert [r["name"] for r in per_image] == [r["name"] for r in w_per_image]
    assert np.array_equal(_predictions(model, split, torch.device("cpu"), whole),
                          _predictions(model, split, torch.device("cpu"), one))
    levels, w_levels = (_levels(model, split, torch.device("cpu"), w) for w in (whole, one))
    assert all(levels[k]["dice"] == pytest.approx(w_levels[k]["dice"], abs=1e-6, nan_ok=True) for k in levels)
    small = _Window([16, 16], 0.5)  # smaller windows: other predictions, still one per image
    assert [p.shape for p in _predictions(model, split, torch.device("cpu"), small)] == [(32, 32)] * 3
    assert set(_levels(model, split, torch.device("cpu"), small)) == set(levels)
