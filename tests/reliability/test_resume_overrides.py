"""``train --resume`` with overrides: the budget and run-time settings change, anything else is refused.

The resumed config is the run's saved config, then the ``--config`` file's keys, then the
overrides; so ``unetfamily train --resume output_dir=X train.epochs=3`` changes the epochs only.
Budget fields (train.epochs, max_steps, max_seconds, early_stop_patience) extend or shorten the
run (a run already at its budget says so); a change to the model, data, optimiser, schedule,
loss, seed, augmentation, amp, ... is refused naming each field with both values, and nothing in
the run folder changes.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from tests.reliability.conftest import tiny_config, write_config
from unetfamily.cli import main
from unetfamily.config import config_from_dict
from unetfamily.engine.checkpoint import load_checkpoint
from unetfamily.engine.train import TrainingError, fit


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory: pytest.TempPathFactory, single_thread: None) -> Path:
    """A run folder after 1 epoch of 4 steps (tiny_config with epochs=1); tests resume copies of it."""
    run = tmp_path_factory.mktemp("one_epoch") / "run"
    assert fit(config_from_dict(tiny_config(run, epochs=1))).steps == 4
    return run


@pytest.fixture
def run(one_epoch: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(one_epoch, copy)
    return copy


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _last(run: Path) -> int:
    return load_checkpoint(run / "checkpoints" / "last.safetensors").step


def test_overrides_alone_extend_the_saved_run(run: Path, capsys: pytest.CaptureFixture[str],
                                              caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="unetfamily"):
        assert main(["train", "--resume", f"output_dir={run}", "train.epochs=3"]) == 0
    assert "steps: 12" in capsys.readouterr().out and _last(run) == 12
    assert "resuming with train.epochs 1 -> 3" in caplog.text
    assert "cosine learning-rate schedule now spans 12 steps instead of 4: from step 4 on" in caplog.text
    history = load_checkpoint(run / "checkpoints" / "last.safetensors").extra["history"]
    assert [h["step"] for h in history] == [4, 8, 12]  # the first epoch's validation is kept


def test_config_file_and_overrides_on_top_of_the_saved_run(run: Path, tmp_path: Path) -> None:
    partial = write_config(tmp_path / "more.yaml", {"train": {"max_steps": 6, "checkpoint_every": 1}})
    assert main(["train", "--config", str(partial), "--resume", f"output_dir={run}", "train.epochs=5"]) == 0
    assert _last(run) == 6  # max_steps from the file; epochs=5 from the override; model etc. from the run
    saved = load_checkpoint(run / "checkpoints" / "last.safetensors").config
    assert saved["train"]["max_steps"] == 6 and saved["train"]["epochs"] == 5 and saved["optim"]["lr"] == 0.01


def test_the_full_original_config_resumes_unchanged(run: Path, tmp_path: Path) -> None:
    config = tiny_config(run, epochs=2, device="cpu", eval_every=1, tensorboard=True, compile=False)
    config["loader"]["val_batch_size"] = 8
    config = write_config(tmp_path / "c.yaml", config)
    assert main(["train", "--config", str(config), "--resume"]) == 0
    assert _last(run) == 8 and (run / "tensorboard").is_dir()


def test_a_run_at_its_budget_says_so(run: Path, caplog: pytest.LogCaptureFixture) -> None:
    before = load_checkpoint(run / "checkpoints" / "last.safetensors").model_state
    with caplog.at_level(logging.WARNING, logger="unetfamily"):
        assert main(["train", "--resume", f"output_dir={run}"]) == 0
        assert main(["train", "--resume", f"output_dir={run}", "train.max_steps=2"]) == 0
    assert f"{run} is already at step 4 of 4; nothing to train" in caplog.text
    assert f"{run} is already at step 4 of 2; nothing to train" in caplog.text
    after = load_checkpoint(run / "checkpoints" / "last.safetensors")
    assert after.step == 4 and all((after.model_state[k] == v).all() for k, v in before.items())


REFUSED = {  # override -> (field, saved value, new value) as the error shows them
    "optim.lr=0.02": ("optim.lr", "0.01", "0.02"),
    "model.kwargs.channels=[8,16]": ("model.kwargs.channels", "[4, 8]", "[8, 16]"),
    "model.name=unet_plusplus": ("model.name", "'unet'", "'unet_plusplus'"),
    "data.size=64": ("data.size", "32", "64"),
    "data.augment=none": ("data.augment", "'light'", "'none'"),
    "loader.batch_size=2": ("loader.batch_size", "4", "2"),
    "loss.name=ce": ("loss.name", "'dice_ce'", "'ce'"),
    "schedule.name=poly": ("schedule.name", "'cosine'", "'poly'"),
    "train.seed=1": ("train.seed", "0", "1"),
    "train.amp=bf16": ("train.amp", "'auto'", "'bf16'"),
    "train.grad_clip=null": ("train.grad_clip", "1.0", "None"),
    "model.kwargs.num_classes=3": ("model.kwargs.num_classes", "1", "3"),
}


@pytest.mark.parametrize("override", list(REFUSED))
def test_other_changes_are_refused_and_nothing_is_written(run: Path, capsys: pytest.CaptureFixture[str],
                                                          override: str) -> None:
    before = _snapshot(run)
    assert main(["train", "--resume", f"output_dir={run}", "train.epochs=3", override]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    field, old, new = REFUSED[override]
    assert len(errors) == 1 and f"the run in {run} was trained with other settings" in errors[0]
    assert f"{field} {old} -> {new}" in errors[0] and "train.epochs 1 -> 3" not in errors[0]  # a budget: allowed
    assert "choose a new output_dir" in errors[0]
    assert _snapshot(run) == before


def test_several_changes_are_all_named(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = write_config(tmp_path / "other.yaml", {"optim": {"lr": 0.1, "name": "sgd"}, "train": {"seed": 7}})
    assert main(["train", "--config", str(other), "--resume", f"output_dir={run}"]) == 2
    err = capsys.readouterr().err
    assert "optim.lr 0.01 -> 0.1; optim.name 'adamw' -> 'sgd'; train.seed 0 -> 7." in err


def test_library_resume_compares_the_config_given(run: Path) -> None:
    config = tiny_config(run, epochs=2)
    with pytest.raises(TrainingError, match=r"optim\.weight_decay 0\.0001 -> 0\.5"):
        fit(config_from_dict({**config, "optim": {"lr": 0.01, "weight_decay": 0.5}}), resume=True)
    assert fit(config_from_dict(config), resume=True).steps == 8
