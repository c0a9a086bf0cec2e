"""Nothing lost: no command replaces results in a folder the user gave unless asked to (``--overwrite``).

- ``train`` into an output_dir holding anything a run writes (a checkpoint, config.yaml,
  train.log, tensorboard/) is refused before data is read or anything written, naming the folder,
  what it holds and the ways out; ``--overwrite`` deletes only those files; ``--resume`` needs a
  checkpoint. Also under torchrun (2 ranks): both refuse together, or rank 0 alone deletes.
- ``predict --out`` is refused when any file it would write exists (mask, probabilities of each
  kind, overlay); other images into the same folder are fine; a full disk (a real tmpfs) stops it
  with one ``error:`` line naming the file, and each image keeps all its outputs or none.
- ``dataset labelme --out`` likewise: existing images (of any suffix), masks or classes.txt are
  refused; a bad annotation or a full disk leaves the folder as it was.
"""
from __future__ import annotations

import base64
import io
import json
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.reliability.conftest import finish, start, tiny_config, write_config
from unetfamily import create_model
from unetfamily.cli import main
from unetfamily.config import config_from_dict
from unetfamily.engine.checkpoint import load_checkpoint, save_checkpoint
from unetfamily.engine.run_folder import prepare_run_folder
from unetfamily.engine.train import TrainingError, fit

RUN_FILES = ("checkpoints/last.safetensors", "checkpoints/best.safetensors", "config.yaml", "train.log", "tensorboard")


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, list[str]]:
    """(exit code, stdout, the ``error:`` lines of stderr); fails on a traceback."""
    code = main(args)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err, captured.err
    return code, captured.out, [line for line in captured.err.splitlines() if line.startswith("error:")]


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- train


def test_train_refuses_a_finished_run_and_overwrite_replaces_only_its_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], single_thread: None,
) -> None:
    run = tmp_path / "run"
    config = write_config(tmp_path / "c.yaml", tiny_config(run, epochs=1))
    assert _cli(["train", "--config", str(config)], capsys)[0] == 0
    first = _snapshot(run)
    code, _, errors = _cli(["train", "--config", str(config), "train.max_steps=2"], capsys)
    assert code == 2 and len(errors) == 1, errors
    assert f"output_dir {run} already holds a run (a run at step 4, best dice " in errors[0]
    assert "--resume" in errors[0] and "--overwrite" in errors[0] and "another output_dir" in errors[0]
    assert _snapshot(run) == first  # checkpoints, config.yaml and train.log byte for byte

    (run / "notes.txt").write_text("mine")
    (run / "checkpoints" / "mine.bin").write_bytes(b"also mine")
    code, out, errors = _cli(["train", "--config", str(config), "--overwrite", "train.max_steps=2"], capsys)
    assert code == 0 and not errors and "steps: 2" in out
    assert load_checkpoint(run / "checkpoints" / "last.safetensors").step == 2
    assert (run / "notes.txt").read_text() == "mine" and (run / "checkpoints" / "mine.bin").read_bytes() == b"also mine"
    assert "epoch 1 step 4:" not in (run / "train.log").read_text()  # the old log went with the old run


@pytest.mark.parametrize("held", RUN_FILES)
def test_train_refuses_any_trace_of_a_run_before_reading_data(tmp_path: Path, held: str) -> None:
    run = tmp_path / "run"
    config = tiny_config(run)
    config["data"] = {"type": "folder", "root": str(tmp_path / "no_such_data")}  # reading it would fail otherwise
    path = run / held
    if held == "tensorboard":
        path.mkdir(parents=True)
        (path / "events.out.tfevents.1").write_bytes(b"x")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not a checkpoint" if held.endswith(".safetensors") else b"x")
    before = _snapshot(run)
    with pytest.raises(TrainingError, match=rf"output_dir {run} already holds a run \(.*{held}.*--overwrite"):
        fit(config_from_dict(config))
    assert _snapshot(run) == before


@pytest.mark.parametrize("held", ["nothing", "config.yaml"])
def test_resume_without_a_checkpoint_says_what_to_do(tmp_path: Path, held: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    if held != "nothing":
        run.mkdir()
        (run / held).write_text("model: {name: unet}\n")
    code, _, errors = _cli(["train", "--resume", f"output_dir={run}"], capsys)
    assert code == 2 and len(errors) == 1
    assert f"--resume: {run} holds no" in errors[0] and "checkpoints/last.safetensors is missing" in errors[0]
    assert ("--overwrite" if held != "nothing" else "train without --resume") in errors[0]
    assert not run.exists() if held == "nothing" else sorted(p.name for p in run.iterdir()) == [held]


def test_resume_and_overwrite_exclude_each_other(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--resume", "--overwrite", f"output_dir={tmp_path}"])
    assert exit_.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(Exception, match="--resume continues the run in output_dir and --overwrite replaces it"):
        fit(config_from_dict(tiny_config(tmp_path / "run")), resume=True, overwrite=True)


def _torchrun() -> list[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node=2", f"--master_port={port}"]


def test_every_rank_refuses_on_its_own_and_only_the_main_one_deletes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("checkpoints/last.safetensors", "config.yaml", "notes.txt"):
        (run / name).write_text("an old run")
    before = _snapshot(run)
    for main_rank in (True, False):
        with pytest.raises(TrainingError, match="already holds a run"):
            prepare_run_folder(run, resume=False, overwrite=False, main=main_rank)
    prepare_run_folder(run, resume=False, overwrite=True, main=False)
    assert _snapshot(run) == before
    prepare_run_folder(run, resume=False, overwrite=True, main=True)
    assert [p.name for p in run.rglob("*") if p.is_file()] == ["notes.txt"]


def test_torchrun_ranks_refuse_together_and_only_rank_0_deletes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = write_config(tmp_path / "c.yaml", tiny_config(run, epochs=1, max_steps=2, checkpoint_every=0))
    (run / "checkpoints").mkdir(parents=True)
    for name in ("checkpoints/last.safetensors", "config.yaml", "train.log"):
        (run / name).write_text("an old run")
    (run / "notes.txt").write_text("mine")
    before = _snapshot(run)
    cmd = [*_torchrun(), "-m", "unetfamily", "train", "--config", str(config)]
    proc = start(cmd)
    _, err = finish(proc, timeout=120)
    # torchrun stops the other rank as soon as one exits, so one or both messages get printed;
    # that each rank refuses on its own is checked in-process below.
    assert proc.returncode != 0 and err.count(f"error: output_dir {run} already holds a run") >= 1, err[-3000:]
    assert _snapshot(run) == before
    proc = start([*cmd, "--overwrite"])
    _, err = finish(proc, timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert load_checkpoint(run / "checkpoints" / "last.safetensors").step == 2
    assert (run / "notes.txt").read_text() == "mine"


# ----------------------------------------------------------------------------- predict


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """An untrained 2-class U-Net checkpoint (no training needed to predict)."""
    kwargs = {"channels": [4, 8], "in_channels": 3, "num_classes": 2}
    model = create_model("unet", **kwargs)
    return save_checkpoint(tmp_path / "model.safetensors", model, {"model": {"name": "unet", "kwargs": kwargs}},
                           extra={"classes": ["background", "cell"]})


def _images(folder: Path, names: list[str], size: int = 32) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    return folder


OUTPUT_KINDS = {  # predict options -> the files it writes for image "a"
    "mask": ([], ["a.png"]),
    "npy": (["--probabilities"], ["a.png", "a_prob.npy"]),
    "png": (["--probabilities", "png"], ["a.png", "a_prob_0.png", "a_prob_1.png"]),
    "overlay": (["--overlay"], ["a.png", "a_overlay.png"]),
}


@pytest.mark.parametrize("kind", list(OUTPUT_KINDS))
def test_predict_refuses_to_replace_any_output_it_would_write(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str], kind: str,
) -> None:
    options, names = OUTPUT_KINDS[kind]
    inputs, out = _images(tmp_path / "in", ["a"]), tmp_path / "out"
    for existing in names:  # each output alone is enough to refuse
        out.mkdir(exist_ok=True)
        (out / existing).write_bytes(b"the user's file")
        code, _, errors = _cli(["predict", "--checkpoint", str(checkpoint), str(inputs), "--out", str(out), *options],
                               capsys)
        assert code == 2 and len(errors) == 1, errors
        assert f"{out} already holds 1 of the {len(names)} files" in errors[0] and str(out / existing) in errors[0]
        assert "--overwrite" in errors[0]
        assert _snapshot(out) == {existing: b"the user's file"}
        (out / existing).unlink()
    assert _cli(["predict", "--checkpoint", str(checkpoint), str(inputs), "--out", str(out), *options], capsys)[0] == 0
    assert sorted(_snapshot(out)) == sorted(names)


def test_predict_adds_other_images_and_overwrites_when_asked(tmp_path: Path, checkpoint: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    first = _images(tmp_path / "first", ["a", "b"])
    assert _cli(["predict", "--checkpoint", str(checkpoint), str(first), "--out", str(out)], capsys)[0] == 0
    (out / "a.png").write_bytes(b"edited by hand")
    code, _, errors = _cli(["predict", "--checkpoint", str(checkpoint), str(first), "--out", str(out)], capsys)
    assert code == 2 and "already holds 2 of the 2 files" in errors[0]
    assert (out / "a.png").read_bytes() == b"edited by hand"
    other = _images(tmp_path / "other", ["c"])
    assert _cli(["predict", "--checkpoint", str(checkpoint), str(other), "--out", str(out)], capsys)[0] == 0
    assert sorted(_snapshot(out)) == ["a.png", "b.png", "c.png"]
    assert _cli(["predict", "--checkpoint", str(checkpoint), str(first), "--out", str(out), "--overwrite"],
                capsys)[0] == 0
    assert Image.open(out / "a.png").size == (32, 32)


def test_predict_on_a_full_disk_names_the_file_and_leaves_no_part(
    tmp_path: Path, checkpoint: Path, small_disk, capsys: pytest.CaptureFixture[str],
) -> None:
    names = ["a", "b", "c", "d", "e"]
    inputs, out = _images(tmp_path / "in", names, size=64), small_disk(64)  # each a_prob.npy: 32 KiB
    code, _, errors = _cli(["predict", "--checkpoint", str(checkpoint), str(inputs), "--out", str(out),
                            "--probabilities", "--overlay"], capsys)
    assert code == 2 and len(errors) == 1, errors
    assert f"error: could not write {out}/" in errors[0] and "No space left on device" in errors[0]
    left = set(os.listdir(out))
    assert not [n for n in left if n.startswith(".")], left  # no temporary file
    complete = [n for n in names if {f"{n}.png", f"{n}_prob.npy", f"{n}_overlay.png"} <= left]
    untouched = [n for n in names if not any(f.startswith(n) for f in left)]
    assert complete and untouched and len(complete) + len(untouched) == len(names), left  # all or nothing per image
    for name in complete:
        assert np.load(out / f"{name}_prob.npy").shape == (2, 64, 64)


# ----------------------------------------------------------------------------- labelme


def _labelme(folder: Path, names: list[str], size: int = 16, bad: str | None = None) -> Path:
    """labelme files with their images embedded (noise PNGs: they do not compress); ``bad`` has an unknown label."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for name in names:
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, format="PNG")
        shape = {"label": "cat", "points": [[1, 1], [size - 2, 1], [size - 2, size - 2]], "shape_type": "polygon"}
        doc = {"shapes": [shape], "imageData": base64.b64encode(buffer.getvalue()).decode(),
               "imageHeight": size, "imageWidth": size}
        (folder / f"{name}.json").write_text(json.dumps(doc))
    if bad is not None:
        (folder / f"{bad}.json").write_text(json.dumps({**doc, "shapes": [{**shape, "label": "dragon"}]}))
    labels = folder.parent / "labels.txt"
    labels.write_text("__ignore__\n_background_\ncat\n")
    return folder


def _convert(source: Path, out: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, list[str]]:
    code, _, errors = _cli(["dataset", "labelme", str(source), "--out", str(out),
                            "--labels", str(source.parent / "labels.txt"), *extra], capsys)
    return code, errors


@pytest.mark.parametrize("existing", ["classes.txt", "masks/a.png", "images/a.png", "images/a.jpg"])
def test_labelme_refuses_to_replace_a_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              existing: str) -> None:
    source, out = _labelme(tmp_path / "ann", ["a", "b"]), tmp_path / "out"
    (out / existing).parent.mkdir(parents=True, exist_ok=True)
    (out / existing).write_bytes(b"the user's file")
    code, errors = _convert(source, out, capsys)
    assert code == 2 and len(errors) == 1
    assert f"{out} already holds 1 file(s) this conversion would replace (e.g. {out / existing})" in errors[0]
    assert "--overwrite" in errors[0] and _snapshot(out) == {existing: b"the user's file"}
    assert _convert(source, out, capsys, "--overwrite")[0] == 0
    assert sorted(_snapshot(out)) == ["classes.txt", "images/a.png", "images/b.png", "masks/a.png", "masks/b.png"]


def test_labelme_into_a_dataset_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, out = _labelme(tmp_path / "ann", ["a", "b"]), tmp_path / "out"
    assert _convert(source, out, capsys)[0] == 0
    first = _snapshot(out)
    code, errors = _convert(source, out, capsys)
    assert code == 2 and "already holds 5 file(s)" in errors[0] and _snapshot(out) == first


def test_labelme_bad_annotation_leaves_the_folder_as_it_was(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, out = _labelme(tmp_path / "ann", ["a", "b"], bad="c"), tmp_path / "out"
    code, errors = _convert(source, out, capsys)
    assert code == 2 and "label 'dragon' is not in the class list" in errors[0]
    assert not out.exists()  # a and b were converted first: nothing of them is left, not even a hidden folder
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert _convert(source, out, capsys)[0] == 2 and _snapshot(out) == {"notes.txt": b"mine"}


def test_labelme_on_a_full_disk_names_the_file_and_leaves_nothing(
    tmp_path: Path, small_disk, capsys: pytest.CaptureFixture[str],
) -> None:
    source = _labelme(tmp_path / "ann", [f"s{i}" for i in range(8)], size=64)  # ~12 KiB per image
    disk = small_disk(48)
    code, errors = _convert(source, disk / "dataset", capsys)
    assert code == 2 and len(errors) == 1, errors
    assert f"error: could not write {disk}/dataset/" in errors[0] and "No space left on device" in errors[0]
    assert ".labelme" not in errors[0]  # names where the file was going, not the staging folder
    assert os.listdir(disk) == []  # no partial dataset, no temporary file
