"""Where a training run reports: the loggers of ``train.loggers`` behind one small interface.

The loop calls one :class:`Loggers`, whatever is listed: the parameters once at the start
(:meth:`~Loggers.start`), scalars every ``train.log_every`` steps and after each validation
(:meth:`~Loggers.scalars`), an overlay image every ``train.image_every`` steps
(:meth:`~Loggers.image`), the run's files at the end (:meth:`~Loggers.artifacts`), and
:meth:`~Loggers.close`. Both loggers take the same names: ``train/loss/<term>``, ``train/lr``,
``train/images_per_s``, ``val/<metric>`` (at the global step), ``train/overlay``, and per epoch
``data/images_per_s``, ``data/train_images_per_s``, ``data/waited_fraction``
(:mod:`~unetfamily.engine.throughput`).

* ``tensorboard``: event files in ``<output_dir>/tensorboard/`` (its files are already in the run
  folder, so it logs no parameters or artifacts);
* ``mlflow``: one MLflow run (:mod:`unetfamily.engine.mlflow_run`).

Loggers are made on rank 0 only (DDP) and never change what is computed. A logger that fails
while the run trains (a tracking server gone away) is reported once and switched off; the
training goes on. Failing to start one (a wrong tracking URI) stops the run before it trains.
"""
from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from unetfamily.config import Config
from unetfamily.errors import MissingExtraError

log = logging.getLogger(__name__)

__all__ = ["RunLogger", "Loggers", "TensorBoardLogger", "check_loggers", "make_loggers"]


class RunLogger:
    """One logger; every method does nothing unless a subclass says otherwise."""

    name = "logger"

    def start(self, config: Mapping[str, Any]) -> None:
        """The run's resolved config (a nested dict), once at the start (and again on resume)."""

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """Scalars ``{name: value}`` at the global ``step``."""

    def image(self, name: str, image: Any, step: int) -> None:
        """A (3, H, W) uint8 image (tensor or array) at ``step``."""

    def artifacts(self, files: Mapping[str, Path]) -> None:
        """Files to keep with the run: ``{path in the run: local file}``."""

    def close(self, status: str) -> None:
        """The run ended: ``finished``, ``stopped`` (a signal; resumable) or ``failed``."""


class Loggers:
    """The loggers of one run, called as one; a logger that raises is reported and dropped."""

    def __init__(self, loggers: list[RunLogger] | None = None) -> None:
        self.loggers = list(loggers or [])

    def __bool__(self) -> bool:
        return bool(self.loggers)

    def _each(self, method: str, *args: Any) -> None:
        for logger in list(self.loggers):
            try:
                getattr(logger, method)(*args)
            except Exception as exc:  # noqa: BLE001 - a logger's failure must not end the training
                log.warning("the %s logger failed (%s: %s); it logs nothing more for this run, training goes on",
                            logger.name, type(exc).__name__, exc)
                self.loggers.remove(logger)
                if method != "close":
                    self._close_quietly(logger)

    @staticmethod
    def _close_quietly(logger: RunLogger) -> None:
        try:
            logger.close("failed")
        except Exception:  # noqa: BLE001 - already reported as failed
            pass

    def start(self, config: Mapping[str, Any]) -> None:
        self._each("start", config)

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        self._each("scalars", values, step)

    def image(self, name: str, image: Any, step: int) -> None:
        self._each("image", name, image, step)

    def artifacts(self, files: Mapping[str, Path]) -> None:
        self._each("artifacts", {k: v for k, v in files.items() if Path(v).is_file()})

    def close(self, status: str) -> None:
        self._each("close", status)
        self.loggers = []


class TensorBoardLogger(RunLogger):
    """Scalars and images as TensorBoard event files in ``<run_dir>/tensorboard``."""

    name = "tensorboard"

    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def image(self, name: str, image: Any, step: int) -> None:
        self.writer.add_image(name, image, step)

    def close(self, status: str) -> None:
        self.writer.close()


def check_loggers(config: Config) -> None:
    """Before a run reads data: MissingExtraError when ``train.loggers`` lists MLflow and it is not installed."""
    if "mlflow" in config.train.loggers and importlib.util.find_spec("mlflow") is None:
        raise MissingExtraError("train.loggers lists mlflow, which is not installed: pip install 'unetfamily[mlflow]' "
                                "(or remove mlflow from train.loggers)")


def make_loggers(config: Config, run_dir: Path, resume: bool) -> Loggers:
    """The loggers ``config.train.loggers`` lists for the run in ``run_dir``, started with ``config``.

    ``resume``: the run continues from its checkpoint, and MLflow continues the run it logged to.
    """
    loggers: list[RunLogger] = []
    for name in config.train.loggers:
        if name == "tensorboard":
            try:
                loggers.append(TensorBoardLogger(run_dir))
            except ImportError:
                log.warning("tensorboard is not installed (pip install 'unetfamily[train]'); no TensorBoard logs")
        elif name == "mlflow":
            from unetfamily.engine.mlflow_run import MlflowLogger

            loggers.append(MlflowLogger.open(config, run_dir, resume))
    made = Loggers(loggers)
    made.start(config.to_dict())
    return made
