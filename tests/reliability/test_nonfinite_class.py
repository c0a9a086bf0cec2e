"""Non-finite values and NaN scores are never silently wrong (issue 13).

Training: a step is non-finite when its loss, a buffer its forward pass updated (BatchNorm
statistics can overflow while the loss stays finite), its gradient norm or the weights after its
update are not finite. ``nan_policy='stop'`` raises naming the step and the tensors;
``'skip'`` leaves weights, buffers and optimizer state exactly as they were, counts the step,
says so, and fails the run once more than ``train.max_skipped_fraction`` of its steps were
skipped. Checkpoints never hold a non-finite number: ``save_checkpoint`` refuses to write one and
``load_checkpoint`` (resume, eval, predict, export) refuses to read one, as it refuses damaged
counters.

Scores: NaN is worse than every number wherever scores are compared: the best checkpoint, early
stopping, ``train.monitor`` in its own direction, and compare's rankings, tests, bold bests and
learning-rate pick.
"""
from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import unetfamily.engine.run_setup as run_setup
import unetfamily.engine.train as train_mod
from tests.compare.conftest import case_results
from tests.reliability.conftest import tiny_config, write_config
from unetfamily import create_model
from unetfamily.cli import main
from unetfamily.compare.evidence import case_scores
from unetfamily.compare.lr_search import pick_rate
from unetfamily.compare.report_tables import _Column, _table
from unetfamily.compare.stats import bootstrap_ranks, holm, paired_tests
from unetfamily.compare.summary import summarize
from unetfamily.config import ConfigError, config_from_dict
from unetfamily.engine.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from unetfamily.engine.loop import MIN_STEPS_FOR_FRACTION
from unetfamily.engine.score_order import best_index, is_better, lower_is_better, order_key
from unetfamily.engine.train import TrainingError, fit
from unetfamily.losses import SegmentationCriterion

UNet = type(create_model("unet", channels=[4, 8]))
BAD_STEP = 2  # 0-based, the third of four steps
NAN = float("nan")


# ---------------------------------------------------------------- training: non-finite steps

def _state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    tensors = {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    for i, state in enumerate(optimizer.state.values()):
        tensors.update({f"optim.{i}.{k}": v.clone() for k, v in state.items()})
    return tensors


def _spy_states(monkeypatch: pytest.MonkeyPatch) -> dict[int, dict[str, torch.Tensor]]:
    """step -> model and optimizer state at every checkpoint save (checkpoint_every=1: after every step)."""
    states: dict[int, dict[str, torch.Tensor]] = {}
    real = run_setup.save_checkpoint

    def spy(path, model, config, step=0, epoch=0, optimizer=None, extra=None):  # noqa: ANN001, ANN202
        states[step] = _state(model, optimizer)
        return real(path, model, config, step=step, epoch=epoch, optimizer=optimizer, extra=extra)

    monkeypatch.setattr(run_setup, "save_checkpoint", spy)
    return states


def _huge_input(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training step BAD_STEP sees inputs x 1e25: a BatchNorm variance overflows to inf, the loss stays finite."""
    real, calls = UNet.forward, []

    def forward(self, x):  # noqa: ANN001, ANN202
        if self.training:
            calls.append(1)
            if len(calls) == BAD_STEP + 1:
                x = x * 1e25
        return real(self, x)

    monkeypatch.setattr(UNet, "forward", forward)


def _inf_update(monkeypatch: pytest.MonkeyPatch) -> None:
    """The optimiser update of step BAD_STEP leaves the first weight with an inf (loss and gradients finite)."""
    real, calls = torch.optim.AdamW.step, []

    def step(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        out = real(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == BAD_STEP + 1:
            with torch.no_grad():
                self.param_groups[0]["params"][0].view(-1)[0] = float("inf")
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", step)


FAULTS = {  # fault -> (injector, what the report names)
    "bn_overflow": (_huge_input, r"step 2: non-finite buffers \(BatchNorm statistics\) \(non-finite after the forward "
                                 r"pass: encoder\.stages\.0\.0\.1\.running_var"),
    "inf_update": (_inf_update, r"step 2: non-finite weights after the optimiser update \(non-finite: "
                                r"encoder\.stages\.0\.0\.0\.weight"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_skip_leaves_no_trace_of_a_step_that_made_a_tensor_non_finite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fault: str, single_thread: None
) -> None:
    inject, report = FAULTS[fault]
    inject(monkeypatch)
    states = _spy_states(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="unetfamily"):
        summary = fit(config_from_dict(tiny_config(tmp_path / "run", epochs=1, checkpoint_every=1, nan_policy="skip")))
    assert summary.steps == 4 and summary.skipped_steps == 1
    reports = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert len(reports) == 1 and reports[0].endswith("step skipped (train.nan_policy='skip')"), reports
    assert re.search(report, reports[0]), reports[0]
    before, after = states[BAD_STEP], states[BAD_STEP + 1]
    assert before.keys() == after.keys()
    assert [k for k in before if not torch.equal(before[k], after[k])] == [], "the skipped step left a trace"
    for step, state in states.items():
        assert all(torch.isfinite(v.float()).all() for v in state.values()), step
    assert any("1 of 4 steps so far were skipped" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_stop_names_the_step_and_tensor_and_keeps_the_finite_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str, single_thread: None
) -> None:
    inject, report = FAULTS[fault]
    inject(monkeypatch)
    with pytest.raises(TrainingError, match=report) as info:
        fit(config_from_dict(tiny_config(tmp_path / "run", epochs=1, checkpoint_every=1)))
    assert "train.nan_policy='skip' skips such steps" in str(info.value)
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    assert saved.step == BAD_STEP


def _nan_loss_at(monkeypatch: pytest.MonkeyPatch, bad_steps: set[int]) -> None:
    real, calls = SegmentationCriterion.forward, []

    def forward(self, output, target):  # noqa: ANN001, ANN202
        total, terms = real(self, output, target)
        if torch.is_grad_enabled():
            calls.append(1)
            if len(calls) - 1 in bad_steps:
                total = total * NAN
                terms = {**terms, "total": total.detach()}
        return total, terms

    monkeypatch.setattr(SegmentationCriterion, "forward", forward)


def test_a_diverging_run_fails_once_too_many_steps_were_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, single_thread: None
) -> None:
    assert MIN_STEPS_FOR_FRACTION == 20  # 0.1 of at least 20 steps: 2 skipped steps are allowed early on
    _nan_loss_at(monkeypatch, set(range(100)))
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path / "run", nan_policy="skip"))
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == ["error: step 2: 3 of the 3 steps so far were skipped for non-finite values, more than "
                      "train.max_skipped_fraction=0.1 of them (counted over at least 20 steps): the run is diverging. "
                      "Lower optim.lr, set train.grad_clip or check the data; the checkpoints on disk hold the last "
                      "finite state"], err[-2000:]
    assert "Traceback" not in err


@pytest.mark.parametrize(("bad_steps", "fails"), [({0, 5}, False), ({0, 5, 9}, True), (set(range(12)), False)])
def test_max_skipped_fraction_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad_steps: set[int],
                                   fails: bool, single_thread: None) -> None:
    _nan_loss_at(monkeypatch, bad_steps)
    allow_all = len(bad_steps) == 12  # train.max_skipped_fraction=1 never fails
    config = config_from_dict(tiny_config(tmp_path / "run", nan_policy="skip",
                                          max_skipped_fraction=1.0 if allow_all else 0.1))
    if fails:
        with pytest.raises(TrainingError, match=r"step 9: 3 of the 10 steps so far were skipped"):
            fit(config)
        return
    summary = fit(config)
    assert summary.steps == 12 and summary.skipped_steps == len(bad_steps)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors").extra["skipped_steps"] == len(bad_steps)


# ---------------------------------------------------------------- checkpoints: never a non-finite number

def _model_and_optimizer() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    model = create_model("unet", channels=[4, 8], in_channels=3, num_classes=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 3, 32, 32)).mean().backward()
    optimizer.step()
    return model, optimizer


CONFIG = {"model": {"name": "unet", "kwargs": {"channels": [4, 8], "in_channels": 3, "num_classes": 1}}}


@pytest.mark.parametrize("where", ["weight", "buffer", "optimizer"])
def test_save_checkpoint_refuses_a_non_finite_tensor(tmp_path: Path, where: str) -> None:
    model, optimizer = _model_and_optimizer()
    path = save_checkpoint(tmp_path / "last.safetensors", model, CONFIG, step=1, optimizer=optimizer)
    before = path.read_bytes()
    with torch.no_grad():
        if where == "weight":
            model.encoder.stages[0][0][0].weight.view(-1)[3] = NAN
            name = "model.encoder.stages.0.0.0.weight"
        elif where == "buffer":
            model.encoder.stages[0][0][1].running_var[0] = float("inf")
            name = "model.encoder.stages.0.0.1.running_var"
        else:
            optimizer.state[next(model.parameters())]["exp_avg_sq"].view(-1)[0] = float("inf")
            name = "optim.0.exp_avg_sq"
    with pytest.raises(CheckpointError, match=rf"refusing to write checkpoint {path}: tensor {name} holds "
                                              r"non-finite \(NaN or inf\); the previous checkpoint is unchanged"):
        save_checkpoint(path, model, CONFIG, step=2, optimizer=optimizer)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]


def test_training_stops_with_one_error_when_a_checkpoint_would_hold_nan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, single_thread: None
) -> None:
    real = train_mod.evaluate

    def evaluate(model, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202 - a NaN no step check can see
        scores = real(model, *args, **kwargs)
        with torch.no_grad():
            model.encoder.stages[1][0][1].running_mean.fill_(NAN)
        return scores

    monkeypatch.setattr(train_mod, "evaluate", evaluate)
    run = tmp_path / "run"
    config = write_config(tmp_path / "c.yaml", tiny_config(run))
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err[-2000:]
    assert errors[0].startswith(f"error: refusing to write checkpoint {run / 'checkpoints' / 'last.safetensors'}: "
                                "tensor model.encoder.stages.1.0.1.running_mean holds non-finite")
    assert load_checkpoint(run / "checkpoints" / "last.safetensors").step == 2  # checkpoint_every=2, untouched
    assert not (run / "checkpoints" / "best.safetensors").exists()


def _rewrite(path: Path, tensors: dict[str, torch.Tensor] | None = None, **meta: str) -> Path:
    """Write ``path`` again with safetensors directly: some tensors and metadata fields replaced."""
    with safe_open(str(path), framework="pt") as f:
        data = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iterator
        metadata = dict(f.metadata())
    save_file({**data, **(tensors or {})}, str(path), metadata={**metadata, **meta})
    return path


@pytest.fixture
def trained_run(tmp_path: Path, single_thread: None) -> Path:
    run = tmp_path / "run"
    fit(config_from_dict(tiny_config(run, epochs=1)))
    return run


def test_nan_weights_in_a_hand_made_file_are_refused(trained_run: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    from PIL import Image

    last = trained_run / "checkpoints" / "last.safetensors"
    name = next(k for k in load_checkpoint(last).model_state if k.endswith("running_var"))
    poisoned = load_checkpoint(last).model_state[name].clone()
    poisoned[0] = NAN
    bad = _rewrite(last, {f"model.{name}": poisoned})  # written with safetensors directly, not by unetfamily
    with pytest.raises(CheckpointError, match=re.escape(f"{bad}: tensor model.{name} holds non-finite (NaN or inf)")):
        load_model(bad)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "in.png")
    commands = {"eval": ["eval", "--checkpoint", str(bad)],
                "predict": ["predict", "--checkpoint", str(bad), str(tmp_path / "in.png"), "--out", str(tmp_path / "p")],
                "resume": ["train", "--resume", f"output_dir={trained_run}"]}
    for what, argv in commands.items():
        assert main(argv) == 2, what
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and f"model.{name} holds non-finite" in errors[0], (what, err[-2000:])
        assert "Traceback" not in err, what


DAMAGED = {
    "negative step": {"step": "-4"},
    "negative epoch": {"epoch": "-1"},
    "skipped beyond steps": {"extra": json.dumps({"skipped_steps": 99})},
    "negative bad_evals": {"extra": json.dumps({"bad_evals": -1})},
    "best not a number": {"extra": json.dumps({"best": "high"})},
    "history not a list": {"extra": json.dumps({"history": 5})},
    "config not an object": {"config": "[1, 2]"},
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_out_of_range_checkpoint_fields_are_refused(tmp_path: Path, case: str) -> None:
    model, optimizer = _model_and_optimizer()
    path = save_checkpoint(tmp_path / "c.safetensors", model, CONFIG, step=4, epoch=1, optimizer=optimizer)
    _rewrite(path, **DAMAGED[case])
    with pytest.raises(CheckpointError, match=rf"{path}: checkpoint metadata is damaged"):
        load_checkpoint(path)


# ---------------------------------------------------------------- NaN scores in training

def _scripted(monkeypatch: pytest.MonkeyPatch, key: str, values: list[float]) -> None:
    """The i-th validation reports ``values[i]`` as ``key`` (the other scores are real)."""
    real, calls = train_mod.evaluate, []

    def evaluate(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        scores = real(*args, **kwargs)
        scores[key] = values[len(calls)]
        calls.append(1)
        return scores

    monkeypatch.setattr(train_mod, "evaluate", evaluate)


def _best_step(run: Path) -> int:
    return load_checkpoint(run / "checkpoints" / "best.safetensors").step


def test_a_nan_first_score_is_not_the_best(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, single_thread: None) -> None:
    _scripted(monkeypatch, "precision", [NAN, 0.2, 0.1])  # precision before any positive prediction: NaN
    run = tmp_path / "run"
    summary = fit(config_from_dict(tiny_config(run, monitor="precision")))
    assert summary.best == 0.2 and _best_step(run) == 8
    assert load_checkpoint(run / "checkpoints" / "last.safetensors").extra["bad_evals"] == 1


def test_only_a_nan_score_writes_no_best(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, single_thread: None) -> None:
    _scripted(monkeypatch, "dice", [NAN, NAN, NAN])
    run = tmp_path / "run"
    summary = fit(config_from_dict(tiny_config(run)))
    assert summary.best is None and not (run / "checkpoints" / "best.safetensors").exists()


@pytest.mark.parametrize(("values", "stops_at"), [([NAN, 0.1, 0.2, 0.3, 0.4], 20), ([0.5, NAN, NAN, 0.9, 1.0], 12),
                                                  ([0.5, NAN, 0.6, NAN, 0.7], 20)])
def test_early_stopping_counts_nan_as_not_improved_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        values: list[float], stops_at: int, single_thread: None) -> None:
    _scripted(monkeypatch, "dice", values)
    run = tmp_path / "run"
    summary = fit(config_from_dict(tiny_config(run, epochs=5, early_stop_patience=2)))
    assert summary.steps == stops_at
    finite = [(v, 4 * (i + 1)) for i, v in enumerate(values[: stops_at // 4]) if not math.isnan(v)]
    assert (summary.best, _best_step(run)) == max(finite)


@pytest.mark.parametrize(("monitor", "values", "best", "step"), [("loss", [0.9, 0.5, 0.7], 0.5, 8),
                                                                  ("hd95", [NAN, 7.0, 3.0], 3.0, 12)])
def test_a_lower_is_better_monitor_keeps_the_lowest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, monitor: str,
                                                    values: list[float], best: float, step: int,
                                                    single_thread: None) -> None:
    _scripted(monkeypatch, monitor, values)
    run = tmp_path / "run"
    summary = fit(config_from_dict(tiny_config(run, monitor=monitor)))
    assert summary.best == best and _best_step(run) == step


@pytest.mark.parametrize(("monitor", "hint"), [("per_class_iou", "choose one of dice"), ("step", "choose one of"),
                                               ("confusion_matrix", "choose one of"), ("dcie", "did you mean 'dice'")])
def test_a_monitor_that_is_not_a_scalar_score_is_refused(tmp_path: Path, monitor: str, hint: str,
                                                         single_thread: None) -> None:
    with pytest.raises(ConfigError, match=rf"train\.monitor: unknown value '{monitor}'; {hint}"):
        fit(config_from_dict(tiny_config(tmp_path / "run", epochs=1, monitor=monitor)))


# ---------------------------------------------------------------- the rule, and compare

def test_the_rule() -> None:
    for lower in (False, True):
        for nan_like in (NAN, None, math.inf, -math.inf, "0.9", True):
            assert not is_better(nan_like, 0.5, lower) and is_better(0.5, nan_like, lower)
        assert not is_better(NAN, NAN, lower) and not is_better(0.5, 0.5, lower)
    assert is_better(np.float32(0.7), 0.6) and is_better(0.1, 0.2, lower=True) and not is_better(0.1, 0.2)
    values = [0.3, NAN, 0.9, None, 0.9, -math.inf]
    assert best_index(values) == 2 and best_index(values, lower=True) == 0 and best_index([NAN, None]) is None
    assert sorted(range(6), key=lambda i: order_key(values[i])) == [2, 4, 0, 1, 3, 5]
    assert [m for m in ("dice", "iou", "hd95", "loss", "val/loss", "nsd", "cldice") if lower_is_better(m)] == \
        ["hd95", "loss", "val/loss"]


def test_compare_ranks_a_nan_variant_last() -> None:
    scores = {"unet": [[0.7, 0.8, 0.6, 0.9]], "unet_plusplus": [[0.8, 0.9, 0.7, 0.95]], "fcn8s": [[0.5, 0.6, 0.4, 0.7]]}
    results = case_results(scores)
    for run in results.runs:  # unet_plusplus: the best per-case scores, but a NaN test mean and no cases
        if run.variant == "unet_plusplus":
            run.test, run.per_image = {"dice": NAN}, []
    assert [s.id for s in summarize(results)] == ["unet", "fcn8s", "unet_plusplus"]
    table = case_scores(case_results(scores), ["fcn8s", "unet_plusplus", "unet"], "dice")
    table.scores[1, 2] = NAN  # a NaN case score that nothing resolved
    assert table.order() == ["unet", "fcn8s", "unet_plusplus"]


def test_case_statistics_treat_nan_as_no_evidence_and_rank_it_last() -> None:
    m = np.array([[0.7, 0.8, 0.6, 0.9, 0.75], [0.9, NAN, 0.8, 0.95, 0.85], [0.5, 0.6, 0.4, 0.7, 0.55]])
    ranks = bootstrap_ranks(["a", "b", "c"], np.where([[0], [1], [0]], NAN, m), samples=200)  # b: NaN throughout
    assert ranks.p_first[1] == 0 and ranks.rank_probs[1, 2] == 1.0  # a NaN mean in every resample: last
    assert ranks.p_first[0] == 1.0 and ranks.rank_probs[2, 1] == 1.0  # the others keep their order
    tests = {(t.a, t.b): t for t in paired_tests(["a", "b", "c"], m)}
    assert tests[("a", "b")].wins + tests[("a", "b")].losses == 4  # the four cases both scored
    assert all(math.isfinite(t.p_adj) for t in tests.values())
    assert holm([0.01, NAN, 0.02]).tolist() == [0.03, 1.0, 0.04]


def test_bold_best_and_learning_rate_pick_never_take_nan() -> None:
    from types import SimpleNamespace

    rows = [SimpleNamespace(v=v) for v in (NAN, 0.4, 0.8, NAN)]
    for higher, bold in ((True, [2]), (False, [1])):
        col = _Column("x", lambda s: s.v, lambda s: f"{s.v}", higher)
        block = _table(rows, [col], ["#"], lambda rank, s: [str(rank)])
        assert [i for i, row in enumerate(block[2]) if row[1].startswith("**")] == bold
    assert pick_rate({1e-3: NAN, 1e-2: 0.5, 3e-2: 0.7}) == 3e-2
    assert pick_rate({1e-3: NAN, 1e-2: 5.0, 3e-2: 7.0}, lower=True) == 1e-2
    assert pick_rate({1e-2: NAN, 1e-3: NAN}) == 1e-3
