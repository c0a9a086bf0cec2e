"""Writes that fail: a full disk or a read-only folder while a checkpoint is saved, and a run
folder that cannot be created. Each gives an error that names the file and says what to do; the
previous checkpoint stays intact and no temporary file is left behind.

Full disk and read-only are simulated by the OSError the file system would raise (the tests run
as root here, and root writes into read-only folders); the real read-only folder test runs when
the suite is not root, and ``test_crash_during_save_keeps_previous_checkpoint`` in
``tests/engine/test_checkpoint.py`` truncates a real half-written file first.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

import unetfamily.engine.checkpoint as ckpt_mod
from tests.reliability.conftest import tiny_config, write_config
from unetfamily import create_model, files
from unetfamily.cli import main
from unetfamily.config import config_from_dict
from unetfamily.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from unetfamily.engine.train import TrainingError, fit

CONFIG = {"model": {"name": "unet", "kwargs": {"channels": [4, 8], "in_channels": 3, "num_classes": 1}}}
FAILURES = {"disk_full": (errno.ENOSPC, "No space left on device"), "read_only": (errno.EROFS, "Read-only file system")}


def _failing_save_file(monkeypatch: pytest.MonkeyPatch, code: int, message: str, after: int = 0) -> None:
    """Make every checkpoint write after the first ``after`` fail as the file system would, mid-file."""
    real, calls = ckpt_mod.atomic_write_bytes, []

    def atomic_write_bytes(path: Path, data: bytes) -> Path:
        calls.append(path)
        if len(calls) <= after:
            return real(path, data)

        def write(f) -> None:  # noqa: ANN001 - part of the file reaches the temporary file, then the write fails
            f.write(data[: len(data) // 3])
            raise OSError(code, message, str(path))

        return files.atomic_write(path, write)

    monkeypatch.setattr(ckpt_mod, "atomic_write_bytes", atomic_write_bytes)


@pytest.mark.parametrize("failure", list(FAILURES))
def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str) -> None:
    model = create_model("unet", channels=(4, 8))
    path = save_checkpoint(tmp_path / "last.safetensors", model, CONFIG, step=1)
    before = path.read_bytes()
    _failing_save_file(monkeypatch, *FAILURES[failure])
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    with pytest.raises(CheckpointError, match=rf"could not write checkpoint {path}: {FAILURES[failure][1]}; the "
                                             r"previous checkpoint is unchanged\. Free disk space or choose a writable output_dir"):
        save_checkpoint(path, model, CONFIG, step=2)
    assert path.read_bytes() == before and load_checkpoint(path).step == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]


@pytest.mark.parametrize("failure", list(FAILURES))
def test_train_command_reports_a_failed_write_and_keeps_the_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], failure: str,
    single_thread: None,
) -> None:
    run = tmp_path / "run"
    config = write_config(tmp_path / "c.yaml", tiny_config(run, epochs=1))
    _failing_save_file(monkeypatch, *FAILURES[failure], after=1)  # step 2 is saved, the end of the epoch is not
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"error: could not write checkpoint {run}/checkpoints/" in err and FAILURES[failure][1] in err
    assert "Traceback" not in err
    assert load_checkpoint(run / "checkpoints" / "last.safetensors").step == 2
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.safetensors"]


def test_unwritable_run_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the run folder's parent should be")
    with pytest.raises(TrainingError, match=rf"cannot write the run folder {blocker}/run: .*; choose a writable output_dir"):
        fit(config_from_dict(tiny_config(blocker / "run", epochs=1)))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; covered by the simulated tests")
def test_real_read_only_checkpoint_folder(tmp_path: Path) -> None:
    model = create_model("unet", channels=(4, 8))
    path = save_checkpoint(tmp_path / "ckpt" / "last.safetensors", model, CONFIG, step=1)
    path.parent.chmod(0o555)
    try:
        with pytest.raises(CheckpointError, match="Permission denied; the previous checkpoint is unchanged"):
            save_checkpoint(path, model, CONFIG, step=2)
        assert load_checkpoint(path).step == 1
    finally:
        path.parent.chmod(0o755)


def test_a_write_never_replaces_a_device_pipe_or_folder_and_goes_through_a_link(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.json")
    (tmp_path / "folder.json").mkdir()
    for name, kind in (("pipe.json", "a named pipe"), ("folder.json", "a directory")):
        with pytest.raises(files.WriteError, match=rf"could not write .*{name}: it is {kind}"):
            files.write_json(tmp_path / name, {"a": 1})
    assert (tmp_path / "pipe.json").is_fifo() and (tmp_path / "folder.json").is_dir()
    (tmp_path / "real.json").write_text("old")
    (tmp_path / "link.json").symlink_to("real.json")
    files.write_json(tmp_path / "link.json", {"a": 1})
    assert (tmp_path / "link.json").is_symlink() and (tmp_path / "real.json").read_text() == '{\n "a": 1\n}'


def test_eval_refuses_an_out_that_is_a_device_with_or_without_overwrite(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    os.mkfifo(tmp_path / "pipe.json")
    for extra in ([], ["--overwrite"]):
        assert main(["eval", "--checkpoint", str(tmp_path / "none"), "--out", str(tmp_path / "pipe.json"), *extra]) == 2
        assert "is a named pipe (FIFO), not a file this command may write" in capsys.readouterr().err
