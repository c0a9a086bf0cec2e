"""train.loggers: TensorBoard and MLflow behind one interface; MLflow runs read back with MLflow's own client.

One tiny run is trained for one epoch with ``loggers: [tensorboard, mlflow]`` and resumed for a second
(module fixture): its MLflow run in the run folder's SQLite store holds the config as parameters, every
logged step, and the run folder's files byte for byte; the resume appended to the same MLflow run; and
the weights equal those of the same run trained without loggers.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from unetfamily.config import config_from_dict
from unetfamily.engine.checkpoint import load_checkpoint, save_checkpoint
from unetfamily.engine.loggers import Loggers, RunLogger
from unetfamily.engine.mlflow_run import RECORD, flat_params
from unetfamily.engine.run_folder import config_for_resume
from unetfamily.engine.train import fit
from unetfamily.errors import ConfigError, MissingExtraError

mlflow = pytest.importorskip("mlflow", reason="the mlflow logger needs the optional 'mlflow' extra")
from mlflow.tracking import MlflowClient  # noqa: E402

STEPS_PER_EPOCH = 2  # 16 training images, batches of 8


def _config(run: Path, epochs: int, loggers: list[str], **train: Any) -> dict[str, Any]:
    return {"model": {"name": "unet", "kwargs": {"channels": [4, 8]}},
            "data": {"type": "synthetic", "num_samples": {"train": 16, "val": 4}, "size": 32},
            "loader": {"batch_size": 8}, "optim": {"lr": 0.01},
            "schedule": {"name": "constant"},  # the learning rate does not depend on the budget the resume raises
            "train": {"epochs": epochs, "progress": False, "device": "cpu", "loggers": loggers, **train},
            "output_dir": str(run)}


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory, single_thread: None) -> dict[str, Any]:
    """A run trained 1 epoch with TensorBoard and MLflow, then resumed to 2; and the same 2 epochs without loggers."""
    root = tmp_path_factory.mktemp("loggers")
    run, plain = root / "run", root / "plain"
    logging_keys = {"log_every": 1, "image_every": 2}
    fit(config_from_dict(_config(run, 1, ["tensorboard", "mlflow"], **logging_keys)))
    first = json.loads((run / RECORD).read_text())
    fit(config_from_dict(_config(run, 2, ["tensorboard", "mlflow"], **logging_keys)), resume=True)
    fit(config_from_dict(_config(plain, 2, [])))
    record = json.loads((run / RECORD).read_text())
    return {"run": run, "plain": plain, "first": first, "record": record,
            "client": MlflowClient(record["tracking_uri"])}


def test_the_store_is_sqlite_in_the_run_folder(tracked: dict[str, Any]) -> None:
    run, record = tracked["run"], tracked["record"]
    assert record["tracking_uri"] == f"sqlite:///{(run / 'mlflow' / 'mlflow.db').resolve()}"
    assert (run / "mlflow" / "mlflow.db").is_file() and any((run / "tensorboard").glob("events.out.tfevents.*"))
    info = tracked["client"].get_run(record["run_id"]).info
    assert info.status == "FINISHED" and info.run_name == "run"
    assert info.artifact_uri.startswith((run / "mlflow" / "artifacts").resolve().as_uri())


def test_params_are_the_resolved_config(tracked: dict[str, Any]) -> None:
    run, client, run_id = tracked["run"], tracked["client"], tracked["record"]["run_id"]
    saved = yaml.safe_load((run / "config.yaml").read_text())
    params = client.get_run(run_id).data.params
    expected = {k: v for k, v in flat_params(saved).items() if not k.startswith("train.mlflow_")}
    expected["train.epochs"] = "1"  # MLflow keeps a parameter's first value; the resume is noted in a tag
    assert params == expected
    assert params["model.kwargs.channels"] == "[4, 8]" and params["model.kwargs.num_classes"] == "1"
    assert params["optim.lr"] == str(saved["optim"]["lr"]) and params["train.loggers"] == "['tensorboard', 'mlflow']"
    assert client.get_run(run_id).data.tags["unetfamily.resumed_with"] == "train.epochs: 1 -> 2"


def test_metric_histories_hold_every_logged_step(tracked: dict[str, Any]) -> None:
    client, run_id = tracked["client"], tracked["record"]["run_id"]
    steps = list(range(2 * STEPS_PER_EPOCH))  # log_every=1, both processes

    def history(name: str) -> list[int]:
        return [m.step for m in client.get_metric_history(run_id, name)]

    for name in ("train/loss/total", "train/lr", "train/images_per_s"):
        assert history(name) == steps, name
    assert history("val/dice") == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
    checkpoint = load_checkpoint(tracked["run"] / "checkpoints" / "last.safetensors")
    dice = [m.value for m in client.get_metric_history(run_id, "val/dice")]
    assert dice == pytest.approx([h["dice"] for h in checkpoint.extra["history"]])
    images = [f.path for f in client.list_artifacts(run_id, "images") if f.path.endswith(".png")]
    assert [p.split("+step+")[1].split("+")[0] for p in sorted(images)] == ["0", "2"]  # image_every=2


def test_artifacts_are_the_run_folders_files(tracked: dict[str, Any], tmp_path: Path) -> None:
    run, client, run_id = tracked["run"], tracked["client"], tracked["record"]["run_id"]
    for name in ("config.yaml", "checkpoints/last.safetensors", "checkpoints/best.safetensors"):
        copy = Path(client.download_artifacts(run_id, name, str(tmp_path)))
        assert copy.read_bytes() == (run / name).read_bytes(), name


def test_a_resumed_run_continues_the_same_mlflow_run(tracked: dict[str, Any]) -> None:
    client, record = tracked["client"], tracked["record"]
    assert tracked["first"]["run_id"] == record["run_id"]
    runs = client.search_runs([record["experiment_id"]])
    assert [r.info.run_id for r in runs] == [record["run_id"]]


def test_loggers_do_not_change_the_weights(tracked: dict[str, Any]) -> None:
    logged = load_checkpoint(tracked["run"] / "checkpoints" / "last.safetensors").model_state
    plain = load_checkpoint(tracked["plain"] / "checkpoints" / "last.safetensors").model_state
    assert logged.keys() == plain.keys() and all(torch.equal(logged[k], plain[k]) for k in logged)
    assert not (tracked["plain"] / "tensorboard").exists() and not (tracked["plain"] / RECORD).exists()


def test_overwrite_starts_a_new_mlflow_run_beside_the_old(tmp_path: Path) -> None:
    run = tmp_path / "run"
    uri = f"sqlite:///{tmp_path / 'shared.db'}"
    config = config_from_dict(_config(run, 1, ["mlflow"], mlflow_uri=uri, mlflow_experiment="shared",
                                      mlflow_tags={"owner": "tests"}, max_steps=1))
    fit(config)
    first = json.loads((run / RECORD).read_text())["run_id"]
    fit(config, overwrite=True)
    second = json.loads((run / RECORD).read_text())["run_id"]
    client = MlflowClient(uri)
    runs = {r.info.run_id: r for r in client.search_runs([client.get_experiment_by_name("shared").experiment_id])}
    assert first != second and set(runs) == {first, second}
    assert runs[second].data.tags["owner"] == "tests" and runs[second].info.status == "FINISHED"


@pytest.mark.parametrize("train,message", [
    ({"mlflow_uri": "sqlite:///x.db"}, "train.mlflow_uri='sqlite:///x.db' would have no effect: it sets where MLflow "
                                      "logs, and train.loggers has no mlflow"),
    ({"mlflow_experiment": "seg"}, "train.mlflow_experiment='seg' would have no effect"),
    ({"mlflow_tags": {"a": "b"}}, "train.mlflow_tags=.* would have no effect"),
    ({"loggers": ["tensorboard", "wandb"]}, r"train.loggers\[1\]='wandb' is not valid; choose one of 'tensorboard', "
                                            "'mlflow'"),
    ({"loggers": ["mlflow", "mlflow"]}, "names a logger twice"),
    ({"loggers": [], "log_every": 5}, "train.log_every=5 would have no effect: it paces the loggers, and "
                                      "train.loggers is empty"),
    ({"tensorboard": True, "loggers": ["mlflow"]}, r"train.tensorboard=True: train.loggers=\['mlflow'\] replaced "
                                                   "that key; remove it"),
    ({"tensorboard": "yes"}, "train.tensorboard='yes': train.loggers replaced that key"),
])
def test_logging_keys_without_effect_or_unknown_are_refused(train: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"train": train})


def test_the_old_tensorboard_key_still_reads(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="unetfamily"):
        assert config_from_dict({"train": {"tensorboard": True}}).train.loggers == ["tensorboard"]
        assert not caplog.records  # 0.1.0 saved true in every config: it is the default
        assert config_from_dict({"train": {"tensorboard": False}}).train.loggers == []
    assert "train.tensorboard=false is deprecated: write train.loggers: [] instead" in caplog.text
    assert config_from_dict({"train": {"tensorboard": True, "loggers": ["tensorboard", "mlflow"]}}).train.loggers == [
        "tensorboard", "mlflow"]
    assert "tensorboard" not in config_from_dict({}).to_dict()["train"]  # saved configs carry train.loggers


def test_old_and_new_keys_meet_on_resume(tmp_path: Path) -> None:
    saved = config_from_dict({}).to_dict()
    saved["train"] = {**{k: v for k, v in saved["train"].items() if not k.startswith(("loggers", "mlflow"))},
                      "tensorboard": False}  # as 0.1.0 saved a run trained without TensorBoard
    model = torch.nn.Conv2d(1, 1, 1)
    save_checkpoint(tmp_path / "checkpoints" / "last.safetensors", model, config=saved, extra={})
    config = config_for_resume({"output_dir": str(tmp_path), "train": {"loggers": ["tensorboard", "mlflow"]}})
    assert config.train.loggers == ["tensorboard", "mlflow"]
    saved = config_from_dict({"train": {"loggers": []}}).to_dict()  # a new run folder, an old config file
    save_checkpoint(tmp_path / "checkpoints" / "last.safetensors", model, config=saved, extra={})
    config = config_for_resume({"output_dir": str(tmp_path), "train": {"tensorboard": True}})
    assert config.train.loggers == ["tensorboard"]


def test_without_mlflow_installed_the_error_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now fails, as when it is not installed
    assert importlib.util.find_spec("mlflow") is None
    with pytest.raises(MissingExtraError, match=r"pip install 'unetfamily\[mlflow\]'"):
        fit(config_from_dict(_config(tmp_path / "run", 1, ["mlflow"])))
    assert not (tmp_path / "run").exists()  # refused before any data was read or file written


def test_importing_unetfamily_does_not_import_mlflow() -> None:
    code = ("import sys, unetfamily, unetfamily.engine.train, unetfamily.compare.runner, unetfamily.cli; "
            "assert 'mlflow' not in sys.modules, 'mlflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


class _Broken(RunLogger):
    name = "broken"

    def __init__(self) -> None:
        self.closed: list[str] = []

    def scalars(self, values: Any, step: int) -> None:
        raise ConnectionError("tracking server unreachable")

    def close(self, status: str) -> None:
        self.closed.append(status)


class _Recorder(RunLogger):
    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def scalars(self, values: Any, step: int) -> None:
        self.seen.append(("scalars", step))

    def artifacts(self, files: Any) -> None:
        self.seen.append(("artifacts", sorted(files)))

    def close(self, status: str) -> None:
        self.seen.append(("close", status))


def test_a_failing_logger_is_reported_and_dropped_the_others_go_on(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    broken, recorder = _Broken(), _Recorder()
    loggers = Loggers([broken, recorder])
    (tmp_path / "here.txt").write_text("x")
    with caplog.at_level(logging.WARNING, logger="unetfamily"):
        loggers.scalars({"train/lr": 0.1}, 0)
        loggers.scalars({"train/lr": 0.1}, 1)
        loggers.artifacts({"here.txt": tmp_path / "here.txt", "gone.txt": tmp_path / "gone.txt"})
        loggers.close("finished")
    assert "the broken logger failed (ConnectionError: tracking server unreachable)" in caplog.text
    assert caplog.text.count("broken logger failed") == 1 and broken.closed == ["failed"]
    assert recorder.seen == [("scalars", 0), ("scalars", 1), ("artifacts", ["here.txt"]), ("close", "finished")]
    assert not loggers
