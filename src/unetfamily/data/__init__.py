"""Data layer: readers for the common segmentation formats, the synthetic dataset, splits,
loaders and (with the ``augment`` extra) joint image/mask augmentation.

Samples are dicts ``{"image": float32 (C, H, W) in [0, 1], "mask": int64 (H, W), "name": str}``;
mask pixels are class indices, or ``dataset.info.ignore_index`` where unlabelled.
:func:`check_dataset` reads every split's files once before training (headers, integrity, mask
values) and checks that the splits share one set of properties and do not overlap.

>>> from unetfamily.data import build_dataset, make_loader
>>> ds = build_dataset({"type": "synthetic", "num_samples": 8, "size": 64}, split="train")
>>> batch = next(iter(make_loader(ds, batch_size=4, shuffle=True, seed=0)))
>>> tuple(batch["image"].shape), tuple(batch["mask"].shape), ds.info.num_model_outputs
((4, 1, 64, 64), (4, 64, 64), 1)
"""

from __future__ import annotations

from unetfamily.data import named as _named  # noqa: F401  (registers the real datasets)
from unetfamily.data.augment import Augmentation, build_augmentation  # kornia is imported on use
from unetfamily.data.base import DatasetInfo, PairedFilesDataset, SamplePaths, SegmentationDataset, num_model_outputs
from unetfamily.data.check import DatasetCheck, check_dataset
from unetfamily.data.encodings import MaskEncoding, decode_mask
from unetfamily.data.folds import FoldDataset, data_geometry, stratified_folds  # registers the cv_fold type
from unetfamily.data.errors import DataConfigError, DataError, UnknownSplitError
from unetfamily.data.fingerprint import Fingerprint, fingerprint_dataset, load_or_compute_fingerprint
from unetfamily.data.formats import TiffStackDataset, pair_folder, voc_pairs
from unetfamily.data.loader import SeededSampler, collate, make_loader
from unetfamily.data.registry import (
    build_dataset, build_training_split, data_root, list_datasets, load_data_config, register_dataset,
)
from unetfamily.data.splits import kfold_split, random_split, read_split_file
from unetfamily.data.stats import DatasetStatistics, dataset_statistics
from unetfamily.data.synthetic import SyntheticShapes

__all__ = [
    "Augmentation",
    "DataConfigError",
    "DataError",
    "DatasetCheck",
    "DatasetInfo",
    "DatasetStatistics",
    "Fingerprint",
    "FoldDataset",
    "MaskEncoding",
    "PairedFilesDataset",
    "SamplePaths",
    "SeededSampler",
    "SegmentationDataset",
    "SyntheticShapes",
    "TiffStackDataset",
    "UnknownSplitError",
    "build_augmentation",
    "build_dataset",
    "build_training_split",
    "data_geometry",
    "check_dataset",
    "collate",
    "data_root",
    "dataset_statistics",
    "decode_mask",
    "fingerprint_dataset",
    "kfold_split",
    "list_datasets",
    "load_data_config",
    "load_or_compute_fingerprint",
    "make_loader",
    "num_model_outputs",
    "pair_folder",
    "random_split",
    "read_split_file",
    "register_dataset",
    "stratified_folds",
    "voc_pairs",
]
