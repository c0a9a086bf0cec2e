"""The per-case arrays the ``compare`` report shows: evaluated images, their masks, each variant's predictions.

One compressed ``.npz`` per file, written atomically: ``names`` (N,) and, per field, either one
stacked array (every case the same size) or one array per case, ``<field>_<i>`` (sizes differ, as
in DSB2018 or any folder of photographs). Files written before per-case storage hold the stacked
form only; both read back as a list of arrays in case order.

``artifacts/samples.npz``: ``images`` (C, H, W) uint8 and ``masks`` (H, W) uint8 per case;
``artifacts/pred_<variant>.npz``: ``pred`` (H, W) uint8 class labels per case, the variant's
first-seed runs (every fold), matched to the samples by name.
"""
from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from unetfamily.compare.results import CompareResults
from unetfamily.compare.summary import as_float
from unetfamily.files import atomic_write_bytes

log = logging.getLogger(__name__)

__all__ = ["Cases", "first_seed_scores", "load_artifacts", "load_cases", "save_cases", "save_npz"]

#: ``{"names": [str], field: [array per case]}``
Cases = dict[str, list]


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """``arrays`` as one compressed ``.npz`` at ``path``, written atomically."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def save_cases(path: Path, names: Sequence[str], **fields: Sequence[np.ndarray]) -> None:
    """Write per-case arrays (one list per field, in ``names`` order), stacked when every case has one shape."""
    arrays: dict[str, np.ndarray] = {"names": np.array([str(n) for n in names])}
    for key, values in fields.items():
        if len(values) != len(names):
            raise ValueError(f"{key}: {len(values)} arrays for {len(names)} names")
        if len({v.shape for v in values}) <= 1 and values:
            arrays[key] = np.stack(values)
        else:
            arrays.update({f"{key}_{i}": v for i, v in enumerate(values)})
    save_npz(path, **arrays)


def load_cases(path: Path, fields: Sequence[str]) -> Cases:
    """``{"names": [...], field: [one array per case]}`` of a file written by :func:`save_cases` (or stacked).

    Raises KeyError when a field is missing, OSError/ValueError when the file is unreadable.
    """
    try:
        with np.load(path, allow_pickle=False) as f:
            names = [str(n) for n in f["names"]]
            out: Cases = {"names": names}
            for key in fields:
                out[key] = list(f[key]) if key in f.files else [f[f"{key}_{i}"] for i in range(len(names))]
    except (zipfile.BadZipFile, EOFError) as exc:  # cut short or not an .npz: unreadable, as a ValueError
        raise ValueError(f"{path} is not a readable .npz ({exc})") from exc
    return out


def load_artifacts(results: CompareResults, report_dir: Path) -> tuple[Cases | None, dict[str, list[np.ndarray]]]:
    """(samples, predictions per variant id in the samples' order); missing or mismatched files are logged.

    Samples: ``{"names", "images" [(C, H, W) uint8], "masks" [(H, W) uint8]}``; a variant's predictions
    are left out unless they name the same cases with the same sizes.
    """
    art = results.artifacts
    if art.samples is None:
        log.warning("the results name no sample images: qualitative figures left out")
        return None, {}
    try:
        samples = load_cases(report_dir / art.samples, ("images", "masks"))
    except (KeyError, OSError, ValueError) as err:
        log.warning("no sample images for the report (%s): qualitative figures left out", err)
        return None, {}
    index = {n: i for i, n in enumerate(samples["names"])}
    preds = {}
    for vid, rel in art.predictions.items():
        try:
            found = load_cases(report_dir / rel, ("pred",))
        except (KeyError, TypeError, OSError, ValueError) as err:
            log.warning("predictions of %r not readable (%s): left out of the figures", vid, err)
            continue
        by_name = dict(zip(found["names"], found["pred"], strict=True))
        if set(by_name) != set(index) or any(by_name[n].shape != samples["masks"][i].shape for n, i in index.items()):
            log.warning("predictions of %r do not match the eval images: left out of the figures", vid)
            continue
        preds[vid] = [by_name[n] for n in samples["names"]]
    return samples, preds


def first_seed_scores(results: CompareResults, vid: str, metric: str = "dice") -> dict[str, float]:
    """Per-case ``metric`` of the variant's first-seed runs (every fold): the runs whose predictions are saved."""
    runs = results.runs_of(vid)
    seeds = results.protocol.seeds
    first = seeds[0] if seeds and any(r.seed == seeds[0] for r in runs) else (runs[0].seed if runs else None)
    return {str(p.get("name")): as_float(p.get(metric)) for r in runs if r.seed == first for p in r.per_image}
