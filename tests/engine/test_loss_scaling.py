"""fp16 loss scaling (``train.amp: fp16``): one GradScaler per run, kept in its checkpoints.

fp16 needs CUDA, so these tests build a CPU run and switch its autocast to fp16 by hand (CPU
autocast and ``GradScaler("cpu")`` do fp16 too): what is tested is the loop's bookkeeping, which
is the same on every device.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from unetfamily.config import config_from_dict
from unetfamily.engine.checkpoint import load_checkpoint
from unetfamily.engine.loop import StopFlag, train_one_epoch
from unetfamily.engine.run_setup import TrainRun, setup_run


def _fp16_run(tmp_path: Path, resume: bool = False) -> TrainRun:
    cfg = {"model": {"name": "unet", "kwargs": {"channels": [2, 4]}}, "loader": {"batch_size": 2},
           "data": {"type": "synthetic", "num_samples": 6, "size": 32}, "optim": {"lr": 1e-3},
           "train": {"epochs": 4, "progress": False, "loggers": [], "amp": "none"},
           "output_dir": str(tmp_path / "run")}
    run = setup_run(config_from_dict(cfg), resume=resume)
    run.amp = "fp16"
    return run


def test_the_scale_carries_over_epochs_and_into_the_checkpoint(tmp_path: Path) -> None:
    run = _fp16_run(tmp_path)
    train_one_epoch(run, 0, StopFlag())
    scaler = run.scaler
    assert isinstance(scaler, torch.amp.GradScaler) and scaler.is_enabled()
    scaler.update(new_scale=8.0)  # as after a few overflows
    train_one_epoch(run, 1, StopFlag())
    # the same scaler, not a fresh one back at 2**16 that skips the epoch's first steps again
    assert run.scaler is scaler and scaler.get_scale() == 8.0
    run.save(run.last_path, 2)
    saved = load_checkpoint(run.last_path).extra["loss_scale"]
    assert saved["scale"] == 8.0 and saved["_growth_tracker"] == scaler.state_dict()["_growth_tracker"]


def test_a_resumed_run_starts_at_the_saved_scale(tmp_path: Path) -> None:
    run = _fp16_run(tmp_path)
    train_one_epoch(run, 0, StopFlag())
    run.scaler.update(new_scale=4.0)
    run.save(run.last_path, 1)
    run.close()
    resumed = _fp16_run(tmp_path, resume=True)
    assert resumed.state.loss_scale is not None and resumed.state.loss_scale["scale"] == 4.0
    train_one_epoch(resumed, 1, StopFlag())
    assert resumed.scaler.get_scale() == 4.0


def test_an_overflowing_step_is_skipped_and_said(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = _fp16_run(tmp_path)
    run.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 126)  # the scaled loss overflows fp32's range
    before = [p.detach().clone() for p in run.model.parameters()]
    with caplog.at_level(logging.INFO, logger="unetfamily.engine.loop"):
        train_one_epoch(run, 0, StopFlag())
    skipped = [r for r in caplog.records if "fp16 gradients overflowed, step skipped; loss scale" in r.getMessage()]
    assert len(skipped) == 3 and run.scaler.get_scale() == 2.0 ** 123  # each of the epoch's 3 steps, halving it
    assert all(torch.equal(a, p) for a, p in zip(before, run.model.parameters()))  # and none changed a weight


def test_runs_without_fp16_keep_no_scale(tmp_path: Path) -> None:
    run = _fp16_run(tmp_path)
    run.amp = "none"
    train_one_epoch(run, 0, StopFlag())
    run.save(run.last_path, 1)
    assert run.scaler is None and "loss_scale" not in load_checkpoint(run.last_path).extra
