"""``compare --loggers tensorboard,mlflow``: one parent MLflow run, one nested child per training run, read back
with MLflow's own client from the comparison's SQLite store; the results equal those of the same comparison
without MLflow; the same command again continues the same parent."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from unetfamily.cli import main
from unetfamily.compare.config import CompareConfig
from unetfamily.compare.tracking import REPORT_FILES
from unetfamily.engine.mlflow_run import RECORD
from unetfamily.errors import ConfigError

pytest.importorskip("mlflow", reason="the mlflow logger needs the optional 'mlflow' extra")
from mlflow.tracking import MlflowClient  # noqa: E402

COMMON = ["--models", "unet", "--seeds", "2", "--steps", "4", "--size", "32", "--batch-size", "4", "--base-width",
          "4", "--lr", "0.005", "--augment", "none", "--no-costs"]
PARENT = "mlflow.parentRunId"


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["compare", "--data", str(data), *COMMON, *extra, "--out", str(out)]


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory, single_thread: None) -> dict[str, Any]:
    """The same tiny comparison (U-Net, 2 seeds) without MLflow and with it."""
    root = tmp_path_factory.mktemp("mlflow_compare")
    data = root / "tiny.yaml"
    data.write_text(yaml.safe_dump({"type": "synthetic", "num_samples": {"train": 12, "val": 3, "test": 3},
                                    "size": 48, "seed": 0}))
    plain, tracked = root / "plain", root / "tracked"
    assert main(_args(data, plain)) == 0
    assert main(_args(data, tracked, "--loggers", "tensorboard,mlflow")) == 0
    record = json.loads((tracked / RECORD).read_text())
    return {"data": data, "plain": plain, "tracked": tracked, "record": record,
            "client": MlflowClient(record["tracking_uri"])}


def _runs(client: MlflowClient, record: dict[str, Any]) -> list[Any]:
    return client.search_runs([record["experiment_id"]])


def _children(client: MlflowClient, record: dict[str, Any]) -> dict[tuple[str, str, str], Any]:
    children = [r for r in _runs(client, record) if r.data.tags.get(PARENT) == record["run_id"]]
    return {(r.data.tags["variant"], r.data.tags["seed"], r.data.tags["fold"]): r for r in children}


def _results(out: Path) -> dict[tuple[str, int], dict[str, Any]]:
    runs = json.loads((out / "results.json").read_text())["runs"]
    return {(r["variant"], r["seed"]): {k: r[k] for k in ("steps", "test", "per_image", "history")} for r in runs}


def test_one_parent_and_one_nested_child_per_run(compared: dict[str, Any]) -> None:
    client, record, out = compared["client"], compared["record"], compared["tracked"]
    assert record["tracking_uri"] == f"sqlite:///{(out / 'mlflow' / 'mlflow.db').resolve()}"
    runs = _runs(client, record)
    parents = [r for r in runs if PARENT not in r.data.tags]
    assert [r.info.run_id for r in parents] == [record["run_id"]] and len(runs) == 3
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.info.run_name == "tracked"
    assert parent.data.params["models"] == "['unet']" and parent.data.params["seeds"] == "2"
    assert parent.data.tags["unetfamily.command"].startswith("unetfamily ")  # the command line, as the report shows
    children = _children(client, record)
    assert set(children) == {("unet", "0", "0"), ("unet", "1", "0")}
    for (_, seed, _), child in children.items():
        run_dir = out / "runs" / "unet" / f"seed{seed}"
        assert child.info.run_name == f"unet seed {seed}" and child.info.status == "FINISHED"
        assert json.loads((run_dir / RECORD).read_text())["run_id"] == child.info.run_id
        assert child.data.params["train.seed"] == seed and child.data.params["model.name"] == "unet"
        assert [m.step for m in client.get_metric_history(child.info.run_id, "train/loss/total")] == [0]
        artifacts = {f.path for f in client.list_artifacts(child.info.run_id, "checkpoints")}
        assert artifacts == {f"checkpoints/{p.name}" for p in (run_dir / "checkpoints").iterdir()}


def test_children_hold_the_evaluation_scores(compared: dict[str, Any]) -> None:
    client, record = compared["client"], compared["record"]
    results = _results(compared["tracked"])
    for (variant, seed, _), child in _children(client, record).items():
        result = results[(variant, int(seed))]
        assert child.data.metrics["test/dice"] == pytest.approx(result["test"]["dice"])
        assert [m.value for m in client.get_metric_history(child.info.run_id, "val/dice")] == pytest.approx(
            [h["dice"] for h in result["history"]])


def test_the_report_files_are_the_parents_artifacts(compared: dict[str, Any], tmp_path: Path) -> None:
    client, parent, out = compared["client"], compared["record"]["run_id"], compared["tracked"]
    assert sorted(f.path for f in client.list_artifacts(parent)) == sorted(REPORT_FILES)
    for name in REPORT_FILES:
        assert Path(client.download_artifacts(parent, name, str(tmp_path))).read_bytes() == (out / name).read_bytes()


def test_mlflow_changes_no_result(compared: dict[str, Any]) -> None:
    assert _results(compared["tracked"]) == _results(compared["plain"])
    for seed in (0, 1):  # the same fingerprint: runs made with MLflow and without are interchangeable
        fingerprints = [(out / "runs" / "unet" / f"seed{seed}" / "fingerprint.json").read_text()
                        for out in (compared["plain"], compared["tracked"])]
        assert fingerprints[0] == fingerprints[1]


def test_the_same_command_again_continues_the_same_parent(compared: dict[str, Any]) -> None:
    client, record, out = compared["client"], compared["record"], compared["tracked"]
    assert main(_args(compared["data"], out, "--loggers", "tensorboard,mlflow")) == 0  # every run reused
    assert json.loads((out / RECORD).read_text())["run_id"] == record["run_id"]
    runs = _runs(client, record)
    assert len(runs) == 3 and client.get_run(record["run_id"]).info.status == "FINISHED"
    for child in _children(client, record).values():  # scores logged once, not again per invocation
        assert len(client.get_metric_history(child.info.run_id, "test/dice")) == 1


def test_runs_trained_without_mlflow_get_their_children_afterwards(compared: dict[str, Any]) -> None:
    out = compared["plain"]
    assert main(_args(compared["data"], out, "--loggers", "mlflow")) == 0  # reuses the runs trained without it
    record = json.loads((out / RECORD).read_text())
    client = MlflowClient(record["tracking_uri"])
    children = _children(client, record)
    assert set(children) == {("unet", "0", "0"), ("unet", "1", "0")}
    results = _results(out)
    for (_, seed, _), child in children.items():
        assert child.data.tags["unetfamily.logged_after_training"] == "true"
        assert child.data.metrics["test/dice"] == pytest.approx(results[("unet", int(seed))]["test"]["dice"])
        assert child.data.params["train.seed"] == seed
        assert {f.path for f in client.list_artifacts(child.info.run_id)} == {"checkpoints", "config.yaml"}


@pytest.mark.slow
def test_ray_workers_log_nested_children_to_the_same_store(compared: dict[str, Any], tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="the Ray executor needs the optional 'ray' extra")
    if ray.is_initialized():
        pytest.skip("another test's Ray instance is running")
    out = tmp_path / "ray"
    assert main(_args(compared["data"], out, "--loggers", "mlflow", "--executor", "ray", "--cpus-per-run", "1")) == 0
    record = json.loads((out / RECORD).read_text())
    client = MlflowClient(record["tracking_uri"])
    children = _children(client, record)
    assert set(children) == {("unet", "0", "0"), ("unet", "1", "0")}
    for child in children.values():  # logged by the worker that trained the run, not filled in afterwards
        assert "unetfamily.logged_after_training" not in child.data.tags
        assert "train/loss/total" in child.data.metrics and "test/dice" in child.data.metrics
    assert _results(out) == _results(compared["plain"])  # one thread per run on both sides: the same arithmetic


def test_without_mlflow_installed_compare_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)
    assert main(["compare", "--loggers", "mlflow", "--out", str(tmp_path / "report")]) == 2
    assert "pip install 'unetfamily[mlflow]'" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()


def test_the_config_keeps_the_loggers() -> None:
    cfg = CompareConfig.from_dict({"loggers": ["mlflow"], "mlflow_experiment": "seg"})
    assert cfg.loggers == ["mlflow"] and cfg.to_dict()["mlflow_experiment"] == "seg"
    with pytest.raises(ConfigError, match="--mlflow-uri only acts with the mlflow logger"):
        CompareConfig(mlflow_uri="http://localhost:5000")
