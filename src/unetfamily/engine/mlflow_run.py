"""MLflow tracking: the store, the experiment, and one MLflow run per training run (``train.loggers: [mlflow]``).

**Store.** ``train.mlflow_uri`` when set; else ``$MLFLOW_TRACKING_URI``; else a SQLite database
``<folder>/mlflow/mlflow.db`` with the artifacts beside it in ``<folder>/mlflow/artifacts``, where
the folder is the run folder (``compare``: its ``--out``). SQLite, not MLflow's older file store
(``./mlruns``): MLflow 3 deprecated the file store (its default has been ``sqlite:///mlflow.db``
since 3.7, and recent versions refuse ``./mlruns`` unless ``MLFLOW_ALLOW_FILE_STORE=true``), and
MLflow's own client and ``mlflow ui --backend-store-uri sqlite:///<path>`` read the database
without a server. A relative ``sqlite:///`` path is made absolute.

**Run.** Each training run logs to one MLflow run named after its folder: parameters (the
resolved config flattened to dotted keys, values as ``str()``; the ``train.mlflow_*`` keys are
not parameters), metrics (:mod:`unetfamily.engine.loggers` names them), the overlay images, and
at the end ``config.yaml`` and ``checkpoints/{last,best}.safetensors`` as artifacts. The run's id
is kept in ``<run folder>/mlflow_run.json``: a resumed run continues that MLflow run (when it is
in the same store) and appends to its metric histories; a parameter a resume changed (the
budget) keeps its first value and the change is noted in the tag ``unetfamily.resumed_with``.
``--overwrite`` does not delete the store or the record: the replaced run stays in the store
(ended as KILLED if it was still running) and the new one is a second run beside it.
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from unetfamily import __version__
from unetfamily.config import Config
from unetfamily.engine.loggers import RunLogger
from unetfamily.errors import ConfigError, require
from unetfamily.files import write_json

log = logging.getLogger(__name__)

__all__ = ["RECORD", "STORE", "MlflowLogger", "tracking_uri", "mlflow_client", "open_run", "log_params",
           "flat_params", "read_record"]

#: The file in a run folder (or a comparison's folder) that names its MLflow run.
RECORD = "mlflow_run.json"
#: The folder of the default local store, in the run folder or the comparison's folder.
STORE = "mlflow"
#: MLflow's run status for each way a run ends.
STATUS = {"finished": "FINISHED", "stopped": "KILLED", "failed": "FAILED"}
_SQLITE = "sqlite:///"
_MAX_VALUE = 6000  # MLflow's longest parameter value
_BATCH = 100  # parameters per log_batch request (MLflow's limit)


def tracking_uri(configured: str | None, folder: Path) -> str:
    """The tracking URI: ``configured``, else ``$MLFLOW_TRACKING_URI``, else the SQLite store under ``folder``."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or f"{_SQLITE}{Path(folder) / STORE / 'mlflow.db'}"
    if uri.startswith(_SQLITE) and not uri.startswith(_SQLITE + "/") and ":memory:" not in uri:
        uri = _SQLITE + str(Path(uri[len(_SQLITE):]).resolve())
    return uri


def _artifact_root(uri: str) -> str | None:
    """Where a new experiment in a local SQLite store keeps its artifacts: ``artifacts/`` beside the database
    (MLflow's default would be ``./mlruns`` in the working folder). None for other stores: theirs."""
    if not uri.startswith(_SQLITE + "/"):
        return None
    return (Path(uri[len(_SQLITE):]).parent / "artifacts").as_uri()


def mlflow_client(uri: str) -> Any:
    """An ``MlflowClient`` on ``uri``; MissingExtraError naming the pip extra when MLflow is not installed."""
    require("mlflow", "mlflow", "the mlflow logger")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _experiment_id(client: Any, name: str, uri: str) -> str:
    """The id of experiment ``name``, created (artifacts beside a local store) when it does not exist."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return client.create_experiment(name, artifact_location=_artifact_root(uri))
        except MlflowException:  # created meanwhile by another process (Ray workers, a second compare)
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    if found.lifecycle_stage == "deleted":
        raise ConfigError(f"the MLflow experiment {name!r} in {uri} was deleted; restore it (mlflow experiments "
                          "restore) or choose another experiment name")
    return found.experiment_id


def read_record(path: Path) -> dict[str, Any] | None:
    """The ``mlflow_run.json`` at ``path`` (``run_id``, ``tracking_uri``, ``experiment_id``), None if absent or unreadable."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("run_id"), str) else None


def _status(client: Any, run_id: str) -> str | None:
    """The run's status (RUNNING, FINISHED, ...), None when the store has no such run."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        return None
    return None if run.info.lifecycle_stage == "deleted" else run.info.status


def open_run(client: Any, uri: str, experiment: str, record: Path, resume: bool, name: str,
             tags: Mapping[str, str]) -> str:
    """The id of the MLflow run to log to, recorded in ``record``: with ``resume``, the recorded one when it is in
    this store (set running again, ``tags`` set again); else a new run of ``experiment``."""
    saved = read_record(record)
    if saved is not None and saved.get("tracking_uri") == uri:
        status = _status(client, saved["run_id"])
        if resume and status is not None:
            client.update_run(saved["run_id"], status="RUNNING")
            for key, value in tags.items():
                client.set_tag(saved["run_id"], key, value)
            log.info("MLflow: continuing run %s in %s", saved["run_id"], uri)
            return saved["run_id"]
        if status == "RUNNING":  # the run this one replaces (--overwrite) never ended
            client.set_terminated(saved["run_id"], "KILLED")
    elif resume and saved is not None:
        log.warning("MLflow: %s names run %s in %s, not in %s; logging to a new run", record, saved["run_id"],
                    saved.get("tracking_uri"), uri)
    experiment_id = _experiment_id(client, experiment, uri)
    run_id = client.create_run(experiment_id, tags=dict(tags), run_name=name).info.run_id
    write_json(record, {"run_id": run_id, "tracking_uri": uri, "experiment_id": experiment_id})
    log.info("MLflow: run %s in %s (experiment %r)", run_id, uri, experiment)
    return run_id


def flat_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"train": {"epochs": 3}}`` -> ``{"train.epochs": "3"}``: dotted keys, ``str()`` values (lists, None,
    empty mappings too); keys cleaned to MLflow's characters, values cut to its 6000."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = re.sub(r"[^\w./\- ]", "_", f"{prefix}{key}")
        if isinstance(value, Mapping) and value:
            flat.update(flat_params(value, f"{name}."))
        else:
            text = str(value)
            flat[name] = text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 3] + "..."
    return flat


def log_params(client: Any, run_id: str, params: Mapping[str, str]) -> None:
    """Log ``params`` the run does not have yet; one that differs from its logged value (MLflow refuses to change
    a parameter) is noted in the tag ``unetfamily.resumed_with``."""
    from mlflow.entities import Param

    logged = client.get_run(run_id).data.params
    new = [Param(k, v) for k, v in params.items() if k not in logged]
    for i in range(0, len(new), _BATCH):
        client.log_batch(run_id, params=new[i: i + _BATCH])
    changed = [f"{k}: {logged[k]} -> {v}" for k, v in params.items() if k in logged and logged[k] != v]
    if changed:
        log.info("MLflow: run %s keeps its first parameters; resumed with %s", run_id, "; ".join(changed))
        client.set_tag(run_id, "unetfamily.resumed_with", "; ".join(changed)[:5000])


class MlflowLogger(RunLogger):
    """One MLflow run: parameters, per-step metrics, images, the run's files as artifacts."""

    name = "mlflow"

    def __init__(self, client: Any, run_id: str) -> None:
        self.client, self.run_id = client, run_id

    @classmethod
    def open(cls, config: Config, run_dir: Path, resume: bool) -> MlflowLogger:
        """The MLflow run of the training run in ``run_dir`` (continued on ``resume``), as ``config`` says."""
        train = config.train
        uri = tracking_uri(train.mlflow_uri, run_dir)
        client = mlflow_client(uri)
        tags = {"unetfamily.version": __version__, "unetfamily.run_dir": str(Path(run_dir).resolve()),
                **{str(k): str(v) for k, v in train.mlflow_tags.items()}}
        name = tags.pop("mlflow.runName", Path(run_dir).resolve().name)
        return cls(client, open_run(client, uri, train.mlflow_experiment, Path(run_dir) / RECORD, resume, name, tags))

    def start(self, config: Mapping[str, Any]) -> None:
        params = {k: v for k, v in flat_params(config).items() if not k.startswith("train.mlflow_")}
        log_params(self.client, self.run_id, params)

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in values.items()])

    def image(self, name: str, image: Any, step: int) -> None:
        array = np.asarray(image.cpu() if hasattr(image, "cpu") else image)
        self.client.log_image(self.run_id, np.ascontiguousarray(array.transpose(1, 2, 0)), key=name, step=step)

    def artifacts(self, files: Mapping[str, Path]) -> None:
        for path, local in files.items():
            if PurePosixPath(path).name != Path(local).name:
                raise ValueError(f"artifact {path} must keep its file's name {Path(local).name}")
            folder = str(PurePosixPath(path).parent)
            self.client.log_artifact(self.run_id, str(local), None if folder == "." else folder)

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, STATUS.get(status, "FAILED"))
