"""Audit of the data's ``background`` key along every path a user takes: HD95 of a binary task whose class 0 is
scored, a dataset's own ``has_background``, a ``cv_fold`` config and its base declaring the key, ``eval`` of data
that scores class 0 otherwise than the model's validation did, and a run resumed across the change.

Each test failed before its fix (checked by undoing the fix once).
"""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.conftest import FixedLabels
from unetfamily.cli import main
from unetfamily.data import DataConfigError, build_dataset


def test_hd95_of_a_binary_task_whose_class_0_is_scored_counts_missed_and_hallucinated_objects() -> None:
    """HD95 measures class 1 alone, so a missed object is as far off whether or not class 0 is scored; it was NaN
    (left out of the mean, and 'no model has a finite hd95 score' with --primary hd95) under background: false."""
    from unetfamily.compare.run import _case
    from unetfamily.engine.evaluate import evaluate

    masks = torch.zeros(3, 16, 16, dtype=torch.long)
    masks[1, 4:8, 4:8] = 1
    masks[2, 2:10, 2:10] = 1
    pred = torch.zeros_like(masks)
    pred[0, 2:6, 2:6] = 1  # image 0: an object hallucinated; image 1: its object missed; image 2: found
    pred[2, 2:10, 3:10] = 1
    loader = [{"image": torch.zeros(3, 1, 16, 16), "mask": masks, "name": ["a", "b", "c"]}]
    cases = {}
    for scored in (False, True):
        result = evaluate(FixedLabels(pred, 2), loader, "cpu", 2, per_image=True, hd95=True, include_background=scored)
        cases[scored] = [_case(row)["hd95"] for row in result["per_image"]]
    diagonal = math.hypot(16, 16)
    assert cases[False][:2] == [diagonal, diagonal]
    assert cases[True] == cases[False]


def test_a_dataset_says_whether_its_class_0_is_a_background(tmp_path: Path) -> None:
    """``SegmentationDataset.has_background`` read attributes a dataset does not have (AttributeError)."""
    for declared, expected in ((None, True), (False, False)):
        spec = {"type": "synthetic", "num_classes": 4, "size": 32, "num_samples": 2}
        ds = build_dataset(spec if declared is None else {**spec, "background": declared}, "train")
        assert ds.has_background is ds.info.has_background is expected


def _fold(base: dict, background: object = None) -> dict:
    names = build_dataset(base, "train").names
    config = {"type": "cv_fold", "base": base, "pool": ["train"], "fold": 0,
              "assignment": {n: i % 2 for i, n in enumerate(names)}}
    return config if background is None else {**config, "background": background}


def test_a_cv_fold_background_that_contradicts_its_base_is_refused() -> None:
    """The outer key silently won over the base's: which one the folds scored by was a guess."""
    base = {"type": "synthetic", "num_classes": 4, "size": 32, "num_samples": 4}
    with pytest.raises(DataConfigError, match="contradicts the base's background=True"):
        build_dataset(_fold({**base, "background": True}, False), "val")
    with pytest.raises(DataConfigError, match="contradicts the base's background=False"):
        build_dataset(_fold({**base, "background": False}, True), "train")
    assert build_dataset(_fold(base, False), "val").info.has_background is False  # moved into the base
    assert build_dataset(_fold({**base, "background": False}), "val").info.has_background is False
    assert build_dataset(_fold({**base, "background": "auto"}, False), "val").info.has_background is False


def _train(tmp_path: Path, background: object, epochs: int = 1) -> Path:
    data = {"type": "synthetic", "num_classes": 4, "size": 32, "num_samples": {"train": 4, "val": 4}}
    if background is not None:
        data["background"] = background
    cfg = {"model": {"name": "unet", "kwargs": {"channels": [4, 8]}}, "data": data, "loader": {"batch_size": 4},
           "train": {"epochs": epochs, "progress": False, "loggers": []}, "output_dir": str(tmp_path / "run")}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(path)]) == 0
    return path


def _forget_background(checkpoint: Path) -> None:
    """Make ``checkpoint`` look written before the key existed: its ``extra`` without ``background``."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(checkpoint), framework="pt") as f:
        meta = dict(f.metadata())
    extra = json.loads(meta["extra"])
    del extra["background"]
    meta["extra"] = json.dumps(extra)
    tensors = load_file(str(checkpoint))
    save_file(tensors, str(checkpoint) + ".tmp", metadata=meta)
    os.replace(str(checkpoint) + ".tmp", checkpoint)


def test_eval_says_when_the_data_scores_class_0_otherwise_than_the_validation_did(tmp_path: Path, caplog) -> None:
    """eval of data declaring the other background (or of a checkpoint from before the key, whose validation left
    class 0 out) gave a dice not comparable with the run's validation scores without a word."""
    _train(tmp_path, None)  # class 0 'background': left out
    data = tmp_path / "data.yaml"
    data.write_text(yaml.safe_dump({"type": "synthetic", "num_classes": 4, "size": 32,
                                    "num_samples": {"train": 4, "val": 4}, "background": False}))
    with caplog.at_level(logging.WARNING, "unetfamily"):
        assert main(["eval", "--checkpoint", str(tmp_path / "run"), "--data", str(data),
                     "--out", str(tmp_path / "e1.json")]) == 0
    assert "not comparable with the run's validation scores" in caplog.text
    assert "background: true" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, "unetfamily"):  # the same scoring: no word
        assert main(["eval", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "e2.json")]) == 0
    assert "not comparable" not in caplog.text


def test_an_old_checkpoint_of_content_data_is_said_to_be_scored_otherwise(tmp_path: Path, caplog) -> None:
    _train(tmp_path, False)
    for name in ("last", "best"):  # a run from before the key
        _forget_background(tmp_path / "run" / "checkpoints" / f"{name}.safetensors")
    with caplog.at_level(logging.WARNING, "unetfamily"):
        assert main(["eval", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "e.json")]) == 0
    assert "validation left class 0 out of dice and iou" in caplog.text


def test_a_run_resumed_across_the_change_validates_as_it_began(tmp_path: Path, caplog) -> None:
    """A run whose validations left class 0 out, resumed where the data now scores it, switched scoring mid-run:
    its best checkpoint was chosen by comparing a mean over classes 1..K-1 with a mean over all K."""
    from unetfamily.engine.checkpoint import load_checkpoint

    config = _train(tmp_path, False)
    last = tmp_path / "run" / "checkpoints" / "last.safetensors"
    _forget_background(last)
    with caplog.at_level(logging.WARNING, "unetfamily"):
        assert main(["train", "--config", str(config), "--resume", "train.epochs=2"]) == 0
    assert "goes on scoring as it began" in caplog.text
    ckpt = load_checkpoint(last)
    assert ckpt.extra["background"] is True
    out = tmp_path / "e.json"
    assert main(["eval", "--checkpoint", str(tmp_path / "run"), "--out", str(out)]) == 0
    per_class = json.loads(out.read_text())["per_class_dice"]
    left_out = [v for v in per_class[1:] if v is not None and np.isfinite(v)]
    assert ckpt.extra["history"][-1]["dice"] == pytest.approx(sum(left_out) / len(left_out))


def test_a_fingerprint_read_from_its_cache_takes_the_datas_background_now(tmp_path: Path) -> None:
    """The cache is keyed by the data's pixels (compare --plan auto): a fingerprint cached under another
    declaration gave the plan the old content classes."""
    from unetfamily.data.fingerprint import load_or_compute_fingerprint

    spec = {"type": "synthetic", "num_classes": 4, "size": 32, "num_samples": 4}
    cache = tmp_path / "fp.json"
    for declared in (False, True):
        fingerprint = load_or_compute_fingerprint(build_dataset({**spec, "background": declared}, "train"), cache, "k")
        assert fingerprint.background is declared


def test_compare_plan_auto_does_not_reuse_a_plan_made_for_another_background(tmp_path: Path) -> None:
    """The saved plan (reused when the pixels are the same) carried the data config it was made for, and the runs
    trained and were scored on it: a changed background was ignored without a word, the old runs reused."""
    data = tmp_path / "data.yaml"
    spec = {"type": "synthetic", "num_classes": 4, "size": 32, "num_samples": {"train": 6, "val": 2, "test": 2}}
    args = ["compare", "--data", str(data), "--models", "unet", "--seeds", "1", "--steps", "2", "--no-costs",
            "--base-width", "4", "--folds", "1", "--plan", "auto", "--out", str(tmp_path / "out")]
    data.write_text(yaml.safe_dump({**spec, "background": False}))
    assert main(args) == 0
    data.write_text(yaml.safe_dump({**spec, "background": True}))
    assert main(args) == 2  # the runs scored class 0: stale, not reused
    assert json.loads((tmp_path / "out" / "results.json").read_text())["protocol"]["background"] is False
    assert main([*args, "--rerun"]) == 0
    assert json.loads((tmp_path / "out" / "results.json").read_text())["protocol"]["background"] is True
