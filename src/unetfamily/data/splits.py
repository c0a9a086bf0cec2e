"""Deterministic train/val/test splits: seeded fractions, k folds, or list files.

All splits are functions of the sorted sample names and a seed (numpy's PCG64), so they are
identical on every machine and independent of file-system listing order.

A dataset config chooses one with its ``splits`` key:

- ``{train: lists/train.txt, val: lists/val.txt}``: list files (paths relative to the dataset root);
- ``{fractions: {train: 0.8, val: 0.1, test: 0.1}, seed: 0}``: a seeded random split;
- ``{folds: 5, fold: 0, seed: 0}``: k-fold cross-validation; ``val`` is fold ``fold``, ``train`` the rest.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unetfamily.data.base import SamplePaths
from unetfamily.data import options
from unetfamily.data.errors import DataConfigError, DataError, UnknownSplitError, check_keys, unknown_split
from unetfamily.data.io import IMAGE_SUFFIXES, read_lines

__all__ = ["check_listed", "kfold_split", "random_split", "read_split_file", "select_samples", "select_split"]

log = logging.getLogger(__name__)


def read_split_file(path: str | Path, names: Collection[str] | None = None) -> list[str]:
    """Sample names listed in a text file, one per line.

    Blank lines and ``#`` comments are skipped. A line naming paths (CamVid's
    ``/SegNet/CamVid/train/X.png /SegNet/CamVid/trainannot/X.png``) gives the stem of its first path.
    ``names``: the dataset's sample names, when known. A line that is one of them, or the path of a file
    whose stem is one (``images/case 7.png``), is taken whole, so a name may hold spaces.
    """
    path = Path(path)
    known = set(names) if names is not None else set()
    listed = []
    for line in read_lines(path, "split list"):
        line = line.split("#", 1)[0].strip()
        if line:
            listed.append(_listed_name(line, known))
    if not listed:
        raise DataError(f"{path}: split list is empty")
    return listed


def _stem(entry: str) -> str:
    """The sample name a list entry gives: the stem of a path (a ``/`` or an image suffix), else the entry."""
    is_path = "/" in entry or "\\" in entry or entry.lower().endswith(IMAGE_SUFFIXES)
    return Path(entry.replace("\\", "/")).stem if is_path else entry


def _listed_name(line: str, known: set[str]) -> str:
    """The sample a list line names: the whole line when it (or its path's stem) is a known name, else its
    first whitespace-separated path (a line may list an image and its mask)."""
    if known:
        line = unicodedata.normalize("NFC", line)  # sample ids are in normal form C (unetfamily.data.pattern)
    for candidate in (line, _stem(line)):
        if candidate in known:
            return candidate
    return _stem(line.split()[0])


def check_listed(names: list[str], path: Path, strict: bool = False) -> list[str]:
    """``names`` read from the split list ``path``; a name listed twice is logged, or with ``strict`` refused.

    A sample listed twice is served twice (it weighs double in training and evaluation), which is
    rarely intended: a WARNING names the list and the repeated names; ``strict: true`` makes it a DataError.
    """
    seen: set[str] = set()
    twice = sorted({n for n in names if n in seen or seen.add(n)})
    if twice:
        text = f"{path}: {len(twice)} sample(s) are listed more than once, e.g. {twice[:5]}"
        if strict:
            raise DataError(f"{text}; list each sample once (strict: true)")
        log.warning("%s; they are served as often as listed (strict: true refuses this)", text)
    return names


def random_split(names: Sequence[str], fractions: Mapping[str, float], seed: int = 0) -> dict[str, list[str]]:
    """Shuffle sorted ``names`` with ``seed`` and cut them by ``fractions`` (which must sum to 1).

    Counts are rounded down and the remainder goes to the first split, so every name lands in
    exactly one split.
    """
    options.mapping("splits.fractions", fractions, "give {split: fraction, ...} summing to 1, e.g. {train: 0.8}")
    fractions = {str(k): options.number(f"splits.fractions.{k}", f, lo=0.0, hi=1.0) for k, f in fractions.items()}
    total = sum(fractions.values())
    if not fractions or abs(total - 1.0) > 1e-6:
        raise DataConfigError(f"split fractions {dict(fractions)} must be non-negative and sum to 1 (sum is {total:g})")
    order = sorted(names)
    perm = np.random.default_rng(seed).permutation(len(order))
    counts = {k: int(np.floor(f * len(order))) for k, f in fractions.items()}
    first = next(iter(counts))
    counts[first] += len(order) - sum(counts.values())
    out, start = {}, 0
    for key, count in counts.items():
        out[key] = [order[i] for i in perm[start : start + count]]
        start += count
    return out


def kfold_split(names: Sequence[str], folds: int, fold: int, seed: int = 0) -> dict[str, list[str]]:
    """k-fold cross-validation: ``val`` is fold ``fold`` of a seeded shuffle, ``train`` the others."""
    folds, fold = options.integer("splits.folds", folds), options.integer("splits.fold", fold)
    if folds < 2 or not 0 <= fold < folds:
        raise DataConfigError(f"k-fold split needs folds >= 2 and 0 <= fold < folds; got folds={folds}, fold={fold}")
    order = sorted(names)
    if len(order) < folds:
        raise DataError(f"{len(order)} samples cannot make {folds} folds")
    perm = np.random.default_rng(seed).permutation(len(order))
    parts = np.array_split(perm, folds)
    return {
        "train": [order[i] for k, p in enumerate(parts) if k != fold for i in p],
        "val": [order[i] for i in parts[fold]],
    }


def _seeded_split(names: Sequence[str], split: str, spec: Mapping[str, Any]) -> list[str]:
    check_keys("splits", spec, ("fractions", "folds", "fold", "seed"))
    if ("fractions" in spec) == ("folds" in spec) or ("fold" in spec and "folds" not in spec):
        raise DataConfigError(
            f"splits={dict(spec)} is invalid; give either {{fractions: {{...}}, seed}} or {{folds, fold, seed}}, "
            "not a mix"
        )
    seed = options.integer("splits.seed", spec.get("seed", 0), lo=0)
    if "folds" in spec:
        parts = kfold_split(names, spec["folds"], spec.get("fold", 0), seed)
    else:
        parts = random_split(names, spec["fractions"], seed)
    empty = [name for name, part in parts.items() if not part]
    if empty:  # every split is checked, so an empty 'val' is refused when 'train' is built
        raise DataConfigError(
            f"split {empty[0]!r} gets none of the {len(names)} samples with splits {dict(spec)}; "
            "raise its fraction, drop it, or add samples"
        )
    if split not in parts:
        raise unknown_split("split", split, parts)
    return parts[split]


def select_split(
    names: Sequence[str], split: str, spec: Mapping[str, Any] | None, root: Path | None = None, *, strict: bool = False
) -> list[str]:
    """The names of ``split`` under a config's ``splits`` spec (see the module docstring).

    ``split="all"`` returns every name. List files are resolved against ``root``; a declared list
    that is missing, empty or unreadable, or names a sample missing from ``names``, is a DataError
    naming the list file (never a fallback to another split). A split the spec does not define is
    an :class:`~unetfamily.data.errors.UnknownSplitError`. Names listed twice: :func:`check_listed`.
    """
    if split == "all":
        return list(names)
    if not spec:
        raise UnknownSplitError(
            f"split {split!r} requested but the dataset defines no 'splits'; add them to its config, e.g. "
            "splits: {fractions: {train: 0.8, val: 0.2}, seed: 0} (docs/data.md), or use split 'all'"
        )
    form = "give {split: list_file, ...}, {fractions: {...}, seed}, or {folds, fold, seed}"
    spec = dict(options.mapping("splits", spec, form))
    if "fractions" in spec or "folds" in spec:
        return _seeded_split(names, split, spec)
    for key, value in spec.items():
        options.text(f"splits.{key}", value, "give the path of a list file (one sample name per line)")
    if split not in spec:
        raise unknown_split("split", split, spec, hint="another split needs a list file in the dataset's 'splits'")
    path = Path(spec[split])
    if root is not None and not path.is_absolute():
        path = root / path
    listed = check_listed(read_split_file(path, names), path, strict)
    known = set(names)
    missing = [n for n in listed if n not in known]
    if missing:
        raise DataError(f"{path}: {len(missing)} listed sample(s) have no image/mask pair, e.g. {missing[:5]}")
    return listed


def select_samples(
    samples: Sequence[SamplePaths],
    split: str,
    spec: Mapping[str, Any] | None,
    root: Path | None = None,
    *,
    strict: bool = False,
) -> list[SamplePaths]:
    """The image/mask pairs of ``split``, chosen by :func:`select_split` from their names."""
    by_name = {s.name: s for s in samples}
    return [by_name[n] for n in select_split(list(by_name), split, spec, root, strict=strict)]
