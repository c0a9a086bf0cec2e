"""`unetfamily compare` end to end on tiny synthetic data: report files, resume, variants."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml

import unetfamily.engine.train as train_mod
from unetfamily import create_model
from unetfamily.cli import main
from unetfamily.compare.variants import build_variants, matched_width
from unetfamily.errors import ConfigError
from unetfamily.models import family_kwargs

ARGS = ["compare", "--data", "synthetic", "--models", "unet,unet_plusplus", "--seeds", "2", "--steps", "6",
        "--size", "32", "--batch-size", "16", "--base-width", "4", "--lr", "0.005"]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compare") / "report"
    assert main([*ARGS, "--out", str(out)]) == 0
    return out


def test_every_report_file_is_written(report: Path) -> None:
    for name in ("report.md", "report.html", "results.json", "results.csv"):
        assert (report / name).is_file(), name
    assert any((report / "plots").glob("*.png"))
    results = json.loads((report / "results.json").read_text())
    assert [v["id"] for v in results["variants"]] == ["unet", "unet_plusplus"]
    assert {(r["variant"], r["seed"]) for r in results["runs"]} == {(v, s) for v in ("unet", "unet_plusplus") for s in (0, 1)}
    assert all(r["steps"] == 6 for r in results["runs"])
    assert results["protocol"]["eval_split"] == "test" and results["protocol"]["config"]["seeds"] == 2
    assert results["protocol"]["config"]["models"] == ["unet", "unet_plusplus"]  # the CompareConfig is saved
    assert results["protocol"]["splits"] == {"train": 256, "val": 64, "test": 64}
    pp = next(r for r in results["runs"] if r["variant"] == "unet_plusplus")
    assert sorted(pp["levels"]) == ["1", "2", "3", "4"]
    assert pp["levels"]["1"]["macs"] < pp["levels"]["4"]["macs"]
    for v in results["variants"]:
        assert v["params"] > 0 and v["macs"] > 0 and v["latency_ms"] > 0 and v["peak_memory_mb"] >= 0


def test_csv_has_one_row_per_variant(report: Path) -> None:
    with open(report / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["id"] if "id" in r else r["variant"] for r in rows) == ["unet", "unet_plusplus"]


def test_same_seed_same_data_order_across_models(report: Path) -> None:
    # Both variants of seed 0 were trained on the same batches: their run configs differ only in the model.
    ca = yaml.safe_load((report / "runs" / "unet" / "seed0" / "config.yaml").read_text())
    cb = yaml.safe_load((report / "runs" / "unet_plusplus" / "seed0" / "config.yaml").read_text())
    for key in ("data", "loader", "loss", "optim", "schedule"):
        assert ca[key] == cb[key], key
    assert ca["train"] == cb["train"]
    assert ca["model"]["name"] == "unet" and cb["model"]["name"] == "unet_plusplus"


def test_rerun_skips_finished_runs(report: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = json.loads((report / "results.json").read_text())
    (report / "runs" / "unet" / "seed1" / "result.json").unlink()  # as if interrupted during that run
    trained = []
    real = train_mod.fit

    def spy(cfg, resume=False, overwrite=False):  # noqa: ANN001, ANN202
        trained.append((cfg.output_dir, resume))
        return real(cfg, resume=resume, overwrite=overwrite)

    monkeypatch.setattr(train_mod, "fit", spy)
    assert main([*ARGS, "--out", str(report)]) == 0
    assert len(trained) == 1 and trained[0][0].endswith("unet/seed1") and trained[0][1] is True  # its checkpoint exists: resumed, not retrained
    after = json.loads((report / "results.json").read_text())
    assert [r["test"] for r in after["runs"] if r["variant"] != "unet" or r["seed"] != 1] == [
        r["test"] for r in before["runs"] if r["variant"] != "unet" or r["seed"] != 1
    ]


def test_an_unreadable_cost_cache_is_measured_again(report: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = report / "runs" / "unet" / "cost.json"
    kept = json.loads(cache.read_text())
    cache.write_text('{"params": 12')  # cut short (a full disk) or edited by hand
    assert main([*ARGS, "--out", str(report)]) == 0
    assert f"{cache} cannot be read" in caplog.text
    again = json.loads(cache.read_text())
    assert again["params"] == kept["params"] and again["receptive_field"] == kept["receptive_field"]


def test_variants_and_ablations() -> None:
    variants = build_variants(["fcn8s", "unet", "unet_plusplus", "unet_3plus"], ["unet_depth", "unetpp_ds", "unet3p"],
                              "small", 8, in_channels=1, num_classes=1)
    ids = [v.id for v in variants]
    assert ids == ["fcn8s", "unet", "unet_plusplus", "unet_3plus", "unet_d0", "unet_d1", "unet_d2", "unet_d3", "unet_d5",
                   "unet_plusplus_nods", "unet_3plus_nods", "unet_3plus_cgm"]
    by_id = {v.id: v for v in variants}
    assert len(by_id["unet_d0"].kwargs["channels"]) == 1 and len(by_id["unet_d1"].kwargs["channels"]) == 2
    assert len(by_id["unet_d5"].kwargs["channels"]) == 6
    assert by_id["unet_plusplus"].levels and by_id["unet_plusplus"].kwargs["deep_supervision"]
    assert by_id["unet_3plus_cgm"].kwargs["cgm"]
    multi = build_variants(["unet_3plus"], ["unet3p"], "small", 8, in_channels=3, num_classes=4)
    assert "unet_3plus_cgm" not in [v.id for v in multi]  # CGM is binary-only
    with pytest.raises(ConfigError, match="ablation: unknown value 'depth'"):
        build_variants(["unet"], ["depth"], "small", 8, 1, 1)


def test_matched_widths_match_parameter_counts() -> None:
    variants = build_variants(["unet", "unet_plusplus", "unet_3plus"], [], "matched", 16, in_channels=3, num_classes=1)
    counts = []
    for v in variants:
        with torch.device("meta"):
            counts.append(sum(p.numel() for p in create_model(v.model, in_channels=3, **v.kwargs).parameters()))
    assert all(abs(c - counts[0]) / counts[0] < 0.15 for c in counts), counts
    assert matched_width("unet", counts[0], 3, 1) == 16
    assert family_kwargs("unet", None) == {}
