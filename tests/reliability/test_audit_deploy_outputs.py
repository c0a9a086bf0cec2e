"""Deployment audit: commands that write a result where the user named none never replace an earlier one silently."""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.engine.conftest import make_checkpoint  # noqa: F401  (the fixture)
from tests.reliability.conftest import write_config
from unetfamily.cli import main

DATA = {"type": "synthetic", "num_samples": 2, "size": 32, "in_channels": 3}


def _eval(checkpoint: Path, data: Path, *extra: str) -> list[str]:
    return ["eval", "--checkpoint", str(checkpoint), "--data", str(data), "--device", "cpu", *extra]


@pytest.mark.parametrize("given", ["run folder", "file in checkpoints/", "loose file"])
def test_eval_default_output_is_in_the_run_and_never_replaced_unasked(
        given: str, tmp_path: Path, make_checkpoint: Callable[..., Path],  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = make_checkpoint("unet", 1, 3)  # <run>/checkpoints/last.safetensors
    run = ckpt.parent.parent
    if given == "loose file":  # a checkpoint copied out of its run: its result goes beside it, not two levels up
        (tmp_path / "shared" / "models").mkdir(parents=True)
        ckpt = Path(shutil.copy(ckpt, tmp_path / "shared" / "models" / "ck.safetensors"))
        run = ckpt.parent
    checkpoint = run if given == "run folder" else ckpt
    data = write_config(tmp_path / "d.yaml", DATA)
    expected = run / "eval_val.json"

    assert main(_eval(checkpoint, data)) == 0, capsys.readouterr().err
    assert f"wrote {expected}" in capsys.readouterr().out
    assert not (tmp_path / "shared" / "eval_val.json").exists()
    first = expected.read_bytes()

    other = write_config(tmp_path / "other.yaml", {**DATA, "seed": 7})  # other data, same split name
    assert main(_eval(checkpoint, other)) == 2
    err = capsys.readouterr().err
    assert f"error: {expected}" in err and "--overwrite" in err and "nothing was evaluated" in err
    assert expected.read_bytes() == first  # the earlier result is kept

    assert main(_eval(checkpoint, other, "--overwrite")) == 0
    capsys.readouterr()
    assert json.loads(expected.read_text())["split"] == "val" and expected.read_bytes() != first
