"""Cross-validation folds over a pool of any dataset's splits.

:func:`stratified_folds` assigns every sample one of K folds, with each stratum (e.g. "has
foreground") spread evenly. The ``cv_fold`` dataset type then serves one fold of that assignment
from any other dataset type, whose config it wraps as ``base``::

    type: cv_fold
    base: {type: isbi2012_em, resize: [256, 256]}   # no 'augment' here (refused)
    pool: [train, val]                                # the base's splits to pool (the default)
    assignment: {train-volume_000: 0, ...}            # every pooled sample -> its fold
    fold: 2
    augment: medical                                  # applies to the fold's training cases only

Split ``train`` is the pooled samples of every other fold, ``val`` those of fold ``fold``.
``resize`` and ``cache`` belong to the base: a fold's samples are read by the base's reader and
resized once, by the same pipeline, so each equals the base dataset's sample bit for bit. Given
on the outer config, they are moved into ``base``. So is ``background`` (whether class 0 is a
background the foreground scores leave out): a fold scores as its base does, and an outer value
that contradicts the base's is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np

from unetfamily.data.base import SegmentationDataset, _as_size
from unetfamily.data.errors import DataConfigError, DataError, unknown_split
from unetfamily.data.registry import _background, build_dataset, load_data_config, register_dataset

__all__ = ["FoldDataset", "cv_fold", "data_geometry", "stratified_folds"]

log = logging.getLogger(__name__)

FOLD_SPLITS = ("train", "val")


def data_geometry(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The training images' geometry a dataset config gives, ``{"resize", "scale", "size"}`` (each None when not
    set): a ``cv_fold`` config's own, else its ``base``'s, where ``cv_fold`` moves ``resize`` (so predict and
    export resize inputs as a cross-validated run was trained)."""
    config = config if isinstance(config, Mapping) else {}
    base = config.get("base") if config.get("type") == "cv_fold" and isinstance(config.get("base"), Mapping) else {}
    return {key: config.get(key) if config.get(key) is not None else base.get(key) for key in ("resize", "scale", "size")}


def stratified_folds(names: Sequence[str], strata: Sequence[Hashable], folds: int, seed: int = 0) -> dict[str, int]:
    """Assign each of ``names`` a fold in ``0..folds-1``, every stratum spread evenly over the folds.

    Names are grouped by their stratum (``strata[i]`` belongs to ``names[i]``); each group is sorted,
    shuffled with ``seed`` and dealt round-robin, the deal continuing from one group to the next.
    So fold sizes differ by at most 1, and so do any one stratum's counts in two folds. The result
    depends only on the (name, stratum) pairs and the seed, not on their order.
    """
    names, strata = list(names), list(strata)
    if len(names) != len(strata):
        raise DataConfigError(
            f"stratified_folds: {len(names)} names but {len(strata)} strata; give one stratum per name"
        )
    seen: set[str] = set()
    duplicates = sorted({n for n in names if n in seen or seen.add(n)})
    if duplicates:
        raise DataConfigError(f"stratified_folds: duplicate sample names {duplicates[:5]}; names must be unique")
    if isinstance(folds, bool) or not isinstance(folds, Integral) or not 2 <= folds <= len(names):
        raise DataConfigError(
            f"folds={folds!r}: cross-validation needs 2 <= folds <= the number of samples ({len(names)})"
        )
    groups: dict[Hashable, list[str]] = {}
    for name, stratum in zip(names, strata):
        groups.setdefault(stratum, []).append(name)
    rng = np.random.default_rng(seed)
    assignment: dict[str, int] = {}
    dealt = 0
    for group in sorted((sorted(g) for g in groups.values()), key=lambda g: g[0]):
        for i in rng.permutation(len(group)):
            assignment[group[i]] = dealt % folds
            dealt += 1
    return {name: assignment[name] for name in names}


class FoldDataset(SegmentationDataset):
    """The ``train`` or ``val`` part of one cross-validation fold over several datasets' samples.

    Args:
        parts: the pooled datasets (a base type's splits); their sample names must be unique
            across all of them, and their ``info`` equal. Their transforms are not used.
        assignment: every pooled sample's name -> its fold (no other names).
        fold: the held-out fold.
        split: ``"val"`` (the samples of fold ``fold``) or ``"train"`` (all the others).

    Samples are read by the part that holds them and resized and cached as it would (its
    ``resize`` and ``cache``, which the parts share), so ``fold_ds[i]`` equals the part's sample.
    Shapes as every dataset here: image (C, H, W) float32, mask (H, W) int64.
    """

    def __init__(
        self, parts: Sequence[SegmentationDataset], assignment: Mapping[str, int], fold: int, split: str
    ) -> None:
        if split not in FOLD_SPLITS:
            raise unknown_split("cv_fold split", split, FOLD_SPLITS)
        if not parts:
            raise DataConfigError("cv_fold: the pool is empty; give 'pool' one or more of the base's splits")
        first = parts[0]
        for part in parts[1:]:
            if part.info != first.info or part.resize != first.resize or part.scale != first.scale:
                raise DataError(
                    f"cv_fold: pooled splits disagree ({first.info}, resize {first.resize}, scale {first.scale} vs "
                    f"{part.info}, resize {part.resize}, scale {part.scale}); pool only splits of one dataset"
                )
        self._parts = list(parts)
        folds = _check_assignment(_pooled_names(self._parts), assignment)
        fold = _check_fold(fold, folds)
        held_out = split == "val"
        self._index = [
            (p, j)
            for p, part in enumerate(self._parts)
            for j in range(len(part))
            if (assignment[part.sample_name(j)] == fold) == held_out
        ]
        if not self._index:
            raise DataError(f"cv_fold: split {split!r} of fold {fold} has no samples; use more than one fold")
        self.fold, self.split = fold, split
        super().__init__(first.info, resize=first.resize, cache=first.cache, scale=first.scale)

    def __len__(self) -> int:
        return len(self._index)

    def sources(self) -> list[tuple[SegmentationDataset, list[int]]]:
        """The pooled datasets this split reads from, each with the indices of its samples served here."""
        by_part: dict[int, list[int]] = {}
        for part, j in self._index:
            by_part.setdefault(part, []).append(j)
        return [(self._parts[part], indices) for part, indices in by_part.items()]

    def sample_name(self, index: int) -> str:
        part, j = self._index[index]
        return self._parts[part].sample_name(j)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        part, j = self._index[index]
        return self._parts[part].read(j)

    def read_roi(self, index: int) -> np.ndarray | None:
        part, j = self._index[index]
        return self._parts[part].read_roi(j)


def _pooled_names(parts: Sequence[SegmentationDataset]) -> list[str]:
    """Every pooled sample's name; a DataError if a name occurs twice."""
    names = [part.sample_name(j) for part in parts for j in range(len(part))]
    seen: set[str] = set()
    twice = sorted({n for n in names if n in seen or seen.add(n)})
    if twice:
        raise DataError(
            f"cv_fold: {len(twice)} sample name(s) occur in more than one pooled split, e.g. {twice[:5]}; "
            "a case must be in one split only"
        )
    return names


def _check_assignment(names: Sequence[str], assignment: Mapping[str, int]) -> set[int]:
    """The fold indices used; a DataError naming a few missing or unknown samples, or bad indices."""
    if not isinstance(assignment, Mapping):
        raise DataConfigError(
            f"cv_fold: 'assignment' must map sample names to fold indices, got {type(assignment).__name__}"
        )
    pooled = set(names)
    missing = [n for n in names if n not in assignment]
    extra = sorted(str(n) for n in assignment if n not in pooled)
    if missing or extra:
        raise DataError(
            f"cv_fold: 'assignment' must name exactly the {len(names)} pooled samples; "
            + (f"{len(missing)} lack a fold, e.g. {missing[:5]}; " if missing else "")
            + (f"{len(extra)} are not in the pool, e.g. {extra[:5]}; " if extra else "")
            + "compute it from these splits (stratified_folds)"
        )
    bad = {n: f for n, f in assignment.items() if isinstance(f, bool) or not isinstance(f, Integral) or f < 0}
    if bad:
        raise DataConfigError(f"cv_fold: fold indices must be integers >= 0; got {dict(list(bad.items())[:5])}")
    return {int(f) for f in assignment.values()}


def _check_fold(fold: object, folds: set[int]) -> int:
    if isinstance(fold, bool) or not isinstance(fold, Integral) or int(fold) not in folds:
        raise DataConfigError(f"cv_fold: fold={fold!r} is not a fold of the assignment, which uses {sorted(folds)}")
    return int(fold)


@register_dataset
def cv_fold(
    split: str,
    *,
    base: Mapping[str, Any] | str | Path,
    assignment: Mapping[str, int],
    fold: int,
    pool: Sequence[str] = ("train", "val"),
    resize: int | Sequence[int] | None = None,
    cache: bool | None = None,
    strict: bool = False,
    background: bool | None = None,
) -> FoldDataset:
    """Fold ``fold`` of ``assignment`` over the ``pool`` splits of the ``base`` config; ``train`` or ``val``.

    ``base`` is a dataset config (mapping, YAML path or type name) without ``augment``: put that on
    this config, where it applies to the ``train`` split only. ``resize``/``cache``/``background`` given here
    are moved into ``base`` (they must not contradict it); ``strict: true`` applies to the base's split lists.
    """
    if split not in FOLD_SPLITS:
        raise unknown_split("cv_fold split", split, FOLD_SPLITS)
    base = load_data_config(base)
    if base.get("augment") is not None:
        raise DataConfigError(
            "cv_fold: 'base' has 'augment'; move it to the cv_fold config itself, where it applies to the "
            "fold's training samples only"
        )
    base.pop("augment", None)
    if strict:
        base["strict"] = True
    for key, value, same in (("resize", resize, _as_size), ("cache", cache, bool)):
        if value is not None:
            if key in base and base[key] is not None and same(base[key]) != same(value):
                raise DataConfigError(
                    f"cv_fold: {key}={value!r} contradicts the base's {key}={base[key]!r}; give it once"
                )
            base[key] = value
    _move_background(base, background)
    if isinstance(pool, str) or not pool or len(set(pool)) != len(pool):
        raise DataConfigError(f"cv_fold: pool={pool!r} must list one or more distinct split names, e.g. [train, val]")
    parts = [build_dataset(base, str(s)) for s in pool]
    dataset = FoldDataset(parts, assignment, fold, split)
    log.info("cv_fold %d %s: %d of %d pooled samples", dataset.fold, split, len(dataset), sum(map(len, parts)))
    return dataset


def _move_background(base: dict[str, Any], background: bool | None) -> None:
    """Put a ``background`` declared on the cv_fold config into ``base``; a DataConfigError when the base declares
    the other value (which of the two the folds score by would be a guess)."""
    if background is None:
        return
    declared = _background(base.get("background"))
    if declared is not None and declared != background:
        raise DataConfigError(f"cv_fold: background={background!r} contradicts the base's background={declared!r}; "
                              "declare it once, in the base")
    base["background"] = background
