"""train.encoder_lr_mult and train.freeze_encoder_steps on a tiny U-Net with a ResNet-18 encoder (32 px images).

The encoder stays bit-identical (weights and BatchNorm statistics) for the frozen steps while the
decoder learns, then trains at lr x mult; a run resumed mid-freeze continues as an uninterrupted
one; the options are refused where they would do nothing. Also: ``unetfamily train`` with
``model.kwargs.encoder_weights``, and a model rebuilt from its checkpoint without that file.
"""
from __future__ import annotations

import itertools
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import save_file

from unetfamily.cli import main
from unetfamily.config import ConfigError, config_from_dict
from unetfamily.engine.checkpoint import load_checkpoint, load_model
from unetfamily.engine.encoder_training import ENCODER_GROUP, encoder_training
from unetfamily.engine.loop import StopFlag, train_step
from unetfamily.engine.pretrained import export_pretrained
from unetfamily.engine.run_setup import setup_run
from unetfamily.engine.train import TrainingError, fit
from unetfamily.models import create_model, from_pretrained

pytestmark = pytest.mark.usefixtures("single_thread")

DATA = {"type": "synthetic", "num_samples": {"train": 8, "val": 2}, "size": 32}
ENCODER = {"encoder": "resnet18", "encoder_depth": 2}
BACKBONE = "encoder.backbone."


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet-18 weight file for depth 2 (this package's layout), BatchNorm statistics away from their defaults."""
    torch.manual_seed(1)
    state = create_model("unet", num_classes=1, **ENCODER).encoder.backbone.state_dict()
    for key, value in state.items():
        if key.endswith("running_mean"):
            state[key] = 0.1 * torch.randn_like(value)
        elif key.endswith("running_var"):
            state[key] = 1 + 0.5 * torch.rand_like(value)
    path = tmp_path_factory.mktemp("weights") / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def _config(tmp_path: Path, weights: Path | None = None, kwargs: dict[str, Any] | None = None,
            schedule: dict[str, Any] | None = None, name: str = "run", **train: Any) -> dict[str, Any]:
    model = dict(ENCODER if kwargs is None else kwargs)
    if weights is not None:
        model["encoder_weights"] = str(weights)
    return {
        "model": {"name": "unet", "kwargs": {**model, "num_classes": 1}},
        "data": DATA, "loader": {"batch_size": 2}, "optim": {"lr": 0.01},
        "schedule": schedule or {"name": "cosine", "warmup_steps": 2},
        "train": {"epochs": 2, "progress": False, "loggers": [], **train},
        "output_dir": str(tmp_path / name),
    }


def _encoder_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The backbone's weights and buffers (BatchNorm running statistics and counters), cloned."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith(BACKBONE)}


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_frozen_encoder_is_bit_identical_then_trains_at_lr_times_mult(
        tmp_path: Path, weights: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="unetfamily")
    run = setup_run(config_from_dict(_config(tmp_path, weights, freeze_encoder_steps=3, encoder_lr_mult=0.25)))
    try:
        assert "frozen for the first 3 steps" in caplog.text and "optim.lr x 0.25" in caplog.text
        model, loaded = run.model, _encoder_state(run.model)
        assert [g.get("name") for g in run.optimizer.param_groups] == [None, ENCODER_GROUP]
        decoder = {n: p.detach().clone() for n, p in model.named_parameters() if not n.startswith(BACKBONE)}
        run.train_model.train()
        batches = itertools.cycle(list(run.train_loader))
        for step in range(6):
            train_step(run, next(batches), None, StopFlag())
            groups = {g.get("name"): g["lr"] for g in run.optimizer.param_groups}
            frozen = step < 3
            assert model.encoder.backbone.bn1.training is not frozen and model.head.training
            assert _equal(_encoder_state(model), loaded) is frozen, step  # weights and BN statistics alike
            if frozen:
                assert groups[ENCODER_GROUP] == 0.0 and groups[None] > 0
            else:  # warm-up then cosine: the encoder's rate is the schedule's times the mult at every step
                assert groups[ENCODER_GROUP] == pytest.approx(0.25 * groups[None], rel=1e-12) and groups[None] > 0
            if step == 0:
                assert not any(torch.equal(p, decoder[n]) for n, p in model.named_parameters() if n in decoder)
    finally:
        run.close()


def test_default_options_keep_one_group_and_the_encoder_trains_from_step_0(tmp_path: Path, weights: Path) -> None:
    run = setup_run(config_from_dict(_config(tmp_path, weights)))
    try:
        assert len(run.optimizer.param_groups) == 1  # the layout of runs saved before these options
        loaded = _encoder_state(run.model)
        run.train_model.train()
        train_step(run, next(iter(run.train_loader)), None, StopFlag())
        assert not _equal(_encoder_state(run.model), loaded)
    finally:
        run.close()


def test_resume_mid_freeze_continues_as_an_uninterrupted_run(
        tmp_path: Path, weights: Path, caplog: pytest.LogCaptureFixture) -> None:
    constant = {"name": "constant"}  # the cut run's first part spans other total steps: no schedule may depend on it
    fit(config_from_dict(_config(tmp_path, weights, schedule=constant, name="straight", max_steps=6,
                                 freeze_encoder_steps=4, encoder_lr_mult=0.5)))
    own = tmp_path / "copy.safetensors"
    shutil.copy(weights, own)
    cut = _config(tmp_path, own, schedule=constant, name="cut", max_steps=3, freeze_encoder_steps=4,
                  encoder_lr_mult=0.5)
    assert "covers all" not in caplog.text
    fit(config_from_dict(cut))  # stops at step 3 of 4 per epoch: mid-epoch and mid-freeze
    assert "train.freeze_encoder_steps=4 covers all 3 steps of this run" in caplog.text
    first = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.safetensors")
    assert first.step == 3 and [g.get("name") for g in first.optimizer_state["param_groups"]] == [None, ENCODER_GROUP]
    initial = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.safetensors")
    own.unlink()  # the checkpoint holds the weights: resuming must not need the file
    fit(config_from_dict({**cut, "train": {**cut["train"], "max_steps": 6}}), resume=True)
    straight, resumed = initial.model_state, load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.safetensors")
    assert resumed.step == 6
    for key in straight:
        assert torch.equal(straight[key], resumed.model_state[key]), key
    frozen_at_3 = {k: v for k, v in first.model_state.items() if k.startswith(BACKBONE)}
    assert not _equal(frozen_at_3, {k: v for k, v in straight.items() if k.startswith(BACKBONE)})  # trained after 4
    changed = {**cut, "train": {**cut["train"], "max_steps": 8, "freeze_encoder_steps": 2}}
    with pytest.raises(TrainingError, match="train.freeze_encoder_steps 4 -> 2"):
        fit(config_from_dict(changed), resume=True)
    # The weights file moved: its path is read only when a run starts, so a resume accepts the new one.
    moved = {**cut, "model": {**cut["model"], "kwargs": {**cut["model"]["kwargs"], "encoder_weights": str(weights)}},
             "train": {**cut["train"], "max_steps": 7}}
    fit(config_from_dict(moved), resume=True)
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.safetensors").step == 7


@pytest.mark.parametrize("key, value", [("encoder_lr_mult", 0.1), ("freeze_encoder_steps", 5)])
def test_options_refused_for_a_model_without_an_encoder(tmp_path: Path, key: str, value: float) -> None:
    cfg = config_from_dict(_config(tmp_path, kwargs={"channels": [4, 8]}, **{key: value}))
    with pytest.raises(ConfigError, match=rf"train\.{key}={value} would have no effect: model 'unet' has no "
                                          "pretrained-architecture encoder"):
        fit(cfg)
    assert not (tmp_path / "run" / "config.yaml").exists()  # refused before the run folder was written


@pytest.mark.parametrize("key, value, rule", [("encoder_lr_mult", 0, "must be a positive number"),
                                              ("encoder_lr_mult", -1.0, "must be a positive number"),
                                              ("freeze_encoder_steps", -1, "must be at least 0"),
                                              ("freeze_encoder_steps", 1.5, "wrong type")])
def test_option_ranges(tmp_path: Path, key: str, value: float, rule: str) -> None:
    with pytest.raises(ConfigError, match=rf"train\.{key}.*{rule}"):
        config_from_dict(_config(tmp_path, **{key: value}))


def test_fcn_trunk_is_an_encoder(tmp_path: Path) -> None:
    fcn = {"channels": [4, 8, 8, 16, 16], "fc_channels": 16}
    cfg = config_from_dict({**_config(tmp_path, freeze_encoder_steps=2), "model": {"name": "fcn8s", "kwargs": fcn}})
    model = create_model("fcn8s", **fcn)
    encoder = encoder_training(model, cfg)
    trunk = {id(p) for m in (model.stages, model.fc) for p in m.parameters()}
    assert {id(p) for p in encoder.params} == trunk and encoder.frozen(1) and not encoder.frozen(2)


def test_cli_train_with_encoder_weights_then_eval_without_the_file(
        tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    own = tmp_path / "resnet18.safetensors"
    shutil.copy(weights, own)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_config(tmp_path, own, epochs=1)))
    assert main(["train", "--config", str(path)]) == 0
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["model"]["kwargs"]["encoder_weights"] == str(own)  # what the run started from, as given
    ckpt = load_checkpoint(tmp_path / "run")
    assert "input_norm.mean" in ckpt.model_state  # the ImageNet normalisation came with the weights
    own.unlink()
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(tmp_path / "run")]) == 0
    assert "dice" in capsys.readouterr().out
    model, _ = load_model(tmp_path / "run")
    assert torch.equal(model.input_norm.mean, ckpt.model_state["input_norm.mean"])
    folder = export_pretrained(tmp_path / "run", tmp_path / "folder")  # checks its outputs against the checkpoint's
    card = (folder / "README.md").read_text()  # its training section names the ImageNet normalisation (1 channel)
    assert '- input normalisation: {"clip": null, "mean": [0.449], "std": [0.226]}' in card
    assert f"`resnet18` backbone (docs/models.md, \"Pretrained encoders\"); initialised from `{own.name}` |" in card
    assert from_pretrained(folder).input_norm is not None


def test_ddp_two_cpu_processes_keep_the_encoder_frozen(tmp_path: Path, weights: Path) -> None:
    # 8 images / (2 ranks x batch 2) = 2 steps, both frozen: the encoder must come out exactly as loaded
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(_config(tmp_path, weights, epochs=1, freeze_encoder_steps=2,
                                           encoder_lr_mult=0.5)))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node=2", f"--master_port={port}",
           "-m", "unetfamily", "train", "--config", str(path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    assert ckpt.step == 2
    loaded = create_model("unet", in_channels=1, num_classes=1, encoder_weights=str(weights), **ENCODER).state_dict()
    backbone = {k: v for k, v in ckpt.model_state.items() if k.startswith(BACKBONE)}
    assert backbone and all(torch.equal(v, loaded[k]) for k, v in backbone.items())
    assert any(not torch.equal(v, loaded[k]) for k, v in ckpt.model_state.items() if k.startswith("head."))
