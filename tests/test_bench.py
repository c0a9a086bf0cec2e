"""unetfamily.bench: FLOP counting, the measurement options and the `bench` command."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from unetfamily import create_model
from unetfamily.bench import count_flops, count_train_flops, format_gmacs, measure
from unetfamily.cli import main
from unetfamily.models import family_kwargs


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


def _table_rows(stdout: str) -> list[list[str]]:
    """The rows of the bench table (after the settings and header lines), split into columns."""
    return [line.split() for line in stdout.strip().splitlines()[2:]]


def test_bench_measures_each_repeated_model_size_and_dtype_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture,
                                                                capsys: pytest.CaptureFixture) -> None:
    """A model (under two spellings), a size or a dtype given twice: measured, printed and written once, in the
    order first given, and one warning names every repetition."""
    import unetfamily.bench

    calls = []

    def fake(name, kwargs, shape, device, repeats, **options):  # the cost figures do not matter here
        calls.append((name, shape[-1], options["amp"]))
        return {"params": 1, "flops": 2 * 10**6, "forward_s": 1.0, "train_step_s": float("nan"), "images_per_s": 1.0,
                "forward_peak_bytes": -1, "train_peak_bytes": -1}

    monkeypatch.setattr(unetfamily.bench, "measure_isolated", fake)
    out = tmp_path / "bench.json"
    assert main(["bench", "--models", "unet,fcn8s,UNet,unet", "--width", "4", "--size", "64", "32", "64", "--batch",
                 "1", "--amp", "none,none", "--repeats", "1", "--no-train", "--device", "cpu", "--json", str(out)]) == 0
    expected = [("unet", 64, "none"), ("fcn8s", 64, "none"), ("unet", 32, "none"), ("fcn8s", 32, "none")]
    assert calls == expected
    assert [(r["model"], r["size"], r["amp"]) for r in json.loads(out.read_text())["rows"]] == expected
    assert [(r[0], int(r[1]), r[2]) for r in _table_rows(capsys.readouterr().out)] == expected
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, warnings
    assert "--models names unet 3 times (as unet, UNet)" in warnings[0]
    assert "--size names 64 2 times" in warnings[0] and "--amp names none 2 times" in warnings[0]


def test_bench_without_repetitions_warns_nothing(monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    import unetfamily.bench

    monkeypatch.setattr(unetfamily.bench, "measure_isolated", lambda *a, **k: {
        "params": 1, "flops": 2, "forward_s": 1.0, "train_step_s": 1.0, "images_per_s": 1.0,
        "forward_peak_bytes": -1, "train_peak_bytes": -1})
    assert main(["bench", "--models", "unet,fcn8s", "--size", "32", "64", "--amp", "none", "--device", "cpu"]) == 0
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


@pytest.mark.parametrize("macs,text", [
    (0, "0"), (999, "9.99e-07"), (12_345, "0.0000123"), (123_456, "0.000123"), (3_120_000, "0.00312"),
    (476_000_000, "0.476"), (999_600_000, "1.000"), (2_370_000_000, "2.37"), (197_700_000_000, "197.70"),
])
def test_gmacs_keep_three_significant_digits_in_at_most_nine_characters(macs: int, text: str) -> None:
    assert format_gmacs(macs) == text and len(text) <= 9


def test_bench_table_shows_a_tiny_models_gmacs_and_json_keeps_the_exact_count(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "bench.json"
    assert main(["bench", "--models", "unet", "--width", "4", "--size", "32", "--batch", "1", "--repeats", "1",
                 "--no-train", "--device", "cpu", "--json", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    (row,) = json.loads(out.read_text())["rows"]
    expected = count_flops(create_model("unet", **family_kwargs("unet", 4)), (1, 3, 32, 32)) // 2
    assert row["macs_per_image"] == expected and isinstance(row["macs_per_image"], int)  # exact, not rounded
    header, table_row = lines[1], lines[2]
    gmacs = table_row.split()[4]
    assert gmacs == format_gmacs(expected) and float(gmacs) > 0, table_row  # was "0.00": reads as free
    assert len(gmacs.replace("0.", "", 1).lstrip("0").replace(".", "")) >= 3  # 3 significant digits
    end = header.index("GMACs/img") + len("GMACs/img")
    assert table_row[:end].endswith(gmacs) and table_row[end - len(gmacs) - 1] == " "  # right-aligned, apart


def test_models_encoders_gmacs_keep_three_significant_digits(capsys: pytest.CaptureFixture) -> None:
    from unetfamily.models.encoders import encoder_spec

    assert main(["models", "--encoders"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split("\t")[2] == "GMACs@256"
    for line in lines[1:]:
        name, _, gmacs = line.split("\t")[:3]
        with torch.device("meta"):
            backbone = encoder_spec(name).build(3, 5)
        assert gmacs == format_gmacs(count_flops(backbone, (1, 3, 256, 256)) / 2), line  # efficientnet_b0: 0.476
