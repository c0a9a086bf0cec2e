"""Deployment audit: ``eval --data`` scores a model at the image geometry it was trained at, or refuses.

A model trained on resized images (``data.resize`` / ``data.scale``) that is given a dataset config
without that resize would be scored on images at a scale it never saw, silently (``predict`` resizes
its inputs as in training). Any such mismatch is refused, naming what to set.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.engine.conftest import TINY, tiny_model
from unetfamily.cli import main
from unetfamily.engine.checkpoint import save_checkpoint
from unetfamily.engine.evaluate import evaluate_checkpoint
from unetfamily.errors import ConfigError


def _folder(root: Path) -> dict[str, Any]:
    """Four 24x32 gray images with 0/1 masks; a folder config of them (split 'all')."""
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i in range(4):
        mask = (rng.random((24, 32)) > 0.7).astype(np.uint8)
        Image.fromarray((mask * 150 + 40).astype(np.uint8)).save(root / "images" / f"s{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"s{i}.png")
    return {"type": "folder", "root": str(root)}


def _checkpoint(path: Path, data: dict[str, Any]) -> Path:
    model = tiny_model("unet", 1, 1)
    kwargs = {**TINY["unet"], "in_channels": 1, "num_classes": 1}
    return save_checkpoint(path / "checkpoints" / "last.safetensors", model,
                           config={"model": {"name": "unet", "kwargs": kwargs}, "data": data},
                           extra={"classes": ["background", "foreground"]})


@pytest.mark.parametrize("trained", [{"resize": [16, 20]}, {"scale": 0.5}])
def test_data_at_another_geometry_than_training_is_refused(trained: dict[str, Any], tmp_path: Path) -> None:
    data = _folder(tmp_path / "data")
    ckpt = _checkpoint(tmp_path / "run", {**data, **trained})
    assert len(evaluate_checkpoint(ckpt, split="all", device="cpu")["per_image"]) == 4  # its own data config
    assert evaluate_checkpoint(ckpt, {**data, **trained}, split="all", device="cpu")["per_image"]
    key = next(iter(trained))
    for other in ({}, {"resize": [24, 32]}, {"scale": 0.25}):  # native size, another resize, another factor
        with pytest.raises(ConfigError, match=rf"trained on images .*{key}: .* set {key}: "):
            evaluate_checkpoint(ckpt, {**data, **other}, split="all", device="cpu")


def test_a_model_trained_at_native_size_takes_data_of_any_geometry(tmp_path: Path) -> None:
    data = _folder(tmp_path / "data")
    ckpt = _checkpoint(tmp_path / "run", data)
    for other in ({}, {"resize": [16, 20]}, {"scale": 0.5}):
        assert len(evaluate_checkpoint(ckpt, {**data, **other}, split="all", device="cpu")["per_image"]) == 4


def test_eval_command_says_what_to_set_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    data = _folder(tmp_path / "data")
    ckpt = _checkpoint(tmp_path / "run", {**data, "resize": [16, 20]})
    (tmp_path / "native.yaml").write_text(yaml.safe_dump(data))
    out = tmp_path / "e.json"
    assert main(["eval", "--checkpoint", str(ckpt), "--data", str(tmp_path / "native.yaml"), "--split", "all",
                 "--device", "cpu", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "set resize: [16, 20] in the data config" in err and not out.exists()


def test_class_names_against_the_models(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # the same names in another order would score each class as another: refused; other names: a warning
    data = _folder(tmp_path / "data")
    ckpt = _checkpoint(tmp_path / "run", data)
    with pytest.raises(ConfigError, match="classes in another order"):
        evaluate_checkpoint(ckpt, {**data, "classes": ["foreground", "background"]}, split="all", device="cpu")
    with caplog.at_level("WARNING", logger="unetfamily.engine.evaluate"):
        evaluate_checkpoint(ckpt, {**data, "classes": ["background", "polyp"]}, split="all", device="cpu")
    assert "are not named as the model's (background, foreground)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="unetfamily.engine.evaluate"):
        evaluate_checkpoint(ckpt, data, split="all", device="cpu")
    assert "not named as the model's" not in caplog.text
