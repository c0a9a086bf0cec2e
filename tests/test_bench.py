"""unetfamily.bench: FLOP counting, the measurement options and the `bench` command."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from unetfamily import create_model
from unetfamily.bench import count_flops, count_train_flops, measure
from unetfamily.cli import main


def test_train_flops_are_forward_plus_both_gradients() -> None:
    model = create_model("unet", channels=(4, 8, 16))
    fwd, train = count_flops(model, (2, 3, 32, 32)), count_train_flops(model, (2, 3, 32, 32))
    first_conv = 2 * 2 * 3 * 4 * 9 * 32 * 32  # the image needs no gradient: one conv's input gradient is skipped
    assert train == 3 * fwd - first_conv


@pytest.mark.parametrize("channels_last,amp", [(True, "none"), (False, "bf16")])
def test_measure_options(channels_last: bool, amp: str) -> None:
    model = create_model("unet_3plus", channels=(4, 8, 16), cat_channels=4)
    cost = measure(model, (1, 3, 32, 32), repeats=1, warmup=0, memory=False, channels_last=channels_last, amp=amp)
    assert cost.forward_s > 0 and cost.train_step_s > 0 and cost.flops > 0
    assert cost.train_peak_bytes == -1  # memory not measured


def test_bench_command_reports_each_dtype(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    assert main(["bench", "--models", "unet", "--width", "4", "--size", "32", "--batch", "1", "--amp", "none,bf16",
                 "--repeats", "1", "--no-train", "--channels-last", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["amp"] for r in rows] == ["none", "bf16"]
    assert all(r["images_per_s"] > 0 and r["train_step_s"] is None for r in rows)  # not measured: null in strict JSON


@pytest.mark.parametrize("option,value", [("--amp", "fp64"), ("--models", "unet+"), ("--width", "wide")])
def test_bench_command_rejects_bad_options(option: str, value: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["bench", "--models", "unet", option, value]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and repr(value) in lines[0], lines


def test_the_speed_benchmarks_defaults_row_is_the_train_step(tmp_path: Path) -> None:
    """benchmarks/speed.py's ``defaults`` variant: setup_run + train_step of the default Config, with overrides."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from speed import defaults_run

    model, step, forward = defaults_run("unet", [2, 3, 32, 32], str(tmp_path / "run"),
                                        ["model.kwargs.channels=[4, 8]", "train.channels_last=true"])
    before = [p.detach().clone() for p in model.parameters()]
    step()
    forward()
    assert model.training and next(model.parameters()).shape[0] == 4
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))  # the step trained
    assert next(p for p in model.parameters() if p.dim() == 4).is_contiguous(memory_format=torch.channels_last)
