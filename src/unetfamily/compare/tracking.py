"""``compare --loggers ...,mlflow``: one parent MLflow run for the comparison, one nested child per training run.

The parent run is named after ``--out``; its parameters are the comparison's options (without the
command line, a tag, and the ``mlflow_*`` options). Its id is kept in ``<out>/mlflow_run.json``,
so the same command run again (to resume, or after a change) continues the same parent. The store
is ``--mlflow-uri``, else ``$MLFLOW_TRACKING_URI``, else ``<out>/mlflow/mlflow.db`` (SQLite, see
:mod:`unetfamily.engine.mlflow_run`).

Every training run (variant, seed, fold) logs to its own MLflow run (:mod:`unetfamily.engine.loggers`)
in the same store and experiment, tagged ``mlflow.parentRunId`` (MLflow's nesting), ``variant``,
``seed`` and ``fold``: its config carries the absolute tracking URI and the tags, so a Ray worker
logs to the same store. Logging keys are not fingerprinted: a comparison with MLflow reuses the
runs of one without it, and the other way round. After the report is written, each child gets its
evaluation scores (``test/<metric>``), a finished run that has no child in this store yet (trained
without MLflow) gets one made from its folder (config, validation history, checkpoint), and the
parent gets ``report.html``, ``report.md``, ``results.json`` and ``results.csv`` as artifacts.
The parent ends FINISHED, or KILLED when interrupted, or FAILED on an error.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from unetfamily import __version__
from unetfamily.compare.config import CompareConfig
from unetfamily.compare.plan import PlannedRun
from unetfamily.compare.results import CompareResults, RunResult
from unetfamily.engine.mlflow_run import (RECORD, flat_params, log_params, mlflow_client, open_run, read_record,
                                          tracking_uri)

log = logging.getLogger(__name__)

__all__ = ["REPORT_FILES", "Tracking", "comparison_tracking"]

#: The report files the parent run keeps as artifacts.
REPORT_FILES = ("report.html", "report.md", "results.json", "results.csv")
#: What the parent's parameters leave out: the command line is a tag, the MLflow options say where, not what.
_NOT_PARAMS = ("command", "mlflow_")


class Tracking:
    """No tracking: the runs train as planned."""

    def nest(self, runs: list[PlannedRun]) -> list[PlannedRun]:
        """``runs`` with their configs set to log to a child of the comparison's run."""
        return runs

    def finish(self, runs: list[PlannedRun], results: CompareResults, out: Path) -> None:
        """Log the evaluation scores to the children and the report to the parent."""


class ComparisonRun(Tracking):
    """The comparison's MLflow run in ``uri``."""

    def __init__(self, client: Any, uri: str, run_id: str, experiment: str) -> None:
        self.client, self.uri, self.run_id, self.experiment = client, uri, run_id, experiment

    def nest(self, runs: list[PlannedRun]) -> list[PlannedRun]:
        return [dataclasses.replace(run, config=dataclasses.replace(run.config, train=self._train(run)))
                for run in runs]

    def _tags(self, run: PlannedRun) -> dict[str, str]:
        return {"mlflow.parentRunId": self.run_id, "mlflow.runName": run.label, "variant": run.variant.id,
                "seed": str(run.seed), "fold": str(run.fold.index)}

    def _train(self, run: PlannedRun) -> Any:
        train = run.config.train
        loggers = list(train.loggers) + ([] if "mlflow" in train.loggers else ["mlflow"])
        return dataclasses.replace(train, loggers=loggers, mlflow_uri=self.uri, mlflow_experiment=self.experiment,
                                   mlflow_tags=self._tags(run))

    def finish(self, runs: list[PlannedRun], results: CompareResults, out: Path) -> None:
        scored = {(r.variant, r.seed, r.fold): r for r in results.runs}
        for run in runs:
            result = scored.get((run.variant.id, run.seed, run.fold.index))
            if result is not None:
                child = self._child(run, result)
                logged = self.client.get_run(child).data.metrics  # a comparison run again logs them once
                self._log_scalars(child, {f"test/{k}": v for k, v in result.test.items()
                                          if logged.get(f"test/{k}") != v}, result.steps)
        for name in REPORT_FILES:
            if (out / name).is_file():
                self.client.log_artifact(self.run_id, str(out / name))
        log.info("MLflow: comparison run %s in %s (one child run per training run)", self.run_id, self.uri)

    def _child(self, run: PlannedRun, result: RunResult) -> str:
        """The child run of ``run``: the one it logged to in this store, or one made now from its folder."""
        record = read_record(run.dir / RECORD)
        if record is not None and record.get("tracking_uri") == self.uri:
            return record["run_id"]
        tags = {**self._tags(run), "unetfamily.version": __version__, "unetfamily.logged_after_training": "true"}
        name = tags.pop("mlflow.runName")
        child = open_run(self.client, self.uri, self.experiment, run.dir / RECORD, False, name, tags)
        params = {k: v for k, v in flat_params(run.config.to_dict()).items() if not k.startswith("train.mlflow_")}
        log_params(self.client, child, params)
        for entry in result.history:
            self._log_scalars(child, {f"val/{k}": v for k, v in entry.items() if k not in ("step", "epoch")},
                              int(entry.get("step", 0)))
        for path in ("config.yaml", "checkpoints/last.safetensors", "checkpoints/best.safetensors"):
            if (run.dir / path).is_file():
                folder = str(Path(path).parent)
                self.client.log_artifact(child, str(run.dir / path), None if folder == "." else folder)
        self.client.set_terminated(child, "FINISHED")
        return child

    def _log_scalars(self, run_id: str, values: dict[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in values.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if metrics:
            self.client.log_batch(run_id, metrics=metrics)


@contextlib.contextmanager
def comparison_tracking(cfg: CompareConfig, out: Path) -> Iterator[Tracking]:
    """The comparison's tracking: a :class:`ComparisonRun` with ``--loggers ...,mlflow`` (ended when the block
    ends, with the status it ended with), else a :class:`Tracking` that changes nothing."""
    if "mlflow" not in cfg.loggers:
        yield Tracking()
        return
    uri = tracking_uri(cfg.mlflow_uri, out)
    client = mlflow_client(uri)
    tags = {"unetfamily.command": cfg.command[:5000], "unetfamily.version": __version__,
            "unetfamily.out": str(Path(out).resolve())}
    run_id = open_run(client, uri, cfg.mlflow_experiment, Path(out) / RECORD, True, Path(out).resolve().name, tags)
    params = {k: v for k, v in flat_params(cfg.to_dict()).items() if not k.startswith(_NOT_PARAMS)}
    log_params(client, run_id, params)
    status = "FAILED"
    try:
        yield ComparisonRun(client, uri, run_id, cfg.mlflow_experiment)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        client.set_terminated(run_id, status)
