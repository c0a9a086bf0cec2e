"""The run folder a training writes into: never replaced unasked, replaced on request, resumed as it was.

:func:`~unetfamily.engine.train.fit` writes four things into ``output_dir``: ``config.yaml``,
``train.log``, ``tensorboard/`` and ``checkpoints/{last,best}.safetensors`` (:data:`RUN_FILES`).
Before a run reads data or writes anything, :func:`prepare_run_folder` checks the folder:

* a folder holding any of them is refused (:class:`TrainingError`, naming what it holds and the
  ways out) unless the run continues it (``resume``) or replaces it (``overwrite``, which deletes
  those files and keeps every other file there);
* ``resume`` needs ``checkpoints/last.safetensors``.

A resumed run keeps the config saved in its checkpoint. The config it is given may change only
the budget (:data:`BUDGET_KEYS`) and settings that decide how, not what, is computed
(:data:`RUNTIME_KEYS`); :func:`resumed_config` refuses any other difference, naming each field
with its saved and its new value. :func:`config_for_resume` builds the config the command line
resumes with: the saved config with the user's keys on top.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from unetfamily.config import Config, ConfigError, config_from_dict, upgrade_old_keys
from unetfamily.engine.checkpoint import CheckpointError, load_checkpoint
from unetfamily.errors import UnetFamilyError
from unetfamily.files import atomic_write_bytes, to_jsonable

log = logging.getLogger(__name__)

__all__ = ["TrainingError", "RUN_FILES", "BUDGET_KEYS", "RUNTIME_KEYS", "prepare_run_folder", "resumed_config",
           "config_for_resume", "write_run_config"]

LAST = "checkpoints/last.safetensors"
#: What fit writes into a run folder (and what ``overwrite`` deletes), relative to it.
RUN_FILES = (LAST, "checkpoints/best.safetensors", "config.yaml", "train.log", "tensorboard")
#: Config keys a resumed run may change: how long it trains.
BUDGET_KEYS = ("train.epochs", "train.max_steps", "train.max_seconds", "train.early_stop_patience")
#: Config keys a resumed run may change: where and how it runs, what it logs; not what it computes.
RUNTIME_KEYS = ("output_dir", "train.device", "train.progress", "train.loggers", "train.mlflow_uri",
                "train.mlflow_experiment", "train.mlflow_tags", "train.log_every",
                "train.image_every", "train.checkpoint_every", "train.eval_every", "train.compile",
                "train.memory_saving", "train.channels_last", "train.max_skipped_fraction",
                "loader.num_workers", "loader.val_batch_size",
                # read only when a run starts: a resumed run takes every weight from its checkpoint
                "model.kwargs.encoder_weights")


class TrainingError(UnetFamilyError, RuntimeError):
    """Training cannot go on (an unwritable run folder, a non-finite loss under nan_policy='stop', ...)."""


def prepare_run_folder(run_dir: Path, resume: bool, overwrite: bool, main: bool = True) -> None:
    """Refuse, clear or check ``run_dir`` before a run reads or writes anything (see the module docstring).

    Every rank of a distributed run calls it; only the ``main`` one deletes files.
    """
    if resume and overwrite:
        raise ConfigError("--resume continues the run in output_dir and --overwrite replaces it; give one of them")
    if run_dir.exists() and not run_dir.is_dir():
        raise TrainingError(f"output_dir {run_dir} is a file, not a folder; choose another output_dir")
    found = [name for name in RUN_FILES if os.path.lexists(run_dir / name)]
    if resume:
        if LAST not in found:
            raise _no_checkpoint(run_dir, found)
        return
    if not found:
        return
    if not overwrite:
        raise TrainingError(
            f"output_dir {run_dir} already holds a run ({_describe(run_dir, found)}); nothing was changed. "
            f"Continue it with --resume, replace it with --overwrite (deletes {', '.join(found)} there and keeps "
            "every other file), or choose another output_dir"
        )
    if main:
        _remove(run_dir, found)


def _no_checkpoint(run_dir: Path, found: list[str]) -> TrainingError:
    if found:  # config.yaml, train.log, ...: a run stopped before its first checkpoint
        return TrainingError(f"--resume: {run_dir} holds no checkpoint to continue from ({LAST} is missing; it holds "
                             f"{', '.join(found)} of a run stopped before its first checkpoint); start that run "
                             "again with --overwrite instead of --resume")
    return TrainingError(f"--resume: {run_dir} holds no run to continue ({LAST} is missing); check output_dir, "
                         "or train without --resume to start a new run there")


def _describe(run_dir: Path, found: list[str]) -> str:
    """What the run in ``run_dir`` is: its step and best score when a checkpoint is readable, and its files."""
    files = ", ".join(found)
    for name in (LAST, "checkpoints/best.safetensors"):
        if name not in found:
            continue
        try:
            ckpt = load_checkpoint(run_dir / name)
        except CheckpointError:
            return f"{files}; {name} cannot be read"
        train = ckpt.config.get("train") if isinstance(ckpt.config, dict) else None
        monitor = train.get("monitor", "dice") if isinstance(train, dict) else "dice"
        best = ckpt.extra.get("best")
        score = f", best {monitor} {best:.4f}" if isinstance(best, (int, float)) else ""
        return f"a run at step {ckpt.step}{score}: {files}"
    return f"{files} of a run that saved no checkpoint"


def _remove(run_dir: Path, found: list[str]) -> None:
    """Delete the run files ``found`` in ``run_dir`` (and leftover checkpoint temporaries), nothing else."""
    log.warning("--overwrite: deleting the run in %s (%s)", run_dir, ", ".join(found))
    checkpoints = run_dir / "checkpoints"
    try:
        for name in found:
            path = run_dir / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        for leftover in checkpoints.glob(".*.safetensors.tmp-*"):  # of writes a crash interrupted
            leftover.unlink(missing_ok=True)
    except OSError as exc:
        raise TrainingError(f"--overwrite: cannot delete {exc.filename or run_dir}: {exc.strerror or exc}; "
                            "delete it yourself or choose another output_dir") from exc
    with contextlib.suppress(OSError):
        checkpoints.rmdir()  # only when nothing of the user's is left in it


def _flat(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"epochs": 3}}`` -> ``{"train.epochs": 3}`` (lists stay values)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


_UNSET = object()


def _shown(value: Any) -> str:
    return "(not set)" if value is _UNSET else repr(value)


def resumed_config(saved: Config, config: Config, run_dir: Path) -> Config:
    """``config`` to continue the run whose checkpoint saved ``saved``; only budget and run-time keys may differ.

    ``in_channels``/``num_classes`` that ``config`` leaves to the data are taken from ``saved``.
    Each change is logged; any change to another key raises :class:`TrainingError` naming every
    such key with both values.
    """
    kwargs = {**{k: v for k, v in saved.model.kwargs.items() if k in ("in_channels", "num_classes")},
              **config.model.kwargs}
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, kwargs=kwargs))
    old, new = _flat(to_jsonable(saved.to_dict())), _flat(to_jsonable(config.to_dict()))
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k, _UNSET) != new.get(k, _UNSET))
    refused = [k for k in changed if k not in BUDGET_KEYS + RUNTIME_KEYS and not k.startswith("train.mlflow_tags.")]
    if refused:
        shown = "; ".join(f"{k} {_shown(old.get(k, _UNSET))} -> {_shown(new.get(k, _UNSET))}" for k in refused[:8])
        more = f" (and {len(refused) - 8} more)" if len(refused) > 8 else ""
        raise TrainingError(
            f"--resume: the run in {run_dir} was trained with other settings than those given: {shown}{more}. "
            f"A resumed run may change only its budget ({', '.join(BUDGET_KEYS)}) and how it runs (train.device, "
            "loader.num_workers, logging and checkpoint intervals; see docs/training.md); nothing was changed. "
            "To train with these settings, choose a new output_dir (or replace this run with --overwrite)"
        )
    for key in changed:
        log.info("resuming with %s %s -> %s", key, _shown(old.get(key, _UNSET)), _shown(new.get(key, _UNSET)))
    return config


def _merged(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``top``'s keys on top, sections merged key by key."""
    merged = dict(base)
    for key, value in top.items():
        below = merged.get(key)
        merged[key] = _merged(below, value) if isinstance(below, Mapping) and isinstance(value, Mapping) else value
    return merged


def config_for_resume(user: Mapping[str, Any]) -> Config:
    """The config to resume the run in ``user``'s ``output_dir`` with: its saved config, ``user``'s keys on top.

    ``user`` holds only what the user gave (a config file's keys, overrides applied), so that
    ``unetfamily train --resume output_dir=runs/x train.epochs=45`` changes the epochs alone.
    Raises :class:`TrainingError` when the folder holds no checkpoint to resume.
    """
    run_dir = Path(config_from_dict(dict(user)).output_dir)  # also checks the user's keys
    found = [name for name in RUN_FILES if os.path.lexists(run_dir / name)]
    if LAST not in found:
        raise _no_checkpoint(run_dir, found)
    saved = load_checkpoint(run_dir / LAST).config
    if not isinstance(saved, dict):
        raise CheckpointError(f"{run_dir / LAST}: its saved config is not a mapping; the checkpoint is damaged")
    merged = _merged(upgrade_old_keys(saved), upgrade_old_keys(dict(user)))  # 0.1.0's train.tensorboard as loggers
    merged["output_dir"] = str(run_dir)
    return config_from_dict(merged)


def write_run_config(run_dir: Path, cfg: Config) -> None:
    """Write the resolved ``cfg`` to ``run_dir/config.yaml`` atomically; a TrainingError naming the folder if not."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode())
    except OSError as exc:
        raise TrainingError(
            f"cannot write the run folder {run_dir}: {exc.strerror or exc}; choose a writable output_dir "
            "or free disk space"
        ) from exc
