"""The runs of a comparison, planned before any is trained: their folders, configs and fingerprints.

One run = one (variant, seed, fold). Before anything trains, every planned run's folder is
checked: a folder made under other settings (another ``--data``, ``--lr``, budget, size, ...)
stops the comparison with one error that names the runs and the fields that differ, and the two
ways out (a new ``--out``, or ``--rerun`` to retrain those runs). Runs are then executed under a
lock per run folder: two comparisons on one ``--out`` share the work and never train a run twice.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from unetfamily.compare.config import CompareConfig
from unetfamily.compare.data import ComparisonData, Fold
from unetfamily.compare.identity import (
    FINGERPRINT_FILE, StaleRunError, describe_difference, differing_fields, run_fingerprint, run_lock,
)
from unetfamily.compare.variants import Variant
from unetfamily.config import Config, LoaderConfig, LossConfig, ModelConfig, OptimConfig, ScheduleConfig, TrainConfig
from unetfamily.data import DatasetInfo

log = logging.getLogger(__name__)

__all__ = ["PlannedRun", "base_config", "plan_runs", "check_stale", "run_config", "execute_locked", "saved_fingerprint",
           "scoring"]

T = TypeVar("T")


@dataclass
class PlannedRun:
    """One run to train (or resume, or reuse) and evaluate."""

    variant: Variant
    seed: int
    fold: Fold
    dir: Path
    config: Config
    fingerprint: dict[str, Any]
    save_predictions: bool  # the first seed's runs keep their predictions for the report's figures

    @property
    def label(self) -> str:
        return f"{self.variant.id} seed {self.seed}" + (f" fold {self.fold.index}" if self.dir.name.startswith("fold") else "")


def base_config(cfg: CompareConfig, data: dict[str, Any]) -> Config:
    """The training config every run shares: data, loader, loss, optimiser, schedule and budget."""
    return Config(
        data=data,
        loader=LoaderConfig(batch_size=cfg.batch_size),
        loss=LossConfig(name=cfg.loss),
        optim=OptimConfig(name="adamw", lr=cfg.lr, weight_decay=1e-4),
        schedule=ScheduleConfig(name="cosine", warmup_steps=10),
        train=TrainConfig(epochs=cfg.epochs, max_steps=cfg.steps, max_seconds=cfg.seconds, device=cfg.device,
                          progress=False, loggers=tensorboard_only(cfg), eval_every=1,
                          encoder_lr_mult=cfg.encoder_lr_mult, freeze_encoder_steps=cfg.freeze_encoder_steps),
    )


def tensorboard_only(cfg: CompareConfig) -> list[str]:
    """The runs' loggers before :mod:`unetfamily.compare.tracking` nests them under the comparison's MLflow run
    (learning-rate trials included): TensorBoard, unless --loggers leaves it out."""
    return [name for name in cfg.loggers if name == "tensorboard"]


def run_config(base: Config, variant: Variant, seed: int, run_dir: Path, lr: float | None = None) -> Config:
    """``base`` for one run: the variant's model, the seed, the run folder (and its learning rate)."""
    optim = base.optim if lr is None else dataclasses.replace(base.optim, lr=lr)
    return dataclasses.replace(
        base, model=ModelConfig(name=variant.model, kwargs=dict(variant.kwargs)), optim=optim,
        train=dataclasses.replace(base.train, seed=seed), output_dir=str(run_dir),
    )


def scoring(cfg: CompareConfig, info: DatasetInfo) -> dict[str, Any]:
    """The evaluation settings every run's fingerprint holds: the NSD tolerance, and when class 0 is content (scored
    like the other classes) ``scores_class0`` and ``crops_class0`` (foreground crops may target it since they do;
    runs trained before crop elsewhere). Both are absent for a background, so runs made before the data's
    ``background`` existed stay valid: they left class 0 out, as a background is left out now."""
    content = {} if info.has_background else {"scores_class0": True, "crops_class0": True}
    return {"nsd_tolerance": cfg.nsd_tolerance, **content}


def plan_runs(data: ComparisonData, variants: list[Variant], seeds: list[int], out: Path,
              base_of: Callable[[Fold], Config], lr_of: Callable[[Variant], float | None],
              extra: dict[str, Any],
              config_of: Callable[[Fold, Variant, int, Path], Config] | None = None) -> list[PlannedRun]:
    """Every (variant, seed, fold) run, variant by variant; ``extra`` joins each fingerprint (evaluation settings).

    ``config_of(fold, variant, seed, run_dir)``, when given, makes each run's config (``compare --plan``);
    otherwise it is ``base_of(fold)`` with the variant's model, the seed and ``lr_of(variant)``.
    """
    runs = []
    cross_validated = len(data.folds) > 1
    for variant in variants:
        for seed in seeds:
            for fold in data.folds:
                run_dir = out / "runs" / variant.id / f"seed{seed}"
                if cross_validated:
                    run_dir = run_dir / f"fold{fold.index}"
                config = (config_of(fold, variant, seed, run_dir) if config_of is not None
                          else run_config(base_of(fold), variant, seed, run_dir, lr_of(variant)))
                fingerprint = run_fingerprint(config.to_dict(), data.digests, fold=fold.index,
                                              eval_split=fold.eval.name, **extra)
                runs.append(PlannedRun(variant, seed, fold, run_dir, config, fingerprint, seed == seeds[0]))
    return runs


def saved_fingerprint(run_dir: Path) -> dict[str, Any] | None:
    """The fingerprint a run folder was made with; None when the folder holds nothing of a run."""
    path = run_dir / FINGERPRINT_FILE
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as exc:  # as a record of unknown settings: stale, --rerun clears it
            return {"fingerprint": f"unreadable ({type(exc).__name__}: {exc})"}
        return saved if isinstance(saved, dict) else {"fingerprint": "unreadable (not a JSON object)"}
    started = (run_dir / "result.json").is_file() or (run_dir / "checkpoints").is_dir()
    return {"fingerprint": "absent (made by unetfamily 0.1.0?)"} if started else None


def _stale(runs: list[PlannedRun]) -> list[tuple[PlannedRun, list[str], dict[str, Any]]]:
    found = []
    for run in runs:
        saved = saved_fingerprint(run.dir)
        if saved is not None:
            fields = differing_fields(saved, run.fingerprint)
            if fields:
                found.append((run, fields, saved))
    return found


def check_stale(runs: list[PlannedRun], out: Path, rerun: bool) -> None:
    """Stop (StaleRunError) if any planned run's folder was made under other settings; with ``rerun``, clear them."""
    stale = _stale(runs)
    if not stale:
        return
    if not rerun:
        shown = "; ".join(describe_difference(run.label, fields, saved, run.fingerprint) for run, fields, saved in stale[:3])
        more = f" (and {len(stale) - 3} more runs)" if len(stale) > 3 else ""
        raise StaleRunError(
            f"{out}: {len(stale)} run(s) there were made under other settings, so their results cannot be reused: "
            f"{shown}{more}. Nothing was trained. Either write to a new --out, or add --rerun to retrain those runs")
    for run, fields, _ in stale:
        with _locked(run, wait=False):
            log.warning("--rerun: retraining %s (%s differ)", run.label, ", ".join(fields[:4]))
            shutil.rmtree(run.dir)


@contextmanager
def _locked(run: PlannedRun, wait: bool) -> Iterator[bool]:
    """Hold the run folder's lock; yields False (without it) when another process holds it and not ``wait``."""
    from filelock import Timeout

    lock = run_lock(run.dir)
    try:
        lock.acquire(timeout=-1 if wait else 0)
    except Timeout:
        if not wait:
            raise StaleRunError(f"{run.dir} is being trained by another compare right now; "
                                "let it finish or stop it before using --rerun") from None
    try:
        yield True
    finally:
        lock.release()


def execute_locked(runs: list[PlannedRun], execute: Callable[[PlannedRun], T]) -> list[T]:
    """``execute(run)`` for every run, in order, each under its folder's lock; results in the runs' order.

    A run another process is training is put aside and done (in practice: reused) at the end,
    after waiting for that process to release it.
    """
    from filelock import Timeout

    results: dict[int, T] = {}
    deferred = []
    for i, run in enumerate(runs):
        lock = run_lock(run.dir)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info("%s is being trained by another compare; coming back to it", run.label)
            deferred.append(i)
            continue
        try:
            results[i] = execute(run)
        finally:
            lock.release()
    for i in deferred:
        log.info("waiting for another compare to finish %s", runs[i].label)
        with _locked(runs[i], wait=True):
            results[i] = execute(runs[i])
    return [results[i] for i in range(len(runs))]
