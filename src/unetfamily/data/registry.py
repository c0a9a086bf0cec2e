"""``build_dataset``: one entry point from a config (dict or YAML file) to a dataset.

A config names a ``type`` and that type's options (a bare type name, ``"synthetic"``, is a config too)::

    type: folder              # or voc, tiff_stack, synthetic, isbi2012_em, dsb2018_nuclei, kvasir_seg, camvid
    root: /data/polyps
    mask_suffix: _mask
    mask_encoding: {kind: binary, threshold: 127}
    splits: {fractions: {train: 0.8, val: 0.2}, seed: 0}
    resize: [256, 256]        # or scale: 0.5 (each sample's own size times a factor; not with resize)
    augment: medical          # optional; applied to the "train" split only
    background: auto          # class 0 is a background the foreground scores leave out: true, false or auto

Each type is a small builder function registered with :func:`register_dataset`; its keyword
arguments are the valid keys, so an unknown key is an error that names it. A YAML file whose
top level has a ``data`` mapping (an experiment config) uses that mapping.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from unetfamily.config_file import anchor_paths, expand_path
from unetfamily.data import options
from unetfamily.data.base import PairedFilesDataset, SegmentationDataset
from unetfamily.data.encodings import MaskEncoding
from unetfamily.data.errors import (
    DataConfigError, DataError, UnknownSplitError, check_keys, unknown_choice, unknown_split,
)
from unetfamily.data.formats import VOC_CLASSES, TiffStackDataset, voc_pairs
from unetfamily.data.io import read_lines, regular_file
from unetfamily.data.pattern import config_pattern, pair_files, per_split_layout
from unetfamily.data.probe import detect_channels
from unetfamily.data.splits import select_samples
from unetfamily.data.synthetic import SyntheticShapes

__all__ = [
    "build_dataset", "build_training_split", "data_root", "list_datasets", "load_data_config", "register_dataset",
]

log = logging.getLogger(__name__)

_REGISTRY: dict[str, Callable[..., SegmentationDataset]] = {}
_COMMON_KEYS = ("type", "augment", "scale", "strict", "background")


def register_dataset(fn: Callable[..., SegmentationDataset]) -> Callable[..., SegmentationDataset]:
    """Register a builder ``fn(split, **options)`` under its function name as a config ``type``."""
    _REGISTRY[fn.__name__] = fn
    return fn


def list_datasets() -> list[str]:
    """The registered config types."""
    return sorted(_REGISTRY)


def data_root() -> Path:
    """Where the named real datasets live: ``$UNETFAMILY_DATA_ROOT``, else ``<repo>/../shared/data``."""
    env = os.environ.get("UNETFAMILY_DATA_ROOT")
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parents[3]
    return repo.parent / "shared" / "data"


def load_data_config(config: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """A dataset config from a mapping, a YAML file, or a registered type's name (``"synthetic"``).

    A top-level ``data`` mapping (an experiment config) is used if present. A folder is read through the
    ``data.yaml`` in it (as ``dataset convert`` writes), else as a ``folder`` dataset of its images/ and
    masks/, with the class names of a ``classes.txt`` there (as ``dataset labelme`` writes).
    """
    if isinstance(config, str) and config in _REGISTRY:
        return {"type": config}
    source = None
    if isinstance(config, (str, Path)):
        source = Path(config)
        config = _folder_config(source) if source.is_dir() else _read_yaml(source)
    config = dict(config)
    if "type" not in config and isinstance(config.get("data"), Mapping):
        config = dict(config["data"])
    if source is not None:  # paths in a YAML file (or a folder's data.yaml) are relative to its folder
        config = anchor_paths(config, source if source.is_dir() else source.parent)
    if "type" not in config:
        raise DataConfigError(f"dataset config has no 'type'; choose one of {', '.join(list_datasets())}")
    return config


def _folder_config(path: Path) -> Mapping[str, Any]:
    if (path / "data.yaml").is_file():
        return _read_yaml(path / "data.yaml")
    path = path.resolve()  # a run's saved config reads the same files from any working folder
    config = {"type": "folder", "root": str(path)}
    if (path / "classes.txt").is_file():
        config["classes"] = str(path / "classes.txt")
    return config


def _read_yaml(path: Path) -> Mapping[str, Any]:
    if not path.exists() and not path.suffix and len(path.parts) == 1:  # a bare word: a mistyped type name
        raise unknown_choice("dataset", str(path), list_datasets(), hint="or give a YAML config path")
    regular_file(path, "dataset config")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise DataConfigError(f"{path}: cannot read dataset config ({e})") from e
    if not isinstance(loaded, Mapping):
        raise DataConfigError(f"{path}: a dataset config must be a mapping with a 'type' key")
    return loaded


def build_dataset(
    config: Mapping[str, Any] | str | Path, split: str = "train", **overrides: Any
) -> SegmentationDataset:
    """Build the ``split`` of the dataset described by ``config`` (dict, YAML path or type name).

    ``overrides`` replace config keys (e.g. ``root=...``). Unknown types and keys raise
    :class:`DataConfigError` naming them. Samples are ``{"image": (C, H, W) float32, "mask": (H, W)
    int64, "name": str}``.
    """
    config = {**load_data_config(config), **overrides}
    kind = config.pop("type")
    builder = _REGISTRY.get(kind) if isinstance(kind, str) else None
    if builder is None:
        raise unknown_choice("dataset type", kind, list_datasets())
    augment = config.pop("augment", None)
    scale = config.pop("scale", None)
    strict = options.boolean("strict", config.pop("strict", False))
    background = _background(config.pop("background", "auto"))
    params = inspect.signature(builder).parameters
    valid = [p for p in params if p not in ("split", "strict", "background")]
    for key in config:
        if key not in valid:
            raise DataConfigError(
                f"unknown key {key!r} for dataset type {kind!r}; valid keys: {', '.join(_COMMON_KEYS + tuple(valid))}"
            )
    required = [p.name for p in params.values() if p.default is p.empty and p.name not in ("split", "strict")]
    missing = [key for key in required if key not in config]
    if missing:
        raise DataConfigError(f"dataset type {kind!r} needs {', '.join(repr(m) for m in missing)}")
    if "strict" in params:  # types that read split lists check them; for the others splits cannot overlap
        config["strict"] = strict
    if "background" in params:  # types that wrap another config (cv_fold) reconcile the key with it
        config["background"] = background
    dataset = builder(split, **config)
    if background is not None:
        dataset.info = dataclasses.replace(dataset.info, background=background)
    if scale is not None:  # every split: evaluation sees the scale training saw
        dataset.set_scale(scale)
    if augment and split == "train":
        dataset.transform = _build_augment(augment, dataset)
    log.info("built %s split %r: %d samples, classes %s", kind, split, len(dataset), dataset.info.classes)
    return dataset


def build_training_split(config: Mapping[str, Any] | str | Path) -> tuple[str, SegmentationDataset]:
    """(split name, dataset) of the cases a model may train on: the ``train`` split, or, when the dataset defines
    no split at all (a plain folder of images and masks, a config without ``splits``), ``all`` of its cases.

    Callers that hold cases out by cross-validation (``compare``, ``plan``) pool them. A dataset that defines
    other splits but not ``train`` raises the :class:`UnknownSplitError` of ``train``.
    """
    try:
        return "train", build_dataset(config, "train")
    except UnknownSplitError as no_train:
        for split in ("val", "test"):
            try:
                build_dataset(config, split)
            except UnknownSplitError:
                continue
            raise no_train
        try:
            pooled = build_dataset(config, "all")
        except UnknownSplitError:  # a layout that chooses files per split and has no train folder
            raise no_train from None
        log.info("the dataset defines no splits: all %d cases are training cases", len(pooled))
        return "all", pooled


def _background(value: Any) -> bool | None:
    """The ``background`` key: True or False as declared, None for ``auto`` (decided from the class names)."""
    if value is None or value == "auto":
        return None
    if not isinstance(value, bool):
        raise DataConfigError(f"background={value!r} is invalid; give true (class 0 is a background the foreground "
                              "scores leave out), false (class 0 is scored like every class) or auto")
    return value


def _build_augment(spec: str | Mapping[str, Any], dataset: SegmentationDataset) -> Callable:
    from unetfamily.data.augment import build_augmentation

    if isinstance(spec, str):
        spec = {"preset": spec}
    spec = dict(options.mapping("augment", spec, "give a preset name or {preset, crop_size, foreground}"))
    check_keys("augment", spec, ("preset", "crop_size", "foreground"))
    info = dataset.info
    return build_augmentation(ignore_index=info.ignore_index, in_channels=info.in_channels,
                              background=info.has_background, **spec)


def _classes(classes: Sequence[str] | str | None, default: Sequence[str]) -> list[str]:
    """A class list given inline or as a text file with one class per line."""
    if classes is None:
        return list(default)
    if isinstance(classes, str):
        return read_lines(expand_path(classes), "class list")
    if not isinstance(classes, Sequence):
        raise DataConfigError(f"classes={classes!r} is invalid; give a list of class names or a text file of them")
    return [str(c) for c in classes]


@register_dataset
def folder(
    split: str,
    *,
    root: str | Path,
    images: str | Mapping[str, str] = "images",
    masks: str | Mapping[str, str] = "masks",
    roi: str | Mapping[str, str] | None = None,
    image_suffix: str = "",
    mask_suffix: str = "",
    roi_suffix: str = "",
    image_regex: str | Mapping[str, str] | None = None,
    mask_regex: str | Mapping[str, str] | None = None,
    roi_regex: str | Mapping[str, str] | None = None,
    classes: Sequence[str] | str | None = None,
    mask_encoding: Any = None,
    ignore_index: int = 255,
    in_channels: int | None = None,
    splits: Mapping[str, Any] | None = None,
    on_missing: Literal["error", "skip"] = "error",
    resize: int | Sequence[int] | None = None,
    cache: bool = False,
    strict: bool = False,
) -> PairedFilesDataset:
    """Images, masks and optional regions of interest under ``root``, paired by sample id.

    ``images``/``masks``/``roi`` are each a folder (with ``*_suffix``), a template with ``{id}``, or
    a folder with a ``*_regex``, or a ``{split: ...}`` mapping of these (see :mod:`unetfamily.data.pattern`);
    ``{split}`` in a folder or template is the split's name. Without ``in_channels`` it is decided
    once from every image of the split's files (before ``splits`` selects from them).
    """
    root = expand_path(root)
    layout = {"images": (images, image_suffix, image_regex), "masks": (masks, mask_suffix, mask_regex)}
    if roi is not None:
        layout["roi"] = (roi, roi_suffix, roi_regex)
    elif roi_suffix or roi_regex is not None:
        raise DataConfigError("'roi_suffix'/'roi_regex' need 'roi': the folder (or template) of the region masks")
    per_split = per_split_layout(*(v for value, _, regex in layout.values() for v in (value, regex)))
    if per_split and splits is not None:
        raise DataConfigError("give either 'splits' or a {split} folder layout ({split} or a {split: ...} mapping "
                              "in 'images'/'masks'/'roi' or their regexes), not both")
    if per_split and split == "all":
        raise UnknownSplitError("split 'all' needs one folder of images; with a {split} layout name a split")
    found = {key: config_pattern(key, v, root, split, suffix=s, regex=r) for key, (v, s, r) in layout.items()}
    if per_split and not any(p.base.exists() for p in found.values()):  # the layout has no such split
        raise UnknownSplitError(f"split {split!r}: none of {', '.join(str(p.base) for p in found.values())} exists")
    pairs = pair_files(found["images"], found["masks"], found.get("roi"), on_missing=on_missing)
    if in_channels is None:
        in_channels = detect_channels([p.image for p in pairs])
    if not per_split:
        pairs = select_samples(pairs, split, splits, root, strict=strict)
    return PairedFilesDataset(
        pairs,
        _classes(classes, ["background", "foreground"]),
        encoding=MaskEncoding.parse(mask_encoding),
        ignore_index=ignore_index,
        in_channels=in_channels,
        resize=resize,
        cache=cache,
    )


@register_dataset
def voc(
    split: str,
    *,
    root: str | Path,
    classes: Sequence[str] | str | None = None,
    ignore_index: int = 255,
    image_dir: str = "JPEGImages",
    mask_dir: str = "SegmentationClass",
    lists_dir: str = "ImageSets/Segmentation",
    resize: int | Sequence[int] | None = None,
    cache: bool = False,
    strict: bool = False,
) -> PairedFilesDataset:
    """Pascal VOC layout: palette PNG masks whose indices are classes, 255 = ignore (border)."""
    for key, value in (("image_dir", image_dir), ("mask_dir", mask_dir), ("lists_dir", lists_dir)):
        options.text(key, value)
    pairs = voc_pairs(expand_path(root), split, image_dir=image_dir, mask_dir=mask_dir, lists_dir=lists_dir,
                      strict=strict)
    return PairedFilesDataset(
        pairs,
        _classes(classes, VOC_CLASSES),
        encoding=MaskEncoding("index"),
        ignore_index=ignore_index,
        in_channels=3,
        resize=resize,
        cache=cache,
    )


@register_dataset
def tiff_stack(
    split: str,
    *,
    images: str | Path,
    labels: str | Path,
    classes: Sequence[str] | str | None = None,
    mask_encoding: Any = None,
    ignore_index: int = 255,
    in_channels: int | None = None,
    slices: Mapping[str, Sequence[int]] | None = None,
    resize: int | Sequence[int] | None = None,
    cache: bool = True,
) -> TiffStackDataset:
    """A multi-page image stack and its label stack; ``slices: {train: [0, 24], val: [24, 30]}`` (stop excluded)."""
    if slices is not None:  # a list would be read as slice indices by TiffStackDataset
        options.mapping("slices", slices, "give {split: [start, stop], ...}, e.g. {train: [0, 24], val: [24, 30]}")
    return TiffStackDataset(
        expand_path(images),
        expand_path(labels),
        _classes(classes, ["background", "foreground"]),
        encoding=MaskEncoding.parse(mask_encoding),
        ignore_index=ignore_index,
        in_channels=in_channels,
        slices=slices,
        split=split,
        resize=resize,
        cache=cache,
    )


@register_dataset
def synthetic(
    split: str,
    *,
    num_samples: int | Mapping[str, int] | None = None,
    size: int = 96,
    num_classes: int = 2,
    seed: int = 0,
    in_channels: int = 1,
) -> SyntheticShapes:
    """SyntheticShapes; ``num_samples`` is one count or ``{train: 256, val: 64, test: 64}`` (the default)."""
    counts = {"train": 256, "val": 64, "test": 64} if num_samples is None else num_samples
    if isinstance(counts, Mapping):
        counts = {str(k): options.integer(f"num_samples.{k}", v, lo=1, hi=10**7) for k, v in counts.items()}
        if split not in counts:
            raise unknown_split("synthetic split", split, counts, hint="num_samples gives a count per split")
        count = counts[split]
    else:
        count = options.integer("num_samples", counts, lo=1, hi=10**7)
    size = options.integer("size", size, lo=16, hi=4096)
    num_classes = options.integer("num_classes", num_classes)
    seed = options.integer("seed", seed, lo=0)
    return SyntheticShapes(count, size, num_classes, seed, in_channels=options.integer("in_channels", in_channels),
                           split=split)


def named_root(name: str, root: str | Path | None) -> Path:
    """The folder of a named real dataset; a clear error when it is absent."""
    path = expand_path(root) if root is not None else data_root() / name
    if not path.is_dir():
        raise DataError(
            f"{path}: dataset folder for {name!r} not found; set UNETFAMILY_DATA_ROOT to the folder that "
            f"holds {name}/ or pass root=..."
        )
    return path
