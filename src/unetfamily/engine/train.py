"""Training: ``fit(config)`` returns a :class:`TrainSummary`.

Three flat parts, as in torchvision's reference scripts and nanoGPT: :func:`setup_run` builds the
data, model, optimizer, loss and run state (:mod:`unetfamily.engine.run_setup`);
:func:`train_one_epoch` runs the steps (:mod:`unetfamily.engine.loop`, learning rate from
:func:`~unetfamily.engine.schedule.lr_at`); :func:`fit` below is the loop over epochs: train,
validate, checkpoint, stop on a budget, on patience or on a signal.

A run folder holds ``config.yaml`` (the resolved config), ``train.log``, ``tensorboard/`` and
``checkpoints/{last,best}.safetensors`` (and, with ``train.loggers: [mlflow]``, ``mlflow_run.json`` and
by default the MLflow store ``mlflow/``; see :mod:`unetfamily.engine.loggers`). ``last`` is written at the end of every epoch after
validation, every ``train.checkpoint_every`` steps inside one, and when SIGINT/SIGTERM stop the
run; a run resumed from it reaches the same weights as an uninterrupted one.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unetfamily.config import Config, check_config
from unetfamily.engine.checkpoint import copy_checkpoint
from unetfamily.engine.encoder_training import check_frozen_span
from unetfamily.engine.evaluate import evaluate
from unetfamily.engine.loop import StopFlag, StopRequested, train_one_epoch
from unetfamily.engine.run_setup import TrainingError, TrainRun, setup_run
from unetfamily.engine.score_order import finite_score, is_better, lower_is_better
from unetfamily.engine.status import RunProgress
from unetfamily.errors import unknown_choice

log = logging.getLogger(__name__)

__all__ = ["fit", "TrainSummary", "TrainingError"]


@dataclass
class TrainSummary:
    """What :func:`fit` returns."""

    run_dir: Path  # the run folder (the config's output_dir)
    steps: int  # optimiser steps done, counting those of the run this one resumed
    best: float | None  # best validation value of ``monitor`` (None before the first validation)
    monitor: str  # the metric that picks the best checkpoint (train.monitor)
    metrics: dict[str, Any]  # scores of the last validation in this process ({} if none ran)
    history: list[dict[str, float]]  # scalar scores of every validation, resumed ones included
    seconds: float  # wall time of this call's training loop
    interrupted: bool  # stopped by SIGINT/SIGTERM; ``last`` holds the step to resume from
    skipped_steps: int  # steps skipped for non-finite values (train.nan_policy='skip')


def fit(config: Config, resume: bool = False, overwrite: bool = False) -> TrainSummary:
    """Train a model as ``config`` says into ``config.output_dir``.

    An output_dir that already holds a run (a checkpoint, config.yaml, train.log or tensorboard/)
    is refused with a :class:`TrainingError`, before anything is read or written, unless
    ``resume`` continues it from ``checkpoints/last.safetensors`` (``config`` may then change only
    the budget and run-time settings of the saved config, see :mod:`unetfamily.engine.run_folder`)
    or ``overwrite`` deletes those files (and no others) and trains anew.

    Raises :class:`~unetfamily.config.ConfigError` for a config the data or model refuse,
    :class:`TrainingError` when training cannot go on, and
    :class:`~unetfamily.engine.checkpoint.CheckpointError` when a checkpoint cannot be read or written.
    """
    if not isinstance(config, Config):
        raise TypeError(f"fit takes a unetfamily.config.Config, not {type(config).__name__}; "
                        "use fit(load_config(path)) or fit(config_from_dict(mapping))")
    config = check_config(config)  # a Config built in Python gets the ranges a loaded one got
    run = setup_run(config, resume, overwrite)
    if run.dist.main:
        check_frozen_span(run.total_steps, run.encoder)
    state, stop, progress = run.state, StopFlag(), _progress(run)
    status = "finished"
    metrics: dict[str, Any] = {}
    interrupted = False
    with stop.catching_signals():
        started = time.perf_counter()
        if run.cfg.train.max_seconds is not None:
            run.deadline = started + run.cfg.train.max_seconds
        try:
            epoch = state.step // run.steps_per_epoch
            while state.step < run.total_steps:
                late = train_one_epoch(run, epoch, stop, progress)
                epoch += 1  # the epoch just trained (cut short when the time ran out: not complete)
                improved = False
                if late or state.step >= run.total_steps or epoch % max(1, run.cfg.train.eval_every) == 0:
                    metrics, improved = _validate(run, epoch)
                    progress.validated(state.step, metrics)
                run.save(run.last_path, state.step // run.steps_per_epoch if late else epoch)
                if improved and run.dist.main:  # best = the checkpoint just written (a hard link: no second write)
                    copy_checkpoint(run.last_path, run.best_path)
                if _out_of_time(run) or _out_of_patience(run):  # (late: the deadline has passed)
                    break
        except StopRequested:
            interrupted, status = True, "stopped"
            run.save(run.last_path, state.step // run.steps_per_epoch)
            log.warning("stopped by signal at step %d; checkpoint saved, continue with --resume", state.step)
        except BaseException:
            status = "failed"
            raise
        finally:
            progress.close(status)
            run.close(status)
    return TrainSummary(run.run_dir, state.step, state.best, run.cfg.train.monitor, metrics, state.history,
                        time.perf_counter() - started, interrupted, state.skipped_steps)


def _validate(run: TrainRun, epoch: int) -> tuple[dict[str, Any], bool]:
    """Score the model on the validation split, add the scores to the history; return them and whether they improved.

    The best is judged by :func:`~unetfamily.engine.score_order.is_better` in the direction of
    ``train.monitor``: a NaN score (e.g. precision before any positive prediction) is never the
    best and counts as "not improved" for early stopping. :func:`fit` then writes ``last`` and, on
    an improvement, makes ``best`` the same file, so ``best`` is never newer than ``last`` and a
    run stopped between the two (a full disk) resumes from ``last``.
    """
    info, state, train = run.info, run.state, run.cfg.train
    metrics = evaluate(run.model, run.val_loader, run.device, info.num_classes, info.ignore_index, amp=run.amp,
                       window=train.val_window, overlap=train.val_overlap,
                       window_batch=run.cfg.loader.val_batch_size or run.cfg.loader.batch_size,
                       include_background=not info.has_background)
    score = _monitored(metrics, train.monitor)
    metrics["step"], metrics["epoch"] = state.step, epoch
    state.history.append({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    run.loggers.scalars({f"val/{k}": v for k, v in metrics.items() if isinstance(v, float)}, state.step)
    log.info("epoch %d step %d: %s", epoch, state.step, _scores_line(metrics))
    if is_better(score, state.best, lower_is_better(train.monitor)):
        state.best, state.bad_evals = float(score), 0
        improved = True
    else:
        improved = False
        state.bad_evals += 1
        if finite_score(score) is None and run.dist.main:
            log.warning("epoch %d: %s is %s, not a score; counted as not improved (best so far: %s)",
                        epoch, train.monitor, score, state.best)
    _warn_skipped(run)
    return metrics, improved


def _monitored(metrics: dict[str, Any], monitor: str) -> Any:
    """The value of ``train.monitor`` in ``metrics``; a ConfigError when it is not a scalar validation score."""
    scores = sorted(k for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
    if monitor not in scores:
        raise unknown_choice("train.monitor", monitor, scores, hint="a scalar validation score")
    return metrics[monitor]


def _warn_skipped(run: TrainRun) -> None:
    """A warning line whenever steps were skipped for non-finite values, so a run never hides them."""
    skipped, steps = run.state.skipped_steps, run.state.step
    if skipped and run.dist.main:  # every rank skipped the same steps
        log.warning("%d of %d steps so far were skipped for non-finite values (train.nan_policy='skip'; the run "
                    "fails once more than train.max_skipped_fraction=%g of them are)", skipped, steps,
                    run.cfg.train.max_skipped_fraction)


def _out_of_time(run: TrainRun) -> bool:
    if run.deadline is None or time.perf_counter() < run.deadline:
        return False
    log.info("time budget of %.0f s reached after %d steps", run.cfg.train.max_seconds, run.state.step)
    return True


def _out_of_patience(run: TrainRun) -> bool:
    patience = run.cfg.train.early_stop_patience
    if patience is None or run.state.bad_evals < patience:
        return False
    log.info("early stop: %s did not improve for %d evaluations", run.cfg.train.monitor, patience)
    return True


def _progress(run: TrainRun) -> RunProgress:
    """The run's progress: ``status.json`` in the run folder (rank 0) and a tqdm bar over the steps (rank 0,
    train.progress, tqdm installed)."""
    bar = None
    if run.cfg.train.progress and run.dist.main:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=run.total_steps, initial=run.state.step, unit="step", dynamic_ncols=True, leave=False)
        except ImportError:
            pass
    last = run.state.history[-1] if run.state.history else None
    return RunProgress(run.run_dir if run.dist.main else None, run.state.step, run.total_steps, bar, last)


def _scores_line(metrics: dict[str, Any]) -> str:
    keys = ("dice", "iou", "miou", "pixel_accuracy", "loss")
    return " ".join(f"{k}={metrics[k]:.4f}" for k in keys if isinstance(metrics.get(k), float))
