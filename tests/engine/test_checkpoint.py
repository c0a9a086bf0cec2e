"""Checkpoints: round trip, atomic writes, refusal of foreign or damaged files."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import unetfamily.engine.checkpoint as ckpt_mod
from unetfamily import files
from unetfamily import create_model
from unetfamily.engine.checkpoint import (CheckpointError, load_checkpoint, load_model, resolve_checkpoint,
                                          save_checkpoint)

CONFIG = {"model": {"name": "unet", "kwargs": {"channels": [4, 8], "in_channels": 3, "num_classes": 1}}}


def _trained() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = create_model("unet", channels=(4, 8))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(2, 3, 16, 16)).mean().backward()
    opt.step()
    return model, opt


def test_round_trip_restores_model_and_optimizer(tmp_path: Path) -> None:
    model, opt = _trained()
    path = save_checkpoint(tmp_path / "last.safetensors", model, CONFIG, step=7, epoch=1, optimizer=opt, extra={"classes": ["bg", "fg"]})
    loaded, ckpt = load_model(path)
    assert ckpt.step == 7 and ckpt.epoch == 1 and ckpt.extra["classes"] == ["bg", "fg"]
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    opt2 = torch.optim.AdamW(loaded.parameters(), lr=1e-2)
    opt2.load_state_dict(ckpt.optimizer_state)
    for p1, p2 in zip(model.parameters(), loaded.parameters()):
        s1, s2 = opt.state[p1], opt2.state[p2]
        assert torch.equal(s1["exp_avg"], s2["exp_avg"]) and torch.equal(s1["step"], s2["step"])


def test_run_folder_resolves_best_then_last(tmp_path: Path) -> None:
    model, _ = _trained()
    save_checkpoint(tmp_path / "checkpoints" / "last.safetensors", model, CONFIG, step=2)
    assert load_checkpoint(tmp_path).step == 2
    save_checkpoint(tmp_path / "checkpoints" / "best.safetensors", model, CONFIG, step=1)
    assert load_checkpoint(tmp_path).step == 1


def test_crash_during_save_keeps_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, opt = _trained()
    path = save_checkpoint(tmp_path / "last.safetensors", model, CONFIG, step=1, optimizer=opt)

    def crash(target: Path, data: bytes) -> Path:
        def write(f) -> None:  # noqa: ANN001 - half of the file reaches the disk, then the disk fails
            f.write(data[: len(data) // 2])
            f.flush()
            raise OSError(28, "No space left on device")

        return files.atomic_write(target, write)

    monkeypatch.setattr(ckpt_mod, "atomic_write_bytes", crash)
    with pytest.raises(CheckpointError, match="previous checkpoint is unchanged"):
        save_checkpoint(path, model, CONFIG, step=2, optimizer=opt)
    assert load_checkpoint(path).step == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]  # no temp file left behind


def test_metadata_is_strict_json(tmp_path: Path) -> None:
    import json

    from safetensors import safe_open

    model, _ = _trained()
    path = save_checkpoint(tmp_path / "c.safetensors", model, CONFIG, extra={"history": [{"hd95": float("nan")}]})
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    for key in ("config", "extra", "rng"):
        json.loads(meta[key], parse_constant=lambda token: pytest.fail(f"{key} holds {token}"))
    assert load_checkpoint(path).extra["history"] == [{"hd95": None}]


@pytest.mark.parametrize("content", [b"", b"garbage" * 10, b"\x08\x00\x00\x00\x00\x00\x00\x00{}"])
def test_damaged_files_are_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_checkpoint(path)


def test_foreign_safetensors_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(CheckpointError, match="not a unetfamily checkpoint"):
        load_checkpoint(tmp_path / "x.safetensors")


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="no checkpoint in run folder"):
        load_checkpoint(tmp_path)


def test_a_folder_of_run_folders_names_them(tmp_path: Path) -> None:
    """A compare variant's folder (seeds, folds) or a comparison's --out holds runs but is none: the error names them."""
    for run in ("runs/unet/seed0/fold0", "runs/unet/seed0/fold1", "runs/fcn8s/seed1/fold0"):
        (tmp_path / run / "checkpoints").mkdir(parents=True)
        (tmp_path / run / "checkpoints" / "last.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"holds 2 run folder\(s\), e.g. fold0, fold1: pass one of them"):
        resolve_checkpoint(tmp_path / "runs" / "unet" / "seed0")
    with pytest.raises(CheckpointError, match=r"holds 2 run folder\(s\), e.g. seed0/fold0, seed0/fold1"):
        resolve_checkpoint(tmp_path / "runs" / "unet")
    with pytest.raises(CheckpointError, match=r"holds 3 run folder\(s\), e.g. runs/fcn8s/seed1/fold0, runs/unet/seed0"):
        resolve_checkpoint(tmp_path)


def test_a_model_folder_given_for_a_run_folder_is_named_as_such(tmp_path: Path) -> None:
    from unetfamily.engine.checkpoint import resolve_checkpoint

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="is a model folder .* predict takes it"):
        resolve_checkpoint(tmp_path)
