"""The data of a comparison: the dataset config every run trains on, and the evaluation split.

Each split is built once per comparison: ``train`` (for the classes and channels and its size),
the evaluation split (``test`` when the data has one, else ``val``), which every run is
evaluated on, and ``val`` only to count it when the evaluation split is ``test``. Each run's
:func:`~unetfamily.engine.train.fit` builds the train and val splits it trains and validates on.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unetfamily.compare.config import CompareConfig
from unetfamily.data import DataError, DatasetInfo, SegmentationDataset, build_dataset, load_data_config, make_loader

log = logging.getLogger(__name__)

__all__ = ["EvalSplit", "ComparisonData", "load_comparison_data"]


@dataclass
class EvalSplit:
    """The held-out split every run is evaluated on (final weights, no model selection on it)."""

    name: str  # "test" or "val"
    dataset: SegmentationDataset
    loader: Any  # batches of the dataset in order, at the protocol's batch size
    image_shape: tuple[int, ...]  # (C, H, W) of its images

    @property
    def info(self) -> DatasetInfo:
        return self.dataset.info


@dataclass
class ComparisonData:
    """The resolved data config, its name in the report, the task's classes and the split sizes."""

    config: dict[str, Any]
    name: str
    info: DatasetInfo  # of the train split
    splits: dict[str, int]  # split name -> number of images
    eval: EvalSplit


def data_config(spec: str, size: int | None) -> tuple[dict[str, Any], str]:
    """A dataset config and its name from a YAML path, a folder of images/ + masks/, or a dataset type name."""
    path = Path(spec)
    if path.is_file():
        cfg, name = dict(load_data_config(path)), path.stem
    elif path.is_dir():
        cfg, name = {"type": "folder", "root": str(path)}, path.name
    else:
        cfg, name = {"type": spec}, spec
    if size is not None:
        if cfg["type"] == "synthetic":
            cfg["size"] = size
        else:
            cfg["resize"] = [size, size]
            aug = cfg.get("augment")
            if isinstance(aug, dict) and "crop_size" in aug:  # crops larger than the resized image make no sense
                cfg["augment"] = {**aug, "crop_size": min(int(aug["crop_size"]), size)}
    return cfg, name


def _eval_dataset(config: dict[str, Any]) -> tuple[str, SegmentationDataset]:
    """``("test", its dataset)`` when the data has a test split, else ``("val", ...)``."""
    try:
        return "test", build_dataset(config, "test")
    except DataError as exc:  # the data defines no test split (isbi2012_em, kvasir_seg, a train/val split spec)
        log.info("no test split (%s): evaluating on val", exc)
        return "val", build_dataset(config, "val")


def load_comparison_data(cfg: CompareConfig) -> ComparisonData:
    """Resolve ``cfg.data`` (with ``cfg.size`` and ``cfg.augment``) and build the splits a comparison needs once."""
    config, name = data_config(cfg.data, cfg.size)
    if cfg.augment is not None:
        config["augment"] = None if cfg.augment == "none" else cfg.augment
    train_set = build_dataset(config, "train")
    split, dataset = _eval_dataset(config)
    splits = {"train": len(train_set)}
    if split == "test":
        splits["val"] = len(build_dataset(config, "val"))
    splits[split] = len(dataset)
    loader = make_loader(dataset, cfg.batch_size, shuffle=False)
    evaluation = EvalSplit(split, dataset, loader, tuple(dataset[0]["image"].shape))
    return ComparisonData(config, name, train_set.info, splits, evaluation)
