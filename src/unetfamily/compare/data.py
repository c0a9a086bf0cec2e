"""The data of a comparison: what every run trains on and the cases it is evaluated on.

Without cross-validation (one fold) every run trains on ``train``, validates on ``val`` and is
evaluated on the held-out split (``test`` when the data has one, else ``val``). With K folds the
``train`` and ``val`` cases are pooled and split into K folds, stratified by whether a case
contains foreground; the run of fold k trains on the other folds and is evaluated on fold k, so
every case is evaluated out of fold exactly once per seed (nnU-Net's protocol). The folds are the
same for every variant and seed.

Each split is built once per comparison, and every case is read once to fingerprint the data
(:func:`unetfamily.compare.identity.data_digest`): a finished run is reused only on the same cases.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from unetfamily.compare.config import CompareConfig
from unetfamily.compare.identity import data_digest
from unetfamily.data import options as data_options
from unetfamily.plan.make import data_spec
from unetfamily.data import (
    DataError, DatasetInfo, SegmentationDataset, UnknownSplitError, build_dataset, build_training_split, check_dataset,
    make_loader, stratified_folds,
)

log = logging.getLogger(__name__)

__all__ = ["EvalSplit", "eval_split", "Fold", "ComparisonData", "load_comparison_data", "fold_config", "data_config",
           "build_split"]

#: Folds when the data has no test split and --folds is not given (nnU-Net's choice).
DEFAULT_FOLDS = 5
#: Seed of the fold assignment: the same folds for every variant, seed and re-run.
FOLD_SEED = 0


@dataclass
class EvalSplit:
    """The held-out cases a run is evaluated on (final weights, no model selection on them).

    Pickled (to another process or machine, e.g. a Ray task) without its dataset and loader: the
    receiver builds them again from ``source`` (the data config and split), so no decoded image travels.
    """

    name: str  # "test", "val" or "fold<k>"
    dataset: SegmentationDataset
    loader: Any  # batches of the dataset in order, at the protocol's batch size
    image_shape: tuple[int, ...]  # (C, H, W) of its first image
    source: tuple[dict[str, Any], str, int] | None = None  # (data config, split, batch size) it was built from

    @property
    def info(self) -> DatasetInfo:
        return self.dataset.info

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.source is not None:
            state["dataset"] = state["loader"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.dataset is None and self.source is not None:
            config, split, batch_size = self.source
            self.dataset = build_dataset(config, split)
            self.loader = make_loader(self.dataset, batch_size, shuffle=False)


@dataclass
class Fold:
    """One fold: the data config its runs train on, and the cases they are evaluated on."""

    index: int  # 0..K-1 (0 without cross-validation)
    data: dict[str, Any]
    eval: EvalSplit


@dataclass
class ComparisonData:
    """The resolved data, its name in the report, the task's classes, the folds and the data's fingerprint."""

    config: dict[str, Any]  # the resolved dataset config (before any fold split)
    name: str
    info: DatasetInfo  # of the train split
    splits: dict[str, int]  # split name -> number of images
    eval_split: str  # "test", "val", or "folds" under cross-validation
    folds: list[Fold]
    digests: dict[str, dict[str, Any]] = field(default_factory=dict)  # split -> data_digest

    @property
    def cases(self) -> int:
        return sum(len(f.eval.dataset) for f in self.folds)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.folds[0].eval.image_shape


def data_config(spec: str, size: int | None) -> tuple[dict[str, Any], str]:
    """A dataset config and its name from a YAML path, a folder of images/ + masks/, or a dataset type name."""
    cfg, name = data_spec(spec)
    if size is not None:
        if cfg["type"] == "synthetic":
            cfg["size"] = size
        else:
            cfg["resize"] = [size, size]
            aug = cfg.get("augment")
            if isinstance(aug, dict) and aug.get("crop_size") is not None:  # no crop larger than the resized image
                crop = data_options.size("augment crop_size", aug["crop_size"])  # an int or [H, W]
                sides = [min(side, size) for side in crop]
                cfg["augment"] = {**aug, "crop_size": sides if isinstance(aug["crop_size"], (list, tuple)) else sides[0]}
    return cfg, name


def fold_config(base: dict[str, Any], assignment: dict[str, int], fold: int, pool: list[str]) -> dict[str, Any]:
    """The data config of fold ``fold``: ``base``'s ``pool`` splits pooled, fold ``fold`` held out as ``val``.

    The augmentation moves to the outer config, so that it applies to the fold's training cases only.
    """
    inner = {k: v for k, v in base.items() if k != "augment"}
    outer = {"type": "cv_fold", "base": inner, "pool": list(pool), "assignment": dict(assignment), "fold": fold}
    if base.get("augment") is not None:
        outer["augment"] = base["augment"]
    return outer


def build_split(config: dict[str, Any], split: str) -> SegmentationDataset | None:
    """The ``split`` of the dataset ``config`` describes, or None when the data defines no such split."""
    try:
        return build_dataset(config, split)
    except UnknownSplitError as exc:  # the data defines no such split (isbi2012_em has no test split, ...)
        log.info("no %s split (%s)", split, exc)
        return None


def eval_split(name: str, config: dict[str, Any], split: str, batch_size: int,
               dataset: SegmentationDataset | None = None) -> EvalSplit:
    """The held-out cases, split ``split`` of the data ``config`` (``dataset`` if already built), as an
    :class:`EvalSplit` batched in order at ``batch_size``."""
    dataset = dataset if dataset is not None else build_dataset(config, split)
    loader = make_loader(dataset, batch_size, shuffle=False)
    return EvalSplit(name, dataset, loader, tuple(dataset[0]["image"].shape), (config, split, batch_size))


def cross_validation_folds(config: dict[str, Any], pool: dict[str, dict[str, Any]], k: int,
                           batch_size: int) -> list[Fold]:
    """K stratified folds over the cases of ``pool`` (split -> :func:`data_digest`)."""
    names = [n for digest in pool.values() for n in digest["names"]]
    strata = [fg for digest in pool.values() for fg in digest["foreground"]]
    assignment = stratified_folds(names, strata, k, seed=FOLD_SEED)
    folds = []
    for index in range(k):
        cfg = fold_config(config, assignment, index, list(pool))
        folds.append(Fold(index, cfg, eval_split(f"fold{index}", cfg, "val", batch_size)))
    return folds


def fold_count(cfg: CompareConfig, has_test: bool, pooled: int) -> int:
    """``--folds``, or its default (1 when the data has a test split, else DEFAULT_FOLDS); a DataError when K >= 2
    folds are more than the ``pooled`` cases (train and val) they split."""
    k = cfg.folds if cfg.folds is not None else (1 if has_test else DEFAULT_FOLDS)
    if k >= 2 and k > pooled:
        default = " (the default for data without a test split)" if cfg.folds is None else ""
        fix = f"use --folds {pooled} or fewer" if pooled >= 2 else "add cases"
        raise DataError(f"{cfg.data}: {k}-fold cross-validation{default} needs at least {k} cases to hold out, "
                        f"and the data has {pooled}; {fix}")
    return k


def check_foreground(data: str, digests: dict[str, dict[str, Any]], info: DatasetInfo) -> None:
    """A DataError when no case of the digested splits (:func:`data_digest`) holds a class other than 0: there is
    nothing to segment, and every model would score alike (mostly a wrong ``mask_encoding``)."""
    if not any(fg for digest in digests.values() for fg in digest["foreground"]):
        cases = sum(d["count"] for d in digests.values())
        raise DataError(f"{data}: none of the {cases} masks ({', '.join(digests)}) holds a class other than 0 "
                        f"({info.classes[0]!r}): "
                        "there is nothing to segment, so no model can be told from another; check the masks and "
                        "their mask_encoding (docs/data.md)")


def load_comparison_data(cfg: CompareConfig, config: dict[str, Any] | None = None,
                         digests: dict[str, dict[str, Any]] | None = None) -> ComparisonData:
    """Resolve ``cfg.data`` (with ``cfg.size`` and ``cfg.augment``), fingerprint it and lay out its folds.

    ``config``: the dataset config to use instead (a plan's); ``digests``: splits already digested.
    """
    name = data_config(cfg.data, None)[1]
    if config is None:
        config = data_config(cfg.data, cfg.size)[0]
        if cfg.augment is not None:
            config["augment"] = None if cfg.augment == "none" else cfg.augment
    batch = 1 if cfg.plan != "none" else cfg.batch_size  # a plan's images keep their own sizes
    pooled, train = build_training_split(config)  # data without splits: all its cases, cross-validated
    sets = {pooled: train, "val": build_split(config, "val"), "test": build_split(config, "test")}
    sets = {split: ds for split, ds in sets.items() if ds is not None}
    # Every file of every split checked once, before any run trains (folds and lr search read the same files).
    # the training batch is checked on "train" (under a plan, cropped to its patches); a pool of data without
    # splits is checked as the held-out cases are (each fold's training cases are cropped when its run starts)
    check_dataset(config, list(sets), optional=[], datasets=sets,
                  batch_sizes={s: cfg.batch_size if s == "train" else batch for s in sets})
    digests = {split: (digests or {}).get(split) or data_digest(ds) for split, ds in sets.items()}
    check_foreground(cfg.data, digests, train.info)
    k = fold_count(cfg, "test" in sets, sum(digests[s]["count"] for s in (pooled, "val") if s in digests))
    if k == 1:
        held_out = "test" if "test" in sets else "val"
        if held_out not in sets:
            raise DataError(f"{cfg.data}: the data has neither a test nor a val split to evaluate on; "
                            "give it one, or use --folds K (K >= 2) to cross-validate")
        folds = [Fold(0, config, eval_split(held_out, config, held_out, batch, sets[held_out]))]
    else:
        pool = {split: digests[split] for split in (pooled, "val") if split in digests}
        folds = cross_validation_folds(config, pool, k, batch)
        held_out = "folds"
    splits = {split: digest["count"] for split, digest in digests.items()}
    return ComparisonData(config, name, train.info, splits, held_out, folds, digests)
