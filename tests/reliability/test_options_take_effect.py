"""Every option either takes effect or is refused: none is accepted and silently ignored.

An option that does something is shown to change the result (the exported opset, the eval
threshold, the step budget); an option that cannot apply in a mode (``--static`` for
TorchScript, ``--level`` for a U-Net, ``--threshold`` for a multi-class model, a config key of
an optimiser or schedule not in use) is refused by name, before anything is written.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.reliability.conftest import tiny_config, write_config
from tests.reliability.test_ranges import assert_refused, run_cli
from unetfamily.config import ConfigError, config_from_dict, load_config


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real trained run folders: a binary U-Net and a 4-class one (two steps each)."""
    from unetfamily.engine.train import fit

    base = tmp_path_factory.mktemp("options")
    binary = tiny_config(base / "binary", epochs=1, max_steps=2)
    multi = tiny_config(base / "multi", epochs=1, max_steps=2)
    multi["data"] = {**multi["data"], "num_classes": 4}
    for config in (binary, multi):
        fit(config_from_dict(config))
    return {"binary": base / "binary", "multi": base / "multi"}


# -------------------------------------------------------------------------------- takes effect


def test_export_writes_exactly_the_opset_asked_for(runs: dict[str, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    from unetfamily.engine.export import supported_opsets

    lowest, highest = supported_opsets()
    opset = lowest + 1 if lowest < highest else lowest  # not the exporter's own default (it may be lowest)
    out = tmp_path / "m.onnx"
    code, err = run_cli(["export", "--checkpoint", str(runs["binary"]), "--out", str(out), "--size", "32", "32",
                         "--static", "--opset", str(opset)], capsys)
    assert code == 0, err
    written = {o.domain: o.version for o in onnx.load(out).opset_import}
    assert written.get("", written.get("ai.onnx")) == opset
    # one below what the exporter can write: refused, naming the range, instead of a file of another opset
    line = assert_refused(["export", "--checkpoint", str(runs["binary"]), "--out", str(tmp_path / "low.onnx"),
                           "--opset", str(lowest - 1)], "--opset", capsys)
    assert f"{lowest} to {highest}" in line and not (tmp_path / "low.onnx").exists()


def test_eval_threshold_changes_the_scores(runs: dict[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    scores = {}
    for threshold in ("0.05", "0.95"):
        out = tmp_path / f"eval{threshold}.json"
        code, err = run_cli(["eval", "--checkpoint", str(runs["binary"]), "--threshold", threshold, "--out", str(out)],
                            capsys)
        assert code == 0, err
        scores[threshold] = json.loads(out.read_text())["pixel_accuracy"]
    assert scores["0.05"] != scores["0.95"]


def test_max_steps_is_the_number_of_steps_trained(tmp_path: Path) -> None:
    from unetfamily.engine.train import fit

    summary = fit(config_from_dict(tiny_config(tmp_path / "run", epochs=3, max_steps=1)))
    assert summary.steps == 1  # 1 is not "not given": 0 is refused, None trains every epoch


def test_keys_that_apply_in_their_mode_are_accepted() -> None:
    cfg = load_config(None, ["optim.name=sgd", "optim.momentum=0.5", "schedule.name=poly", "schedule.power=2",
                             "train.nan_policy=skip", "train.max_skipped_fraction=0.5", "train.log_every=5",
                             "model.name=unet_3plus", "model.kwargs.cgm=true", "model.kwargs.deep_supervision=true",
                             "loss.cgm_weight=0.5", "loss.ds_weights=[1,0.5,0.5,0.5,0.5]"])
    assert cfg.optim.momentum == 0.5 and cfg.schedule.power == 2 and cfg.loss.cgm_weight == 0.5


# ------------------------------------------------------------------------------ refused instead


#: Config keys set where they would have no effect: (overrides, key named).
UNUSED_KEYS = [
    (["optim.momentum=0.5"], "optim.momentum"),  # adamw has no momentum
    (["schedule.power=2"], "schedule.power"),  # cosine has no power
    (["schedule.name=constant", "schedule.min_lr_ratio=0.1"], "schedule.min_lr_ratio"),
    (["schedule.follow_time=true"], "schedule.follow_time"),  # no train.max_seconds to follow
    (["schedule.name=constant", "train.max_seconds=60", "schedule.follow_time=true"], "schedule.follow_time"),
    (["train.max_skipped_fraction=0.5"], "train.max_skipped_fraction"),  # nan_policy stop
    (["train.image_every=5"], "train.image_every"),  # tiny_config turns TensorBoard off
    (["train.log_every=5"], "train.log_every"),
    (["loss.cgm_weight=0.5"], "loss.cgm_weight"),  # a U-Net has no classification-guided module
    (["loss.ds_weights=[0.5,0.5]"], "loss.ds_weights"),  # nor deep-supervision heads
]


@pytest.mark.parametrize("overrides,key", UNUSED_KEYS, ids=[k for _, k in UNUSED_KEYS])
def test_config_key_without_effect_is_refused(overrides: list[str], key: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    config = write_config(tmp_path / "c.yaml", tiny_config(out))
    line = assert_refused(["train", "--config", str(config), *overrides], key, capsys)
    assert "no effect" in line and not out.exists()


def test_options_that_cannot_apply_are_refused(runs: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    binary, multi = str(runs["binary"]), str(runs["multi"])
    out = str(tmp_path / "m.pt")
    assert_refused(["export", "--checkpoint", binary, "--format", "torchscript", "--static", "--out", out], "--static",
                   capsys)
    assert_refused(["export", "--checkpoint", binary, "--format", "torchscript", "--opset", "18", "--out", out],
                   "--opset", capsys)
    assert_refused(["export", "--checkpoint", binary, "--level", "1", "--out", str(tmp_path / "m.onnx")], "--level",
                   capsys)
    assert not list(tmp_path.iterdir())
    eval_out = ["--out", str(tmp_path / "e.json")]
    assert_refused(["eval", "--checkpoint", multi, "--threshold", "0.3", *eval_out], "--threshold", capsys)
    assert_refused(["eval", "--checkpoint", multi, "--hd95", *eval_out], "--hd95", capsys)
    four = write_config(tmp_path / "d4.yaml", {"type": "synthetic", "num_samples": 2, "size": 32, "num_classes": 4})
    assert_refused(["eval", "--checkpoint", binary, "--data", str(four), *eval_out], "classes", capsys)
    rgb = write_config(tmp_path / "rgb.yaml", {"type": "synthetic", "num_samples": 2, "size": 32, "in_channels": 3})
    assert_refused(["eval", "--checkpoint", binary, "--data", str(rgb), *eval_out], "channel", capsys)
    assert not (tmp_path / "e.json").exists()


def test_bench_and_compare_refuse_options_another_makes_unused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bench = ["bench", "--models", "unet", "--size", "32", "--width", "4", "--repeats", "1", "--device", "cpu"]
    assert_refused([*bench, "--no-train", "--memory-saving", "none"], "--memory-saving", capsys)
    assert_refused([*bench, "--json", str(tmp_path / "missing" / "rows.json")], "--json", capsys)
    compare = ["compare", "--models", "unet", "--seeds", "1", "--steps", "1", "--size", "32", "--no-costs",
               "--out", str(tmp_path / "report")]
    assert_refused([*compare, "--widths", "paper", "--base-width", "8"], "--base-width", capsys)
    assert_refused([*compare, "--lr", "0.01", "--lr-grid", "1e-3,1e-2"], "--lr", capsys)
    assert not (tmp_path / "report").exists()


def test_compare_prints_no_best_model_when_none_has_a_score(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    """The command's last line agrees with the report's verdict: no finite score, nothing to recommend."""
    from types import SimpleNamespace

    import unetfamily.compare.runner as runner
    import unetfamily.compare.summary as summary

    from unetfamily.cli import main

    fake = SimpleNamespace(primary_metric="dice", missing=[])
    monkeypatch.setattr(runner, "run_compare", lambda cfg, out, rerun=False, stream=None: fake)
    nan = float("nan")
    # (seed-level test score, per-case mean): the report ranks by the per-case mean, else by the test score
    for score, case_mean, expected in ((nan, nan, "best: none"), (0.8, nan, "best: U-Net"), (nan, 0.8, "best: U-Net")):
        model = SimpleNamespace(label="U-Net", mean=lambda m, s=score: s, case_mean=case_mean)
        monkeypatch.setattr(summary, "summarize", lambda res, m=model: [m])
        assert main(["compare", "--models", "unet", "--out", str(tmp_path / "report")]) == 0
        assert expected in capsys.readouterr().out


def test_library_checks_the_same_options(runs: dict[str, Path], tmp_path: Path) -> None:
    from unetfamily.engine.evaluate import evaluate_checkpoint
    from unetfamily.engine.export import export_model

    with pytest.raises(ConfigError, match=r"threshold must be in \(0, 1\)"):
        evaluate_checkpoint(runs["binary"], threshold=1.5)
    with pytest.raises(ConfigError, match="threshold applies to binary models"):
        evaluate_checkpoint(runs["multi"], threshold=0.5)
    with pytest.raises(ConfigError, match="input_size must be at least 1"):
        export_model(runs["binary"], tmp_path / "m.onnx", input_size=(0, 32))
    with pytest.raises(ConfigError, match="opset applies to ONNX"):
        export_model(runs["binary"], tmp_path / "m.pt", "torchscript", opset=18)
