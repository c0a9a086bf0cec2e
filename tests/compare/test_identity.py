"""Run identity in `compare`: stale runs refused, matching re-runs reused byte for byte, one writer per run,
and K-fold cross-validation that evaluates every case once per seed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from unetfamily.cli import main
from unetfamily.compare.identity import differing_fields, run_fingerprint

BASE = ["compare", "--models", "unet", "--seeds", "1", "--steps", "3", "--size", "32", "--batch-size", "8", "--no-costs",
        "--base-width", "4", "--lr", "0.005"]
SMALL = {"type": "synthetic", "size": 32, "num_samples": {"train": 10, "val": 6, "test": 5}}
POOL = {"type": "synthetic", "size": 32, "num_samples": {"train": 10, "val": 5}}


def _data(tmp_path: Path, spec: dict, name: str = "data.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def _without_timestamps(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if "created" not in line.lower())


def test_fingerprints_name_the_fields_that_differ() -> None:
    digest = {"train": {"count": 3, "sha256": "a"}}
    a = run_fingerprint({"optim": {"lr": 0.001}, "output_dir": "x", "train": {"progress": True}}, digest, fold=0)
    b = run_fingerprint({"optim": {"lr": 0.003}, "output_dir": "y", "train": {"progress": False}}, digest, fold=0)
    assert differing_fields(a, b) == ["optim.lr"]  # the folder and the progress bar decide nothing
    c = run_fingerprint({"optim": {"lr": 0.001}}, {"train": {"count": 3, "sha256": "b"}}, fold=1)
    assert differing_fields(a, c) == ["run.fold", "samples.train.sha256"]


@pytest.mark.parametrize("change", [["--lr", "0.01"], ["--steps", "4"], ["--size", "40"], ["--data", "OTHER"]])
def test_a_changed_setting_stops_before_training(tmp_path: Path, spy_fit: list[str], capsys, change: list[str]) -> None:
    data = _data(tmp_path, SMALL)
    out = str(tmp_path / "out")
    assert main([*BASE, "--data", data, "--out", out]) == 0
    assert len(spy_fit) == 1
    if change[0] == "--data":
        change = ["--data", _data(tmp_path, {**SMALL, "seed": 3}, "other.yaml")]
    args = [*BASE, "--data", data, "--out", out]
    i = args.index(change[0]) if change[0] in args else None
    args = args[:i] + change + args[i + 2:] if i is not None else [*args, *change]
    capsys.readouterr()
    assert main(args) == 2
    error = capsys.readouterr().err
    assert len(spy_fit) == 1, "nothing may be trained"
    assert error.startswith("error:") and "--rerun" in error and "new --out" in error
    field = {"--lr": "optim.lr", "--steps": "train.max_steps", "--size": "data.size", "--data": "sha256"}[change[0]]
    assert field in error
    if change[0] == "--lr":
        assert main([*args, "--rerun"]) == 0 and len(spy_fit) == 2  # the way out retrains that run


def test_a_matching_rerun_trains_nothing_and_reproduces_the_report(tmp_path: Path, spy_fit: list[str]) -> None:
    data, out = _data(tmp_path, SMALL), tmp_path / "out"
    assert main([*BASE, "--data", data, "--out", str(out)]) == 0
    first = {name: (out / name).read_text() for name in ("report.md", "results.csv")}
    first_json = json.loads((out / "results.json").read_text())
    assert main([*BASE, "--data", data, "--out", str(out)]) == 0
    assert len(spy_fit) == 1
    for name, text in first.items():
        assert _without_timestamps((out / name).read_text()) == _without_timestamps(text), name
    again = json.loads((out / "results.json").read_text())
    first_json["protocol"].pop("created"), again["protocol"].pop("created")
    assert again == first_json


def test_damaged_run_records_are_named_and_recovered(tmp_path: Path, spy_fit: list[str], capsys,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    data, out = _data(tmp_path, SMALL), tmp_path / "out"
    assert main([*BASE, "--data", data, "--out", str(out)]) == 0
    run = out / "runs" / "unet" / "seed0"
    kept = json.loads((run / "result.json").read_text())
    (run / "result.json").write_text('{"variant": "unet", "te')  # cut short: evaluated again from the checkpoint
    assert main([*BASE, "--data", data, "--out", str(out)]) == 0
    assert f"{run / 'result.json'} cannot be read" in caplog.text and len(spy_fit) == 2
    assert json.loads((run / "result.json").read_text())["test"] == kept["test"]
    (run / "predictions.npz").write_bytes((run / "predictions.npz").read_bytes()[:100])  # the report goes on without
    assert main([*BASE, "--data", data, "--out", str(out)]) == 0 and len(spy_fit) == 2
    assert "predictions of unet left out of the report's figures" in caplog.text
    (run / "fingerprint.json").write_text("{")  # whose settings made the folder is unknown: a stale run
    capsys.readouterr()
    assert main([*BASE, "--data", data, "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error:") and "unreadable" in error and "--rerun" in error and len(spy_fit) == 2
    assert main([*BASE, "--data", data, "--out", str(out), "--rerun"]) == 0 and len(spy_fit) == 3


def test_two_compares_on_one_out_train_every_run_once(tmp_path: Path) -> None:
    data, out = _data(tmp_path, SMALL), tmp_path / "out"
    args = [sys.executable, "-m", "unetfamily", *BASE, "--models", "unet,unet_plusplus,unet_3plus", "--seeds", "2",
            "--data", data, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    logs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    trained = [line for log in logs for line in log.splitlines() if "unetfamily.compare.run: train " in line]
    assert len(trained) == 6, trained  # 3 variants x 2 seeds, each trained by exactly one of the two processes
    assert len({line.split("run: train ")[1] for line in trained}) == 6


def test_k_fold_evaluates_every_case_once_per_seed(tmp_path: Path) -> None:
    data, out = _data(tmp_path, POOL), tmp_path / "out"
    assert main([*BASE, "--data", data, "--seeds", "2", "--out", str(out)]) == 0  # no test split: 5 folds
    results = json.loads((out / "results.json").read_text())
    assert results["protocol"]["folds"] == 5 and results["protocol"]["cases"] == 15
    assert results["protocol"]["eval_split"] == "folds"
    for seed in (0, 1):
        runs = [r for r in results["runs"] if r["seed"] == seed]
        assert sorted(r["fold"] for r in runs) == [0, 1, 2, 3, 4]
        names = [c["name"] for r in runs for c in r["per_image"]]
        assert len(names) == 15 and len(set(names)) == 15  # every train and val case exactly once
        for r in runs:
            assert {"nsd", "cldice", "hd95"} <= set(r["per_image"][0])
    folds_of = {}
    for r in results["runs"]:
        for c in r["per_image"]:
            folds_of.setdefault(c["name"], set()).add(r["fold"])
    assert all(len(f) == 1 for f in folds_of.values())  # the same folds for every seed
    assert (out / "runs" / "unet" / "seed1" / "fold4" / "fingerprint.json").is_file()


def test_lr_grid_picks_a_rate_per_variant_on_training_cases_only(tmp_path: Path, spy_fit: list[str]) -> None:
    data, out = _data(tmp_path, SMALL), tmp_path / "out"
    base = [a for i, a in enumerate(BASE) if "--lr" not in (a, BASE[i - 1])]  # --lr and --lr-grid exclude each other
    assert main([*base, "--data", data, "--models", "unet,fcn8s", "--lr-grid", "0.001,0.02", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert {v["id"]: v["lr"] in (0.001, 0.02) for v in results["variants"]} == {"unet": True, "fcn8s": True}
    assert results["protocol"]["config"]["lr_grid"] == [0.001, 0.02]
    search = [p for p in spy_fit if "lr_search" in p]
    assert len(search) == 4 and len(spy_fit) == 6  # 2 variants x 2 rates, then the 2 real runs
    for run in (out / "lr_search").rglob("config.yaml"):
        cfg = yaml.safe_load(run.read_text())
        pooled = set(cfg["data"]["assignment"])  # the inner split is carved from the training cases
        assert pooled and all(name.startswith("synthetic_train_") for name in pooled)
        assert cfg["train"]["max_steps"] == 1  # a quarter of the 3-step budget
    real = yaml.safe_load((out / "runs" / "unet" / "seed0" / "config.yaml").read_text())
    assert real["optim"]["lr"] == next(v["lr"] for v in results["variants"] if v["id"] == "unet")


@pytest.mark.parametrize("train_cases,chosen", [(3, True), (1, False)])
def test_lr_grid_on_few_training_cases(tmp_path: Path, spy_fit: list[str], capsys, train_cases: int,
                                       chosen: bool) -> None:
    # the inner split asked for 5 parts of the first fold's training cases: with fewer, an error named 'folds=5',
    # a count the user never gave. Now one case chooses the rate; under 2 cases --lr-grid is refused by name
    data, out = _data(tmp_path, {**SMALL, "num_samples": {"train": train_cases, "val": 2, "test": 2}}), tmp_path / "o"
    base = [a for i, a in enumerate(BASE) if "--lr" not in (a, BASE[i - 1])]
    code = main([*base, "--data", data, "--lr-grid", "0.001,0.02", "--batch-size", "1", "--out", str(out)])
    if chosen:
        assert code == 0 and len([p for p in spy_fit if "lr_search" in p]) == 2
    else:
        err = capsys.readouterr().err
        assert code == 2 and "--lr-grid" in err and "has 1" in err and "folds=" not in err and not spy_fit
