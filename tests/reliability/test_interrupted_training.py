"""Interrupted training: SIGKILL at four points, SIGINT and SIGTERM.

Every interrupted run leaves a ``last`` checkpoint that loads, and ``unetfamily train --resume``
ends with the same weights and the same validation history as a run that was never interrupted
(one CPU thread in every process, so the same steps compute the same numbers). The faults are
injected from outside the library by ``faulty_cli.py``.
"""
from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.reliability.conftest import assert_same_tensors, finish, start_faulty, tiny_config, wait_for, write_config
from unetfamily.cli import main
from unetfamily.cli._common import EXIT_INTERRUPTED
from unetfamily.config import config_from_dict
from unetfamily.engine.checkpoint import Checkpoint, load_checkpoint
from unetfamily.engine.train import fit

STEPS = 12  # 3 epochs of 4 steps; `last` is written after steps 2, 6, 10 and at the end of each epoch


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, single_thread: None) -> Checkpoint:
    """The last checkpoint of the same config, trained without interruption."""
    run = tmp_path_factory.mktemp("reference") / "run"
    assert fit(config_from_dict(tiny_config(run))).steps == STEPS
    return load_checkpoint(run / "checkpoints" / "last.safetensors")


def _resume_matches(config: Path, run: Path, reference: Checkpoint) -> None:
    assert main(["train", "--config", str(config), "--resume"]) == 0
    resumed = load_checkpoint(run / "checkpoints" / "last.safetensors")
    assert resumed.step == STEPS
    assert_same_tensors(resumed.model_state, reference.model_state)
    assert [h["step"] for h in resumed.extra["history"]] == [4, 8, 12]
    for got, want in zip(resumed.extra["history"], reference.extra["history"]):
        assert got.keys() == want.keys()
        for key in got:  # a score that was NaN is saved as null (strict JSON)
            assert (got[key] is None) == (want[key] is None), key
            assert want[key] is None or got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6), key
    assert resumed.extra["best"] == pytest.approx(reference.extra["best"], rel=1e-5, abs=1e-6)
    assert resumed.extra["skipped_steps"] == 0


# fault -> step of the checkpoint the kill leaves behind
KILLS = {
    "between_steps": ("between:7", 6),  # step 7 not begun; `last` is from step 6
    "inside_a_step": ("step:7", 6),  # forward pass and loss of step 7 done, no update yet
    "inside_a_checkpoint_write": ("save:3", 4),  # half of step 6's `last` in its temporary file
    "during_validation": ("eval:2", 6),  # epoch 2's metrics not yet in any checkpoint
}


@pytest.mark.parametrize("point", list(KILLS))
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path: Path, reference: Checkpoint, point: str) -> None:
    fault, saved_step = KILLS[point]
    run, marker = tmp_path / "run", tmp_path / "reached"
    config = write_config(tmp_path / "c.yaml", tiny_config(run))
    proc = start_faulty(["train", "--config", str(config)], fault, marker)
    wait_for(marker, proc)
    proc.kill()
    finish(proc, 60)
    assert proc.returncode == -9
    assert load_checkpoint(run / "checkpoints" / "last.safetensors").step == saved_step
    # A kill inside a write leaves its hidden temporary file (.last.safetensors.tmp-<pid>), never read.
    leftovers = [p.name for p in (run / "checkpoints").glob(".*")]
    assert len(leftovers) == (point == "inside_a_checkpoint_write"), leftovers
    _resume_matches(config, run, reference)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_cleanly_after_saving(tmp_path: Path, reference: Checkpoint, sig: signal.Signals) -> None:
    run, marker, release = tmp_path / "run", tmp_path / "reached", tmp_path / "release"
    config = write_config(tmp_path / "c.yaml", tiny_config(run))
    proc = start_faulty(["train", "--config", str(config)], "between:7", marker, release)
    wait_for(marker, proc)
    proc.send_signal(sig)
    release.touch()  # step 7 runs to its end, then the run stops
    _, err = finish(proc, 120)
    assert proc.returncode == EXIT_INTERRUPTED == 130, err[-3000:]
    assert "stopped by signal at step 7; checkpoint saved, continue with --resume" in err
    assert load_checkpoint(run / "checkpoints" / "last.safetensors").step == 7
    _resume_matches(config, run, reference)
