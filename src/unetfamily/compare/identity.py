"""Run identity: the fingerprint of everything that decides a run's result, and one writer per run.

A finished run is reused only when its saved fingerprint equals the one the current command
would write. The fingerprint holds the resolved training config (model and its arguments,
optimiser, schedule, loss, budget, seed, input size, augmentation, device), the names and a
content hash of every sample of every split the run reads, the fold, and the package version;
fields that cannot change a result (output folder, progress bars, loggers, log intervals) are left out.
An encoder's weight file (``model.kwargs.encoder_weights``) counts by the SHA-256 of its bytes, not
its path: other weights in the same file retrain the run, the same weights moved elsewhere do not.

Each run folder is guarded by a lock file (the ``filelock`` package: ``fcntl`` on POSIX, with
Windows support), so two ``compare`` processes on one ``--out`` never train the same run: the
second skips runs the first holds and reuses them once they are done.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from unetfamily import __version__
from unetfamily.errors import ConfigError, UnetFamilyError, file_sha256, regular_file

__all__ = ["COMPARISON_ENTRIES", "FINGERPRINT_FILE", "PLAN_FILE", "PLAN_FINGERPRINT_FILE", "StaleRunError",
           "data_digest", "run_fingerprint", "differing_fields", "run_lock", "weights_sha256", "encoder_record"]

log = logging.getLogger(__name__)

FINGERPRINT_FILE = "fingerprint.json"
#: A comparison's plan in its --out, and the plan's cache of the data's fingerprint (compare.planned writes both)
PLAN_FILE, PLAN_FINGERPRINT_FILE = "plan.yaml", "plan_fingerprint.json"
#: What a comparison writes at the top of its --out, before and after its runs (the plan and its fingerprint
#: cache come first): a folder holding any of them is a comparison's, which the same command resumes
COMPARISON_ENTRIES = ("runs", "results.json", "mlflow_run.json", PLAN_FILE, PLAN_FINGERPRINT_FILE, "lr_search",
                      "artifacts")
#: Config fields that do not change what a run learns or scores.
NOT_FINGERPRINTED = ("output_dir", "train.progress", "train.loggers", "train.mlflow_", "train.log_every",
                     "train.image_every", "train.checkpoint_every", "loader.num_workers")


class StaleRunError(UnetFamilyError, RuntimeError):
    """A finished run in the output folder was made under other settings than the ones asked for."""


def data_digest(dataset: Any) -> dict[str, Any]:
    """``{"count", "names", "sha256", "foreground"}`` of a dataset, reading every case once.

    ``sha256`` covers the sample names and every image and mask array as decoded (dtype, shape
    and bytes, before any resize or augmentation), so renamed copies of the same files match and
    an edited mask does not. ``foreground[i]``: case i has a pixel of a class other than the
    background (what cross-validation folds are stratified by). ``dataset`` is a
    :class:`~unetfamily.data.SegmentationDataset`.
    """
    digest = hashlib.sha256()
    names = [dataset.sample_name(i) for i in range(len(dataset))]
    ignore = dataset.info.ignore_index
    foreground = []
    for i, name in enumerate(names):
        digest.update(name.encode() + b"\0")
        image, mask = dataset.read(i)
        for array in (image, mask):
            a = np.ascontiguousarray(array)
            digest.update(f"{a.dtype.str}{a.shape}".encode())
            digest.update(a.tobytes())
        foreground.append(bool(((mask > 0) & (mask != ignore)).any()))
    return {"count": len(names), "names": names, "sha256": digest.hexdigest(), "foreground": foreground}


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = list(value) if isinstance(value, tuple) else value
    return flat


def run_fingerprint(config: Mapping[str, Any], data: Mapping[str, Mapping[str, Any]], **extra: Any) -> dict[str, Any]:
    """The flat ``{field: value}`` fingerprint of one run.

    ``config`` is the run's resolved training config as a dict, ``data`` the :func:`data_digest`
    of each split it reads (``{"train": ..., "eval": ...}``), ``extra`` anything else that
    decides the result (fold, input size, evaluation split).
    """
    flat = {k: v for k, v in _flatten(config).items() if not k.startswith(NOT_FINGERPRINTED)
            and not (k.startswith("data.") and k.endswith(".root"))}  # where the data lies: its digests decide
    weights = flat.pop("model.kwargs.encoder_weights", None)
    if weights is not None:  # the bytes decide the result, not where the file lies
        flat["model.kwargs.encoder_weights.sha256"] = weights_sha256(weights)
    for split, digest in data.items():
        flat[f"samples.{split}.count"] = digest["count"]
        flat[f"samples.{split}.sha256"] = digest["sha256"]
    flat.update({f"run.{k}": (list(v) if isinstance(v, tuple) else v) for k, v in extra.items()})
    flat["version"] = __version__
    return dict(sorted(flat.items()))


def weights_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a weight file's bytes, read once per path, size and modification time (every run asks)."""
    path = regular_file(path, "--encoder-weights file", ConfigError)
    try:
        stat = os.stat(path)
        return _sha256(str(path), stat.st_size, stat.st_mtime_ns)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the --encoder-weights file ({exc.strerror or exc})") from exc


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def encoder_record(config: Any) -> dict[str, Any] | None:
    """What results.json and the report keep of a CompareConfig's ``--encoder``/``--encoder-weights``.

    ``{"name", "weights": file name or None, "sha256": hex or None}``; None without an encoder. A
    missing or unreadable weight file is a ConfigError naming it (asked before anything trains).
    """
    if config.encoder is None:
        return None
    if config.encoder_weights is None:
        return {"name": config.encoder, "weights": None, "sha256": None}
    return {"name": config.encoder, "weights": Path(config.encoder_weights).name,
            "sha256": weights_sha256(config.encoder_weights)}


def differing_fields(saved: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """The fields whose values differ between two fingerprints (including fields only one has)."""
    return sorted(k for k in set(saved) | set(wanted) if saved.get(k, "<absent>") != wanted.get(k, "<absent>"))


def describe_difference(run: str, fields: Iterable[str], saved: Mapping[str, Any], wanted: Mapping[str, Any],
                        limit: int = 6) -> str:
    """One line: which fields of ``run`` differ, with the saved and the wanted value of the first few."""
    fields = list(fields)
    shown = ", ".join(f"{f} ({_short(saved.get(f))} -> {_short(wanted.get(f))})" for f in fields[:limit])
    more = f" and {len(fields) - limit} more" if len(fields) > limit else ""
    return f"{run}: {shown}{more}"


def _short(value: Any) -> str:
    text = "absent" if value is None else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def run_lock(run_dir: Path) -> Any:
    """A lock on ``run_dir`` (a ``filelock.FileLock`` on ``run_dir/run.lock``); use ``acquire(timeout=0)``."""
    from filelock import FileLock

    run_dir.mkdir(parents=True, exist_ok=True)
    return FileLock(str(run_dir / "run.lock"))
