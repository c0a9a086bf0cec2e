"""``compare --encoder NAME --encoder-weights PATH``: every U-Net-family model on one pretrained backbone.

A tiny two-model comparison on ResNet-18 (32 px synthetic images, 2 steps) runs and records the
encoder and the weights' SHA-256; a run's identity follows the weights' bytes, not their path; FCN,
width, depth and plan options that cannot apply are refused before anything trains.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from unetfamily.cli import main
from unetfamily.compare.config import CompareConfig
from unetfamily.compare.identity import differing_fields, encoder_record, run_fingerprint
from unetfamily.compare.variants import build_variants
from unetfamily.errors import ConfigError
from unetfamily.models import create_model

pytestmark = pytest.mark.usefixtures("single_thread")

SMALL = {"type": "synthetic", "size": 32, "num_samples": {"train": 8, "val": 4, "test": 4}}
BASE = ["compare", "--models", "unet,unet_plusplus", "--seeds", "1", "--steps", "2", "--size", "32",
        "--batch-size", "4", "--no-costs", "--lr", "0.005", "--encoder", "resnet18", "--encoder-lr-mult", "0.5",
        "--freeze-encoder-steps", "1"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ResNet-18 weights for every stage (this package's layout of torchvision's and timm's keys)."""
    torch.manual_seed(2)
    state = create_model("unet", encoder="resnet18").encoder.backbone.state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tiny_compare_on_a_pretrained_encoder_records_it(tmp_path: Path, weights: Path, spy_fit: list[str],
                                                         capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data.yaml"
    data.write_text(yaml.safe_dump(SMALL))
    own = tmp_path / "w" / "resnet18.safetensors"
    own.parent.mkdir()
    shutil.copy(weights, own)
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)  # a relative --encoder-weights is made absolute on the driver
    args = [*BASE, "--encoder-weights", "w/resnet18.safetensors", "--data", str(data), "--out", str(out)]
    assert main(args) == 0
    assert len(spy_fit) == 2
    sha = _sha256(own)
    results = json.loads((out / "results.json").read_text())
    assert results["protocol"]["encoder"] == {"name": "resnet18", "weights": "resnet18.safetensors", "sha256": sha}
    assert results["protocol"]["config"]["encoder_weights"] == str(own)
    for variant in ("unet", "unet_plusplus"):
        run = out / "runs" / variant / "seed0"
        kwargs = yaml.safe_load((run / "config.yaml").read_text())["model"]["kwargs"]
        assert kwargs["encoder"] == "resnet18" and kwargs["encoder_weights"] == str(own) and "channels" not in kwargs
        train = yaml.safe_load((run / "config.yaml").read_text())["train"]
        assert train["encoder_lr_mult"] == 0.5 and train["freeze_encoder_steps"] == 1
        fingerprint = json.loads((run / "fingerprint.json").read_text())
        assert fingerprint["model.kwargs.encoder_weights.sha256"] == sha
        assert not any(str(own) in json.dumps(v) for v in fingerprint.values())  # the bytes count, not the path
    assert all(v["receptive_field"] is None for v in results["variants"])  # not probed on a backbone
    for page in ("report.md", "report.html"):
        text = (out / page).read_text()
        assert "resnet18 for every model" in text and f"resnet18.safetensors (SHA-256 {sha[:12]})" in text, page
        assert "encoder learning rate x 0.5, frozen for the first 1 steps" in text, page

    moved = tmp_path / "elsewhere.safetensors"  # the same bytes under another name: every run is reused
    shutil.move(own, moved)
    assert main([*args[:-4], "--encoder-weights", str(moved), *args[-4:]]) == 0
    assert len(spy_fit) == 2

    state = load_file(str(moved))  # other weights in the same place: the runs are stale, nothing trains
    state["conv1.weight"] = state["conv1.weight"] + 1e-3
    save_file(state, str(own))
    capsys.readouterr()
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "model.kwargs.encoder_weights.sha256" in error and "--rerun" in error and len(spy_fit) == 2


def test_identity_follows_the_weights_bytes_not_their_path(tmp_path: Path) -> None:
    a, b, c = (tmp_path / name for name in ("a.safetensors", "b.safetensors", "c.safetensors"))
    a.write_bytes(b"weights one")
    b.write_bytes(b"weights one")
    c.write_bytes(b"weights two")
    digest = {"train": {"count": 3, "sha256": "x"}}

    def fingerprint(path: Path, encoder: str = "resnet18") -> dict:
        return run_fingerprint({"model": {"name": "unet", "kwargs": {"encoder": encoder, "encoder_weights": str(path)}}},
                               digest, fold=0)

    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a)["model.kwargs.encoder_weights.sha256"] == _sha256(a)
    assert differing_fields(fingerprint(a), fingerprint(c)) == ["model.kwargs.encoder_weights.sha256"]
    assert differing_fields(fingerprint(a), fingerprint(a, "resnet34")) == ["model.kwargs.encoder"]
    cfg = CompareConfig(models=["unet"], encoder="resnet18", encoder_weights=str(c))
    assert encoder_record(cfg) == {"name": "resnet18", "weights": "c.safetensors", "sha256": _sha256(c)}
    c.unlink()
    with pytest.raises(ConfigError, match="c.safetensors: --encoder-weights file not found"):
        encoder_record(cfg)


@pytest.mark.parametrize("options, message", [
    ({"models": ["unet", "fcn8s"]}, r"fcn8s cannot take it \(an FCN's trunk is VGG-16"),
    ({}, r"fcn8s cannot take it"),  # the default models include FCN-8s
    ({"widths": "matched"}, r"--widths would have no effect with --encoder resnet18"),
    ({"widths": "paper"}, r"--widths would have no effect"),
    ({"base_width": 8}, r"--base-width would have no effect"),
    ({"ablations": ["all"]}, r"--ablations unet_depth would have no effect"),
    ({"plan": "auto"}, r"--plan auto cannot train models on --encoder resnet18: .* ImageNet normalisation"),
    ({"plan": "plan.yaml"}, r"--plan plan.yaml cannot train models on --encoder"),
    ({"encoder": "resnet81"}, r"--encoder: unknown value 'resnet81'.*resnet18"),
    ({"encoder": None, "encoder_weights": "w.pth"}, r"--encoder-weights needs --encoder NAME"),
    ({"encoder": None, "encoder_lr_mult": 0.1}, r"--encoder-lr-mult would have no effect without --encoder"),
    ({"encoder": None, "freeze_encoder_steps": 3}, r"--freeze-encoder-steps would have no effect without --encoder"),
    ({"encoder_lr_mult": 0}, r"encoder.lr.mult"),
    ({"freeze_encoder_steps": -1}, r"freeze.encoder.steps"),
])
def test_what_cannot_apply_to_an_encoder_is_refused(options: dict, message: str) -> None:
    options = {"models": ["unet", "unet_plusplus"], "encoder": "resnet18", **options} if options else {"encoder": "resnet18"}
    with pytest.raises(ConfigError, match=message):
        CompareConfig(**options)


def test_an_encoder_means_the_commands_recipe(tmp_path: Path) -> None:
    cfg = CompareConfig(models=["unet", "unet_3plus"], ablations=["unetpp_ds", "unet3p"], encoder="ResNet18",
                        encoder_weights="w.pth")
    assert cfg.plan == "none" and cfg.encoder == "resnet18"
    assert cfg.encoder_weights == str(Path("w.pth").resolve())
    variants = build_variants(cfg.models, cfg.ablations, cfg.widths, cfg.base_width, 1, 1, cfg.encoder_kwargs)
    assert [v.id for v in variants] == ["unet", "unet_3plus", "unet_plusplus_nods", "unet_3plus_nods", "unet_3plus_cgm"]
    for v in variants:
        assert v.kwargs["encoder"] == "resnet18" and v.kwargs["encoder_weights"] == cfg.encoder_weights
        assert "channels" not in v.kwargs and "cat_channels" not in v.kwargs
    assert variants[-1].kwargs["cgm"] and variants[1].kwargs["deep_supervision"]


def test_a_missing_weights_file_stops_before_training(tmp_path: Path, spy_fit: list[str],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    args = [*BASE, "--encoder-weights", str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "out")]
    assert main(args) == 2
    assert "none.safetensors: --encoder-weights file not found" in capsys.readouterr().err and not spy_fit
