"""Data that defines no splits (a plain folder of images/ and masks/, the layout `compare --data my_dataset/`
documents): every case is a training case, held out by cross-validation; data with nothing to segment is refused."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from unetfamily.cli import main
from unetfamily.data import UnknownSplitError, build_training_split
from unetfamily.plan import Budget, FamilyFit

ARGS = ["compare", "--models", "unet", "--seeds", "1", "--steps", "2", "--size", "32", "--batch-size", "4",
        "--base-width", "4", "--no-costs"]


def _folder(root: Path, cases: int = 10, foreground: bool = True) -> Path:
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i in range(cases):
        mask = np.zeros((32, 32), np.uint8)
        mask[8:20, 6:18] = 1 if foreground and i % 3 else 0
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / "images" / f"c{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"c{i}.png")
    return root


def test_a_folder_without_splits_trains_on_every_case(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d")
    split, dataset = build_training_split({"type": "folder", "root": str(root)})
    assert (split, len(dataset)) == ("all", 10)
    split, dataset = build_training_split({"type": "folder", "root": str(root),
                                           "splits": {"fractions": {"train": 0.8, "val": 0.2}, "seed": 0}})
    assert (split, len(dataset)) == ("train", 8)
    (tmp_path / "val.txt").write_text("c0\nc1\n")  # a val split but no train split: not taken for 'no splits'
    with pytest.raises(UnknownSplitError, match="'train'"):
        build_training_split({"type": "folder", "root": str(root), "splits": {"val": str(tmp_path / "val.txt")}})


def test_compare_cross_validates_a_folder_without_splits(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root, out = _folder(tmp_path / "d"), tmp_path / "out"
    assert main([*ARGS, "--data", str(root), "--folds", "2", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["protocol"]["splits"] == {"all": 10}
    cases = sorted(p["name"] for r in results["runs"] for p in r["per_image"])
    assert cases == sorted(f"c{i}" for i in range(10))  # every case held out exactly once
    from unetfamily.engine.checkpoint import load_checkpoint
    from unetfamily.engine.predict import Predictor
    from unetfamily.engine.pretrained import checkpoint_card

    run = out / "runs" / "unet" / "seed0" / "fold0"  # --size 32 lives in the cv_fold's base: predict resizes alike
    assert Predictor.from_checkpoint(run, device="cpu").resize == (32, 32)
    assert checkpoint_card(load_checkpoint(run / "checkpoints" / "last.safetensors"), run).resize == [32, 32]
    capsys.readouterr()
    assert main([*ARGS, "--data", str(root), "--folds", "1", "--out", str(tmp_path / "one")]) == 2
    error = capsys.readouterr().err
    assert "neither a test nor a val split" in error and "--folds K" in error


def test_data_with_nothing_to_segment_is_refused_before_training(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    root, out = _folder(tmp_path / "d", foreground=False), tmp_path / "out"
    assert main([*ARGS, "--data", str(root), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "none of the 10 masks (all) holds a class other than 0" in error and "mask_encoding" in error and str(root) in error
    assert not (out / "runs").exists()
    # with the default plan: refused before the plan measures the models
    assert main(["compare", "--models", "unet", "--data", str(root), "--out", str(out), "--minutes", "1"]) == 2
    assert "none of the 10 masks (all) holds a class other than 0" in capsys.readouterr().err
    assert not (out / "plan.yaml").exists()


def test_a_plan_reads_every_case_of_a_folder_without_splits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from unetfamily.plan import make, rules

    root = _folder(tmp_path / "d")
    monkeypatch.setattr(make, "probe", lambda name, *a, **k: name)
    monkeypatch.setattr(make, "affordable_patch", lambda cost, *a, **k: (32, 64))
    monkeypatch.setattr(make.rules, "scale", lambda fp, patch: rules.Choice(1.0, "native"))
    monkeypatch.setattr(make, "fit_family", lambda mid, name, *a, **k: FamilyFit(
        model=name, kwargs={}, patch=[32, 32], window=[32, 32], batch_size=2, epochs=1, steps_per_epoch=1,
        step_seconds=0.1, validation_seconds=0.1, peak_memory_mb=1.0, reason="stub"))
    plan = make.make_plan({"type": "folder", "root": str(root)}, [("unet", "unet", {})], budget=Budget(steps=4))
    assert plan.fingerprint["cases"] == 10


def test_a_folder_is_read_with_the_config_or_class_names_written_beside_it(tmp_path: Path) -> None:
    from unetfamily.data.convert import convert_dataset
    from unetfamily.plan.make import data_spec

    root = _folder(tmp_path / "labelme")
    (root / "classes.txt").write_text("_background_\npolyp\n")  # as `dataset labelme` writes it
    config, name = data_spec(str(root))
    assert name == "labelme" and list(build_training_split(config)[1].info.classes) == ["_background_", "polyp"]
    converted = tmp_path / "plain"  # `dataset convert` lays out DIR/<split>/images and names them in DIR/data.yaml
    convert_dataset({"type": "synthetic", "size": 32, "num_samples": {"train": 4, "val": 2}}, converted)
    split, dataset = build_training_split(data_spec(str(converted))[0])
    assert (split, len(dataset)) == ("train", 4)


def test_the_dataset_commands_take_a_folder_too(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = _folder(tmp_path / "d")
    assert main(["dataset", "check", str(root)]) == 0
    assert "samples: all 10" in capsys.readouterr().out
    assert main(["dataset", "info", str(root), "--split", "all"]) == 0


def test_too_few_cases_for_the_folds_are_refused_before_the_plan(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root, out = _folder(tmp_path / "d", cases=3), tmp_path / "out"
    args = ["compare", "--models", "unet", "--seeds", "1", "--steps", "1", "--base-width", "4", "--no-costs",
            "--data", str(root), "--out", str(out)]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "5-fold cross-validation (the default for data without a test split)" in error
    assert "use --folds 3 or fewer" in error and not out.exists()  # refused before the plan wrote anything


def test_a_plan_left_by_a_failed_comparison_does_not_block_the_next(tmp_path: Path) -> None:
    root, out = _folder(tmp_path / "d"), tmp_path / "out"
    out.mkdir()
    (out / "plan.yaml").write_text("left by a comparison that failed after planning\n")
    (out / "plan_fingerprint.json").write_text("{}")
    assert main([*ARGS, "--data", str(root), "--folds", "2", "--out", str(out)]) == 0
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert main([*ARGS, "--data", str(root), "--folds", "2", "--out", str(tmp_path / "other")]) == 2


def test_a_pool_of_images_of_several_sizes_is_checked_as_held_out_cases_under_a_plan(tmp_path: Path) -> None:
    from unetfamily.compare.config import CompareConfig
    from unetfamily.compare.data import load_comparison_data

    root = _folder(tmp_path / "d")
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(root / "images" / "c0.png")  # one case of another size
    Image.fromarray(np.ones((40, 48), np.uint8)).save(root / "masks" / "c0.png")
    data = load_comparison_data(CompareConfig(data=str(root), models=["unet"], folds=2))  # a plan crops the batches
    assert data.splits == {"all": 10} and len(data.folds) == 2
    with pytest.raises(Exception, match="cannot be stacked into batches of 8"):  # without a plan, --size is needed
        load_comparison_data(CompareConfig(data=str(root), models=["unet"], folds=2, plan="none"))


def test_the_same_folder_named_by_another_path_is_the_same_data(tmp_path: Path, spy_fit: list[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    root, out = _folder(tmp_path / "d"), tmp_path / "out"
    assert main([*ARGS, "--data", str(root), "--folds", "2", "--out", str(out)]) == 0
    trained = len(spy_fit)
    monkeypatch.chdir(tmp_path)
    assert main([*ARGS, "--data", "d", "--folds", "2", "--out", "out"]) == 0  # relative, from another folder
    assert len(spy_fit) == trained  # reused: where the data lies is not what it is
    config = yaml.safe_load((out / "runs" / "unet" / "seed0" / "fold0" / "config.yaml").read_text())
    assert config["data"]["base"]["root"] == str(root.resolve())  # the run reads its data from any folder
