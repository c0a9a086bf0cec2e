"""`unetfamily plan`, `train --plan` and `compare --plan` end to end on tiny synthetic data (a few seconds each)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from unetfamily.cli import main
from unetfamily.compare.config import CompareConfig
from unetfamily.engine.predict import Predictor
from unetfamily.errors import ConfigError
from unetfamily.models import create_model
from unetfamily.plan import read_plan


def test_compare_plan_is_auto_unless_a_recipe_option_is_set() -> None:
    assert CompareConfig().plan == "auto"
    assert CompareConfig(size=64).plan == "none" and CompareConfig(lr=0.01, augment="light").plan == "none"
    assert CompareConfig(plan="none").plan == "none" and CompareConfig(plan="my.yaml").plan == "my.yaml"
    with pytest.raises(ConfigError, match="--batch-size, --lr would be ignored"):
        CompareConfig(plan="auto", batch_size=2, lr=0.01)
    with pytest.raises(ConfigError, match="--plan"):
        CompareConfig(plan="")


def test_plan_then_train_with_it(tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan_file = tmp_path / "plan.yaml"
    argv = ["plan", str(tiny_data), "--models", "unet,fcn8s", "--base-width", "4", "--steps", "3", "--out", str(plan_file)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "scale:" in printed and "families.unet:" in printed and "12 cases" in printed
    plan = read_plan(plan_file)
    assert set(plan.families) == {"unet", "fcn8s"} and (tmp_path / "plan.fingerprint.json").is_file()
    assert main(argv) == 2  # an existing plan is not replaced without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main(["train", "--plan", str(plan_file), "--model", "unet_3plus"]) == 2
    assert "fcn8s" in capsys.readouterr().err  # names the fitted models
    run = tmp_path / "run"
    assert main(["train", "--plan", str(plan_file), "--model", "unet", f"output_dir={run}", "train.progress=false"]) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    fit = plan.families["unet"]
    assert saved["train"]["steps_per_epoch"] == fit.steps_per_epoch and saved["train"]["val_window"] == fit.window
    assert saved["model"]["kwargs"]["input_norm"]["mean"] == plan.normalization["mean"]
    assert saved["data"]["augment"]["crop_size"] == fit.patch


def magnified_folder(root: Path) -> Path:
    """A folder dataset whose pictures were taken at several magnifications: the blob grows with the image."""
    from PIL import Image

    sides = {"train": [32, 40, 48, 56, 64, 72, 80, 88, 96], "val": [36, 60, 90], "test": [44, 68, 84]}
    for split, values in sides.items():
        for i, side in enumerate(values):
            image = np.full((side, side), 40, np.uint8)
            mask = np.zeros((side, side), np.uint8)
            mask[side // 4 : side // 4 + side // 3, side // 3 : side // 3 + side // 3] = 1
            image[mask > 0] = 200
            for kind, array in (("images", image), ("masks", mask)):
                (root / kind / split).mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(root / kind / split / f"{i}.png")
    config = root / "magnified.yaml"
    config.write_text(yaml.safe_dump({"type": "folder", "root": str(root), "images": "images/{split}",
                                      "masks": "masks/{split}"}))
    return config


def test_a_plan_resizes_pictures_taken_at_several_magnifications_to_one_size(tmp_path: Path) -> None:
    plan_file, run = tmp_path / "plan.yaml", tmp_path / "run"
    data = magnified_folder(tmp_path / "data")
    assert main(["plan", str(data), "--models", "unet", "--base-width", "4", "--steps", "2", "--out", str(plan_file)]) == 0
    plan = read_plan(plan_file)
    assert plan.resize == [64, 64] and "several magnifications" in plan.reasons["resize"]  # the median image
    assert main(["train", "--plan", str(plan_file), "--model", "unet", f"output_dir={run}", "train.progress=false"]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["resize"] == [64, 64]
    predictor = Predictor.from_checkpoint(run / "checkpoints" / "last.safetensors", device="cpu")
    assert predictor.resize == (64, 64)
    assert predictor.predict(torch.rand(1, 90, 90)).mask.shape == (90, 90)  # back to the input's own size


def test_compare_with_a_plan_trains_reports_and_reuses_it(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    argv = ["compare", "--data", str(tiny_data), "--models", "unet", "--seeds", "1", "--steps", "3",
            "--base-width", "4", "--no-costs", "--out", str(out)]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    plan = results["protocol"]["plan"]
    assert plan["families"]["unet"]["patch"] and "scale" in plan["reasons"]
    assert results["protocol"]["config"]["plan"] == "auto"
    assert "## Plan" in (out / "report.md").read_text()
    run_config = yaml.safe_load((out / "runs" / "unet" / "seed0" / "config.yaml").read_text())
    assert run_config["train"]["val_window"] and "input_norm" in run_config["model"]["kwargs"]
    before = (out / "plan.yaml").read_text()
    finished = (out / "runs" / "unet" / "seed0" / "result.json").stat().st_mtime_ns
    assert main(argv) == 0  # the same command: the saved plan and the finished run are reused
    assert (out / "plan.yaml").read_text() == before
    assert (out / "runs" / "unet" / "seed0" / "result.json").stat().st_mtime_ns == finished


def test_predictor_predicts_at_the_training_scale_and_returns_the_input_size() -> None:
    torch.manual_seed(0)
    model = create_model("unet", in_channels=1, num_classes=1, channels=[4, 8, 16]).eval()
    predictor = Predictor(model, tile_size=None)
    image = torch.rand(1, 37, 50)
    plain = predictor.predict(image)
    predictor.scale = 0.5
    scaled = predictor.predict(image)
    assert scaled.mask.shape == (37, 50) and scaled.probabilities.shape == (1, 37, 50)
    assert not torch.equal(scaled.probabilities, plain.probabilities)  # the model did see a smaller image
    small = torch.nn.functional.interpolate(image[None], size=(18, 25), mode="bilinear", antialias=True,
                                            align_corners=False)[0]
    back = torch.nn.functional.interpolate(Predictor(model, tile_size=None).predict(small).probabilities[None],
                                           size=(37, 50), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(scaled.probabilities, back)


def test_predictor_predicts_at_the_training_resize_and_returns_the_input_size() -> None:
    torch.manual_seed(0)
    model = create_model("unet", in_channels=1, num_classes=1, channels=[4, 8, 16]).eval()
    predictor = Predictor(model, tile_size=None)
    predictor.resize = (32, 32)
    image = torch.rand(1, 37, 50)
    out = predictor.predict(image)
    assert out.mask.shape == (37, 50)
    squashed = torch.nn.functional.interpolate(image[None], size=(32, 32), mode="bilinear", antialias=True,
                                               align_corners=False)[0]
    back = torch.nn.functional.interpolate(Predictor(model, tile_size=None).predict(squashed).probabilities[None],
                                           size=(37, 50), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(out.probabilities, back)


def test_compare_size_caps_a_two_sided_crop(tmp_path: Path) -> None:
    """--size with a data config whose crop is [H, W] (CamVid's) caps each side; an int crop stays an int."""
    from unetfamily.compare.data import data_config

    for crop, want in (([352, 480], [256, 256]), ([128, 480], [128, 256]), (300, 256), (100, 100)):
        path = tmp_path / "d.yaml"
        path.write_text(yaml.safe_dump({"type": "folder", "root": "x", "augment": {"preset": "light",
                                                                                   "crop_size": crop}}))
        assert data_config(str(path), 256)[0]["augment"]["crop_size"] == want
