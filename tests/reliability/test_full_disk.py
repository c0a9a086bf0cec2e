"""A real full disk (a tiny tmpfs, see ``small_disk``) while training saves checkpoints and while
``compare`` writes its runs and its report.

Whichever library does the writing, the kernel's ENOSPC ends as one ``error:`` line naming the
file, exit code 2, no traceback, no temporary or half-written file left behind. ``best`` is never
newer than ``last`` (``last`` is written first, then ``best`` is made the same file by a hard
link, which needs no space), so after space is freed ``--resume`` continues from the newest
complete ``last`` and ends with the weights of a run that never met a full disk; a rerun of the
compare finishes its report.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

import unetfamily.compare.runner as runner
from tests.reliability.conftest import assert_same_tensors, finish, start, tiny_config, write_config
from unetfamily.cli import main
from unetfamily.config import config_from_dict
from unetfamily.engine.checkpoint import load_checkpoint
from unetfamily.engine.train import fit

PAGE = 4096


def _fill(disk: Path, leave: int) -> Path:
    """A ballast file that leaves about ``leave`` bytes free on ``disk``."""
    stat = os.statvfs(disk)
    ballast = disk / "ballast"
    size = stat.f_bavail * stat.f_frsize - leave
    assert size > 0, "the disk is too small for this test"
    with open(ballast, "wb") as f:
        f.write(b"\0" * size)
    return ballast


def _errors(err: str) -> list[str]:
    assert "Traceback" not in err and "Logging error" not in err, err[-3000:]
    return [line for line in err.splitlines() if line.startswith("error:")]


def _leftovers(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob(".*tmp-*")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, single_thread: None) -> Path:
    """The tiny run (3 epochs of 4 steps, `last` after steps 2, 6, 10 too) trained on a roomy disk."""
    run = tmp_path_factory.mktemp("reference") / "run"
    fit(config_from_dict(tiny_config(run)))
    return run / "checkpoints" / "last.safetensors"


def _train(config: Path, *extra: str) -> tuple[int, str]:
    proc = start([sys.executable, "-m", "unetfamily", "train", "--config", str(config), *extra])
    _, err = finish(proc, 300)
    return proc.returncode, err


# checkpoints' worth of room left free -> step of the `last` the full disk leaves (None: none)
ROOM = {
    "first_checkpoint": (0.5, None),  # not even step 2's `last` fits
    # steps 2, 4 (`best` becomes a hard link of it: no copy) and 6 fit; step 8's needs a third copy
    # while step 4's `best` and step 6's `last` exist
    "later_checkpoint": (2.5, 6),
}


@pytest.mark.parametrize("when", list(ROOM))
def test_full_disk_while_saving_a_checkpoint(tmp_path: Path, small_disk, reference: Path, when: str) -> None:
    copies, saved_step = ROOM[when]
    checkpoint = -(-reference.stat().st_size // PAGE) * PAGE  # a tmpfs stores whole pages
    disk = small_disk(1024)
    run = disk / "run"
    config = write_config(tmp_path / "c.yaml", tiny_config(run))
    ballast = _fill(disk, int(copies * checkpoint) + 3 * PAGE)  # + config.yaml and train.log
    code, err = _train(config)
    last = run / "checkpoints" / "last.safetensors"
    assert code == 2, err[-3000:]
    assert _errors(err) == [f"error: could not write checkpoint {last}: No space left on device; the previous "
                            "checkpoint is unchanged. Free disk space or choose a writable output_dir."]
    assert _leftovers(run) == []
    ballast.unlink()
    if saved_step is None:  # nothing to resume: the run is started again
        assert not last.exists() and not (run / "checkpoints" / "best.safetensors").exists()
        code, err = _train(config, "--resume")
        assert code == 2 and len(_errors(err)) == 1 and "--overwrite" in _errors(err)[0], err[-3000:]
        code, err = _train(config, "--overwrite")
    else:
        assert load_checkpoint(last).step == saved_step
        assert load_checkpoint(run / "checkpoints" / "best.safetensors").step <= saved_step
        code, err = _train(config, "--resume")
    assert code == 0, err[-3000:]
    resumed, want = load_checkpoint(last), load_checkpoint(reference)
    assert resumed.step == want.step == 12
    assert_same_tensors(resumed.model_state, want.model_state)


COMPARE = ["compare", "--data", "synthetic", "--models", "unet", "--seeds", "1", "--steps", "2", "--size", "32",
           "--base-width", "4", "--no-costs"]


def _complete(out: Path) -> None:
    """Every file the compare left is whole: JSON parses, PNGs decode, checkpoints load; no temporary file."""
    assert _leftovers(out) == []
    for path in out.rglob("*"):
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".png":
            with Image.open(path) as image:
                image.load()
        elif path.suffix == ".safetensors":
            load_checkpoint(path)


@pytest.mark.parametrize("when", ["report", "training"])
def test_full_disk_during_compare(tmp_path: Path, small_disk, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture, when: str, single_thread: None) -> None:
    disk = small_disk(8192)
    out = disk / "cmp"
    ballast: list[Path] = []
    if when == "training":
        ballast.append(_fill(disk, 64 * 1024))  # the run's checkpoint (1.5 MB at base width 4) does not fit
    else:
        real = runner.write_report

        def write_report(results, report_dir):  # noqa: ANN001, ANN202 - the disk fills just before the report
            ballast.append(_fill(disk, 24 * 1024))
            return real(results, report_dir)

        monkeypatch.setattr(runner, "write_report", write_report)
    assert main([*COMPARE, "--out", str(out)]) == 2
    errors = _errors(capsys.readouterr().err)
    assert len(errors) == 1 and "No space left on device" in errors[0], errors
    assert errors[0].startswith(f"error: could not write {'checkpoint ' if when == 'training' else ''}{out}/")
    _complete(out)
    ballast[0].unlink()
    monkeypatch.undo()
    assert main([*COMPARE, "--out", str(out)]) == 0, capsys.readouterr().err[-3000:]
    _complete(out)
    assert (out / "report.md").is_file() and json.loads((out / "results.json").read_text())["runs"]
    shutil.rmtree(out)
