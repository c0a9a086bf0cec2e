"""``compare --export-best``: the report's winner as a model folder whose card's numbers are results.json's."""
from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import unetfamily
import unetfamily.engine.train as train_mod
from tests.compare.conftest import case_results
from unetfamily.cli import main
from unetfamily.compare.config import CompareConfig
from unetfamily.compare.evidence import case_evidence
from unetfamily.compare.export_best import best_run, run_folder
from unetfamily.compare.results import CompareResults
from unetfamily.engine.checkpoint import load_model
from unetfamily.errors import ConfigError

ARGS = ["compare", "--data", "synthetic", "--models", "unet,unet_plusplus", "--seeds", "2", "--steps", "6",
        "--size", "32", "--batch-size", "16", "--base-width", "4", "--lr", "0.005", "--no-costs"]


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny comparison, run without --export-best."""
    out = tmp_path_factory.mktemp("compare") / "report"
    assert main([*ARGS, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def exported(compared: Path) -> tuple[Path, str]:
    """(model folder, printed output) of the same command again with --export-best: no run is retrained."""
    trained = []
    real = train_mod.fit

    def spy(cfg, resume=False, overwrite=False):  # noqa: ANN001, ANN202
        trained.append(cfg.output_dir)
        return real(cfg, resume=resume, overwrite=overwrite)

    folder = compared.parent / "best"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_mod, "fit", spy)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert main([*ARGS, "--out", str(compared), "--export-best", str(folder)]) == 0
    assert trained == []  # --export-best is in no run's fingerprint: every run was reused
    return folder, printed.getvalue()


def _chosen(report: Path) -> tuple[dict, dict]:
    """(variant row, run row) of results.json the export must take: the case-level order's first, its best run."""
    data = json.loads((report / "results.json").read_text())
    results = CompareResults.from_dict(data)
    first = case_evidence(results, [v.id for v in results.variants], results.primary_metric).order()[0]
    runs = [r for r in data["runs"] if r["variant"] == first]
    run = max(runs, key=lambda r: -math.inf if r["test"]["dice"] is None else r["test"]["dice"])
    return next(v for v in data["variants"] if v["id"] == first), run


def test_the_card_numbers_are_results_json_numbers(compared: Path, exported: tuple[Path, str]) -> None:
    folder, printed = exported
    variant, run = _chosen(compared)
    data = json.loads((compared / "results.json").read_text())
    card = (folder / "README.md").read_text()
    meta = yaml.safe_load(card.split("---\n")[1])
    result = meta["model-index"][0]["results"][0]
    assert result["dataset"] == {"name": "synthetic", "type": "synthetic", "split": "test"}
    scores = {m["name"]: m["value"] for m in result["metrics"]}
    runs = sorted((r for r in data["runs"] if r["variant"] == variant["id"]), key=lambda r: r["seed"])
    checked = 0
    for metric in ("dice", "iou", "miou", "nsd", "cldice", "pixel_accuracy", "hd95"):
        own = run["test"].get(metric)
        if own is not None:
            assert scores[f"{metric}: these weights (seed {run['seed']})"] == own
            checked += 1
        values = [r["test"][metric] for r in runs if r["test"].get(metric) is not None]
        if values:
            mean = scores[f"{metric}: {variant['label']}, mean over seeds 0, 1"]
            assert mean == float(np.mean(values))
            assert f"| {metric} | test | synthetic | {variant['label']}, mean over seeds 0, 1 | " \
                   + (f"{mean:.2f} px" if metric == "hd95" else f"{mean:.4f}") + " |" in card
    assert checked >= 5
    assert f"with seed {run['seed']}" in card and f"{variant['label']} seed {run['seed']}" in printed
    assert json.loads((folder / "config.json").read_text())["classes"] == data["protocol"]["classes"]


def test_the_folder_loads_to_the_chosen_runs_checkpoint(compared: Path, exported: tuple[Path, str]) -> None:
    folder, _ = exported
    variant, run = _chosen(compared)
    checkpoint = compared / "runs" / variant["id"] / f"seed{run['seed']}" / "checkpoints" / "last.safetensors"
    expected_model, _ = load_model(checkpoint)
    loaded = unetfamily.from_pretrained(folder)
    x = torch.rand(2, 1, 35, 29)
    with torch.no_grad():
        assert torch.equal(loaded(x), expected_model(x))


def test_export_best_folder_is_checked_before_training(compared: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    assert main([*ARGS, "--out", str(tmp_path / "new"), "--export-best", str(tmp_path / "file")]) == 2
    assert "--export-best " in (err := capsys.readouterr().err) and "is a file" in err
    assert main([*ARGS, "--out", str(compared), "--export-best", str(compared)]) == 2
    assert "is the --out folder" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    with pytest.raises(ConfigError, match="--export-best '' is not a folder name"):
        CompareConfig(export_best="")


def test_best_run_under_cross_validation_names_the_fold(tmp_path: Path) -> None:
    scores = {"unet": [[0.9, 0.8, 0.7, 0.95], [0.6, 0.85, 0.9, 0.9]],
              "unet_plusplus": [[0.5, 0.5, 0.5, 0.5], [0.6, 0.6, 0.6, 0.6]]}
    results = case_results(scores, folds=2)
    best = best_run(results)
    runs = results.runs_of("unet")
    top = max(runs, key=lambda r: r.test["dice"])
    assert best is not None and best.variant.id == "unet" and best.run is top
    assert best.label == f"U-Net seed {top.seed} fold {top.fold}"
    assert run_folder(tmp_path, results, top) == tmp_path / "runs" / "unet" / f"seed{top.seed}" / f"fold{top.fold}"
    nan = {"unet": [[math.nan] * 4], "unet_plusplus": [[math.nan] * 4]}
    assert best_run(case_results(nan)) is None
