"""A checkpoint records the images it trained on, and ``eval`` names those among the cases it scores.

The split is a function of the data config: the same fractions written in another key order (or another seed, list
file, or changed files) give a ``test`` split that holds training images, and ``eval`` scored them silently.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from unetfamily.cli import main
from unetfamily.data.splits import random_split
from unetfamily.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from unetfamily.engine.evaluate import evaluate_checkpoint
from unetfamily.engine.trained_cases import KEY_CHARS, recorded_cases

FRACTIONS = {"train": 0.5, "val": 0.25, "test": 0.25}
NAMES = [f"c{i:02d}" for i in range(12)]


def _images(root: Path, names: list[str], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name in names:
        mask = np.zeros((32, 32), np.uint8)
        mask[8:20, 8:20] = 1
        Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(root / "images" / f"{name}.png")
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    return root


def _data(root: Path, fractions: dict[str, float]) -> dict:
    return {"type": "folder", "root": str(root), "splits": {"fractions": fractions, "seed": 0}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data folder, run folder): a 1-step U-Net trained on the train half of 12 random images."""
    tmp = tmp_path_factory.mktemp("trained")
    root = _images(tmp / "data", NAMES, seed=0)
    cfg = {"model": {"name": "unet", "kwargs": {"channels": [4, 8]}}, "data": _data(root, FRACTIONS),
           "loader": {"batch_size": 2}, "train": {"max_steps": 1, "progress": False, "loggers": []},
           "output_dir": str(tmp / "run")}
    (tmp / "c.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))  # the fractions in their order
    assert main(["train", "--config", str(tmp / "c.yaml")]) == 0
    return root, tmp / "run"


def test_the_checkpoint_records_each_training_image_once(trained: tuple[Path, Path]) -> None:
    cases = load_checkpoint(trained[1]).extra["train_cases"]
    assert len(cases) == len(random_split(NAMES, FRACTIONS)["train"]) == 6
    assert cases == sorted(cases) and all(len(c) == KEY_CHARS for c in cases)


def test_eval_on_the_runs_own_split_finds_no_training_image(trained: tuple[Path, Path],
                                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        result = evaluate_checkpoint(trained[1], split="test")
    assert result["trained_on"] == [] and "trained on" not in caplog.text


def test_fractions_in_another_key_order_name_the_training_images_eval_scores(
        trained: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    reordered = {"test": 0.25, "val": 0.25, "train": 0.5}
    leaked = sorted(set(random_split(NAMES, reordered)["test"]) & set(random_split(NAMES, FRACTIONS)["train"]))
    assert leaked  # the premise: this key order puts training images in the test split
    out = tmp_path / "eval.json"
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(_data(trained[0], reordered), sort_keys=False))
    with caplog.at_level(logging.WARNING):
        code = main(["eval", "--checkpoint", str(trained[1]), "--data", str(tmp_path / "b.yaml"), "--split", "test",
                     "--out", str(out)])
    assert code == 0
    assert json.loads(out.read_text())["trained_on"] == leaked
    assert f"{len(leaked)} of the 3 cases of split 'test' (the data of --data) are images the model trained on" \
        in caplog.text and repr(leaked[0]) in caplog.text


def test_identity_is_the_pixels_not_the_name(trained: tuple[Path, Path], tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """An external set whose files share the training files' names is not taken for them; a training image copied
    under another name is found."""
    train_names = random_split(NAMES, FRACTIONS)["train"]
    other = _images(tmp_path / "other", NAMES, seed=1)  # the same names, other pixels
    with caplog.at_level(logging.WARNING):
        result = evaluate_checkpoint(trained[1], _data(other, {"test": 1.0}), split="test")
    assert result["trained_on"] == [] and "trained on" not in caplog.text
    shutil.copy(trained[0] / "images" / f"{train_names[0]}.png", other / "images" / "renamed.png")
    shutil.copy(trained[0] / "masks" / f"{train_names[0]}.png", other / "masks" / "renamed.png")
    result = evaluate_checkpoint(trained[1], _data(other, {"test": 1.0}), split="test")
    assert result["trained_on"] == ["renamed"]


def test_eval_on_the_training_split_says_nothing(trained: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        result = evaluate_checkpoint(trained[1], split="train")
    assert len(result["trained_on"]) == 6 and "trained on" not in caplog.text


def test_synthetic_data_and_old_checkpoints_record_nothing(tmp_path: Path, tiny_data: Path) -> None:
    cfg = {"model": {"name": "unet", "kwargs": {"channels": [4, 8]}}, "data": yaml.safe_load(tiny_data.read_text()),
           "train": {"max_steps": 1, "progress": False, "loggers": []}, "output_dir": str(tmp_path / "run")}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(tmp_path / "c.yaml")]) == 0
    assert load_checkpoint(tmp_path / "run").extra["train_cases"] is None
    assert evaluate_checkpoint(tmp_path / "run", split="test")["trained_on"] is None


def test_a_resumed_run_keeps_what_it_trained_on_before() -> None:
    earlier = {"train_cases": ["0" * KEY_CHARS]}
    keys = recorded_cases({"train": [("a", "f" * 32)]}, earlier=earlier)
    assert keys == ["0" * KEY_CHARS, "f" * KEY_CHARS]
    assert recorded_cases({"val": [("a", "f" * 32)]}) is None


@pytest.mark.parametrize("cases", ["abc", ["xyz"], [1], ["0" * (KEY_CHARS + 1)]])
def test_a_damaged_record_is_refused_by_name(tmp_path: Path, cases: object) -> None:
    import torch

    path = tmp_path / "c.safetensors"
    save_checkpoint(path, torch.nn.Conv2d(1, 1, 1), {}, step=0, epoch=0, extra={"train_cases": cases})
    with pytest.raises(CheckpointError, match="train_cases"):
        load_checkpoint(path)
