"""NaN and Inf during training: a NaN in one deep-supervision head's loss terms, and Inf gradients.

Each is detected and reported with its step and the non-finite terms. With
``train.nan_policy: skip`` the step changes nothing: weights, BatchNorm statistics and optimizer
state after it equal those before it, bit for bit. With ``stop`` the run raises before any weight
changes and the last checkpoint on disk is the finite state of the step before.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import torch

import unetfamily.engine.run_setup as run_setup
from tests.reliability.conftest import tiny_config
from unetfamily.config import config_from_dict
from unetfamily.engine.checkpoint import load_checkpoint
from unetfamily.engine.train import TrainingError, TrainSummary, fit
from unetfamily.models.unet_plusplus import UNetPlusPlus

BAD_STEP = 2  # 0-based: the third step of four


def _poison(kind: str):  # noqa: ANN202
    """A UNetPlusPlus.forward that injects ``kind`` into training step BAD_STEP."""
    real = UNetPlusPlus.forward
    calls = []

    def forward(self: UNetPlusPlus, x: torch.Tensor):  # noqa: ANN202
        outputs = real(self, x)
        if self.training:
            calls.append(1)
            if len(calls) == BAD_STEP + 1 and kind == "nan_head":
                outputs[1] = outputs[1] * float("nan")  # the second deep-supervision head only
            elif len(calls) == BAD_STEP + 1 and kind == "inf_grad":
                outputs[0].register_hook(lambda grad: grad * float("inf"))
        return outputs

    return forward


def _state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    tensors = {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    for i, state in enumerate(optimizer.state.values()):
        tensors.update({f"optim.{i}.{k}": v.clone() for k, v in state.items()})
    return tensors


def _train(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, policy: str) -> tuple[TrainSummary, dict[int, dict]]:
    """4 steps of a deep-supervised UNet++ with the fault in step BAD_STEP; (summary, state after each step)."""
    config = tiny_config(tmp_path / "run", epochs=1, checkpoint_every=1, nan_policy=policy)
    config["model"] = {"name": "unet_plusplus", "kwargs": {"channels": [4, 8, 16], "deep_supervision": True}}
    monkeypatch.setattr(UNetPlusPlus, "forward", _poison(kind))
    states: dict[int, dict] = {}
    real_save = run_setup.save_checkpoint

    def spy(path, model, config, step=0, epoch=0, optimizer=None, extra=None):  # noqa: ANN001, ANN202
        states[step] = _state(model, optimizer)
        return real_save(path, model, config, step=step, epoch=epoch, optimizer=optimizer, extra=extra)

    monkeypatch.setattr(run_setup, "save_checkpoint", spy)
    return fit(config_from_dict(config)), states


REPORTS = {
    "nan_head": r"step 2: non-finite loss \(non-finite terms: head1/ce, head1/dice, head1, seg, total;",
    "inf_grad": r"step 2: non-finite gradient norm \(non-finite terms: grad_norm;",
}


@pytest.mark.parametrize("kind", list(REPORTS))
def test_skip_policy_leaves_the_state_of_the_step_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, kind: str, single_thread: None
) -> None:
    with caplog.at_level(logging.WARNING, logger="unetfamily"):
        summary, states = _train(tmp_path, monkeypatch, kind, "skip")
    assert summary.steps == 4 and summary.skipped_steps == 1
    reports = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert len(reports) == 1 and reports[0].endswith("step skipped (train.nan_policy='skip')")
    totals = [r.getMessage() for r in caplog.records if "steps so far were skipped" in r.getMessage()]
    assert totals and totals[-1].startswith("1 of 4 steps so far were skipped for non-finite values"), totals
    assert re.search(REPORTS[kind], reports[0]), reports[0]
    before, after = states[BAD_STEP], states[BAD_STEP + 1]  # states[k]: after k steps
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), "the skipped step changed the state"
    assert not all(torch.equal(after[k], states[4][k]) for k in after), "training must go on after the skip"
    for step, state in states.items():
        assert all(torch.isfinite(v.float()).all() for v in state.values()), step
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    assert saved.step == 4 and saved.extra["skipped_steps"] == 1
    assert all(torch.isfinite(v.float()).all() for v in saved.model_state.values())


@pytest.mark.parametrize("kind", list(REPORTS))
def test_stop_policy_raises_and_keeps_the_finite_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, single_thread: None
) -> None:
    with pytest.raises(TrainingError, match=REPORTS[kind]) as info:
        _train(tmp_path, monkeypatch, kind, "stop")
    assert "stopping before the weights are changed" in str(info.value)
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    assert saved.step == BAD_STEP
    assert all(torch.isfinite(v.float()).all() for v in saved.model_state.values())
