"""End-to-end training on the built-in synthetic data: learning, resume, DDP, CLI."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from unetfamily.cli import main
from unetfamily.config import config_from_dict
from unetfamily.engine.checkpoint import load_checkpoint
from unetfamily.engine.train import TrainingError, fit

DATA = {"type": "synthetic", "num_samples": {"train": 64, "val": 16}, "size": 48}
FAMILIES = {
    "unet": {"channels": [8, 16, 32]},
    "fcn8s": {"channels": [8, 16, 32, 32, 32], "fc_channels": 64, "norm": "batch", "dropout": 0.0},
    "unet_plusplus": {"channels": [8, 16, 32], "deep_supervision": True},
    "unet_3plus": {"channels": [8, 16, 32], "cat_channels": 8, "deep_supervision": True, "cgm": True},
}


def _config(tmp_path: Path, name: str = "unet", epochs: int = 10, **train: object) -> dict:
    return {
        "model": {"name": name, "kwargs": FAMILIES[name]},
        "data": DATA,
        "loader": {"batch_size": 8},
        "optim": {"lr": 0.005},
        "schedule": {"name": "cosine", "warmup_steps": 5},
        "train": {"epochs": epochs, "progress": False, "tensorboard": False, **train},
        "output_dir": str(tmp_path / "run"),
    }


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_each_family_learns(tmp_path: Path, name: str) -> None:
    # 80 steps at 48 px. A constant "all foreground" prediction scores Dice ~0.33 on this data,
    # "all background" 0; every family reaches 0.67-0.85 here (FCN-8s, the coarsest, lowest).
    summary = fit(config_from_dict(_config(tmp_path, name)))
    dice = [h["dice"] for h in summary.history]
    assert summary.steps == 80 and len(dice) == 10
    assert dice[-1] > 0.55 and dice[-1] > dice[0] + 0.3, dice
    assert summary.best == max(dice)
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.extra["classes"] == ["background", "foreground"]
    assert ckpt.config["model"]["kwargs"]["in_channels"] == 1


def test_run_folder_contents(tmp_path: Path) -> None:
    summary = fit(config_from_dict(_config(tmp_path, epochs=1, tensorboard=True, image_every=2, log_every=1)))
    run = tmp_path / "run"
    assert summary.run_dir == run and summary.monitor == "dice" and not summary.interrupted
    assert summary.metrics["step"] == 8 and summary.history[-1]["step"] == 8 and summary.seconds > 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["kwargs"]["num_classes"] == 1 and saved["train"]["epochs"] == 1
    log = (run / "train.log").read_text()
    assert "epoch 1 step 8" in log
    # The choices setup made, and why, open the file (logged before train.log could be opened).
    setup = ["train.amp auto -> none", "train.channels_last auto ->", "loader.num_workers auto -> 0",
             "epoch = one pass over"]
    assert all(line in log for line in setup), log[:2000]
    assert max(log.index(line) for line in setup) < log.index("epoch 1 step 8")
    assert any((run / "tensorboard").glob("events.out.tfevents.*"))
    assert {p.name for p in (run / "checkpoints").iterdir()} == {"best.safetensors", "last.safetensors"}


def test_nan_loss_stops_before_weights_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from unetfamily.losses import SegmentationCriterion

    real = SegmentationCriterion.forward

    def poisoned(self, output, target):  # noqa: ANN001, ANN202
        total, terms = real(self, output, target)
        return total * float("nan"), terms

    monkeypatch.setattr(SegmentationCriterion, "forward", poisoned)
    with pytest.raises(TrainingError, match="step 0: non-finite loss"):
        fit(config_from_dict(_config(tmp_path, epochs=1)))
    summary = fit(config_from_dict(_config(tmp_path, epochs=1, nan_policy="skip", max_skipped_fraction=1.0)),
                  overwrite=True)
    assert summary.skipped_steps == 8


def _train_cmd(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "unetfamily", "train", "--config", str(config), *extra]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoints" / "last.safetensors").model_state


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path: Path) -> None:
    base = _config(tmp_path, "unet_3plus", epochs=3, checkpoint_every=2)
    base["data"] = {**DATA, "augment": "medical"}  # random augmentation and dropout (CGM) must replay too
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    paths = {}
    for name in ("straight", "killed"):
        cfg = {**base, "output_dir": str(tmp_path / name)}
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(cfg))
    subprocess.run(_train_cmd(paths["straight"]), check=True, env=env, capture_output=True, timeout=300)

    proc = subprocess.Popen(_train_cmd(paths["killed"]), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "killed" / "checkpoints" / "last.safetensors"
    deadline = time.monotonic() + 120
    while not last.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = load_checkpoint(last).step
    assert 0 < killed_at < 24, "the run must be killed mid-way for this test to mean anything"

    subprocess.run(_train_cmd(paths["killed"], "--resume"), check=True, env=env, capture_output=True, timeout=300)
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "killed")
    assert load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.safetensors").step == 24
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


def test_ddp_two_cpu_processes(tmp_path: Path) -> None:
    cfg = _config(tmp_path, epochs=2)
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    torchrun = Path(sys.executable).with_name("torchrun")
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [str(torchrun), "--nproc_per_node=2", f"--master_port={port}", "-m", "unetfamily", "train",
           "--config", str(path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    assert ckpt.step == 8  # 64 samples / (2 ranks x batch 8) = 4 steps per epoch
    assert result.stdout.count("run folder:") == 1  # rank 0 only
    assert result.stderr.count("epoch 2 step 8") == 1


def test_cli_train_then_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_config(tmp_path, epochs=1)))
    assert main(["train", "--config", str(path), "train.epochs=2", "loader.batch_size=16"]) == 0
    assert "steps: 8" in capsys.readouterr().out
    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(tmp_path / "run"), "--hd95", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "foreground" in printed and "hd95=" in printed
    result = json.loads(out.read_text())
    assert len(result["per_image"]) == 16 and len(result["confusion_matrix"]) == 2
    assert sum(map(sum, result["confusion_matrix"])) == 16 * 48 * 48


def test_early_stopping_sgd_poly(tmp_path: Path) -> None:
    cfg = _config(tmp_path, epochs=5, early_stop_patience=1)
    cfg["optim"] = {"name": "sgd", "lr": 1e-30, "momentum": 0.9}  # too small to change a weight: nothing improves
    cfg["schedule"] = {"name": "poly", "power": 0.9}
    summary = fit(config_from_dict(cfg))
    assert summary.steps == 16 and len(summary.history) == 2


def test_bf16_autocast_and_channels_last_on_cpu(tmp_path: Path) -> None:
    summary = fit(config_from_dict(_config(tmp_path, epochs=1, amp="bf16", channels_last=True)))
    assert summary.steps == 8 and summary.skipped_steps == 0
    weights = load_checkpoint(tmp_path / "run").model_state
    assert all(v.dtype in (torch.float32, torch.int64) for v in weights.values())  # master weights stay fp32


def test_fit_takes_a_config_only(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"fit\(load_config\(path\)\)"):
        fit(_config(tmp_path, epochs=1))  # type: ignore[arg-type]


def test_fp16_on_cpu_is_refused(tmp_path: Path) -> None:
    from unetfamily.config import ConfigError

    with pytest.raises(ConfigError, match="fp16"):
        fit(config_from_dict(_config(tmp_path, epochs=1, amp="fp16")))
