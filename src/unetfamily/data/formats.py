"""On-disk layouts: image/mask folder pairs, Pascal VOC, and TIFF stacks (ISBI 2012 form)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from unetfamily.data.base import DatasetInfo, SamplePaths, SegmentationDataset, Transform
from unetfamily.data.encodings import MaskEncoding, decode_mask
from unetfamily.data import options
from unetfamily.data.errors import DataConfigError, DataError, UnknownSplitError, unknown_split
from unetfamily.data.io import RawMask, read_volume, to_channels
from unetfamily.data.pattern import UNREAD_SUFFIXES, find_files, folder_pattern, list_images, pair_files
from unetfamily.data.probe import dataset_channels
from unetfamily.data.splits import check_listed, read_split_file

__all__ = [
    "UNREAD_SUFFIXES", "VOC_CLASSES", "TiffStackDataset", "list_images", "pair_folder", "stack_slices", "voc_pairs",
]  # fmt: skip

log = logging.getLogger(__name__)

VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip


def pair_folder(
    images: str | Path,
    masks: str | Path,
    *,
    image_suffix: str = "",
    mask_suffix: str = "",
    roi: str | Path | None = None,
    roi_suffix: str = "",
    on_missing: Literal["error", "skip"] = "error",
) -> list[SamplePaths]:
    """Pair ``images/NAME{image_suffix}.*`` with ``masks/NAME{mask_suffix}.*`` (and ``roi/NAME{roi_suffix}.*``).

    The folder form of :mod:`unetfamily.data.pattern` (any readable extension, in any case).
    Samples come back in natural order of NAME (``2`` before ``10``). An image without a mask
    (or ROI) is a DataError, or with ``on_missing="skip"`` is left out and counted in a warning log.
    """
    return pair_files(
        folder_pattern(Path(images), image_suffix, "image", "'images'/'image_suffix'"),
        folder_pattern(Path(masks), mask_suffix, "mask", "'masks'/'mask_suffix'"),
        None if roi is None else folder_pattern(Path(roi), roi_suffix, "region-of-interest mask", "'roi'/'roi_suffix'"),
        on_missing=on_missing,
    )


def voc_pairs(
    root: str | Path,
    split: str,
    *,
    image_dir: str = "JPEGImages",
    mask_dir: str = "SegmentationClass",
    lists_dir: str = "ImageSets/Segmentation",
    strict: bool = False,
) -> list[SamplePaths]:
    """Pascal VOC layout: names from ``{lists_dir}/{split}.txt``, ``{image_dir}/NAME.jpg``, ``{mask_dir}/NAME.png``.

    ``split="all"`` without an ``all.txt``: every sample of every list there (``train`` and ``val``: VOC's
    ``trainval``), once. A name listed twice in a list is a warning, or with ``strict`` an error
    (:func:`~unetfamily.data.splits.check_listed`).
    """
    root = Path(root)
    list_file = root / lists_dir / f"{split}.txt"
    available = sorted((root / lists_dir).glob("*.txt"))
    lists = [list_file] if os.path.lexists(list_file) or split != "all" else available
    if not lists or not os.path.lexists(lists[0]):
        raise UnknownSplitError(f"{list_file}: no such split list; available: {[p.stem for p in available] or 'none'}")
    images = find_files(folder_pattern(root / image_dir, "", "image", "'image_dir'"))
    masks = find_files(folder_pattern(root / mask_dir, "", "mask", "'mask_dir'"))
    pairs = []
    listed = [(name, file) for file in lists for name in check_listed(read_split_file(file, images), file, strict)]
    if len(lists) > 1:  # "all" over every list: each sample once (a sample listed twice in one list is served twice)
        seen: set[str] = set()
        listed = [(name, file) for name, file in listed if not (name in seen or seen.add(name))]
    for name, list_file in listed:
        if name not in images:
            raise DataError(f"{list_file}: sample {name!r} has no image in {root / image_dir}")
        if name not in masks:
            raise DataError(f"{list_file}: sample {name!r} has no mask in {root / mask_dir}")
        pairs.append(SamplePaths(name, images[name], masks[name]))
    return pairs


class TiffStackDataset(SegmentationDataset):
    """One multi-page image volume plus one label volume, served as 2-D slices (ISBI 2012 form).

    Volumes are ``(N, H, W)`` (or ``(N, H, W, C)`` for the images); they are read once per process,
    on first access. Slice ``i`` is named ``f"{stem}_{i:03d}"``.

    Args:
        images, labels: the two TIFF stacks; their slice counts and sizes must match.
        classes, encoding, ignore_index: as in :class:`~unetfamily.data.base.PairedFilesDataset`.
        slices: the slice indices this dataset serves (default: all), or a config's
            ``{split: [start, stop], ...}`` together with ``split`` (see :func:`stack_slices`).
        split: the split to serve from a ``slices`` mapping.
    """

    def __init__(
        self,
        images: str | Path,
        labels: str | Path,
        classes: Sequence[str],
        *,
        encoding: MaskEncoding | None = None,
        ignore_index: int = 255,
        in_channels: int | None = None,
        slices: Sequence[int] | Mapping[str, Any] | None = None,
        split: str = "all",
        resize: int | Sequence[int] | None = None,
        cache: bool = False,
        transform: Transform | None = None,
    ) -> None:
        self.images_path, self.labels_path = Path(images), Path(labels)
        self.encoding = encoding or MaskEncoding()
        self.encoding.check_classes(len(classes), ignore_index)
        self._volumes: tuple[np.ndarray, np.ndarray] | None = None
        images_arr, labels_arr = self._read_volumes()
        n = images_arr.shape[0]
        if labels_arr.shape[:3] != images_arr.shape[:3]:
            raise DataError(
                f"{self.images_path} has shape {images_arr.shape} but {self.labels_path} has {labels_arr.shape}; "
                "the stacks must have the same slice count and slice size"
            )
        if isinstance(slices, Mapping) or split != "all":
            slices = stack_slices(split, slices, n)
        self.slices = list(range(n)) if slices is None else [int(i) for i in slices]
        bad = [i for i in self.slices if not 0 <= i < n]
        if bad:
            raise DataConfigError(f"slices {bad[:5]} are outside the {n} slices of {self.images_path}")
        channels = in_channels or dataset_channels(1 if images_arr.ndim == 3 else images_arr.shape[-1])
        super().__init__(
            DatasetInfo(list(classes), ignore_index, channels), resize=resize, cache=cache, transform=transform
        )

    def volumes(self) -> tuple[np.ndarray, np.ndarray]:
        """The image volume ``(N, H, W[, C])`` and the label volume ``(N, H, W)``, read once per process."""
        return self._read_volumes()

    def _read_volumes(self) -> tuple[np.ndarray, np.ndarray]:
        if self._volumes is None:
            self._volumes = (read_volume(self.images_path), read_volume(self.labels_path))
        return self._volumes

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_volumes"] = None  # workers re-read the stack instead of receiving it pickled
        return state

    def __len__(self) -> int:
        return len(self.slices)

    def sample_name(self, index: int) -> str:
        return f"{self.images_path.stem}_{self.slices[index]:03d}"

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        images, labels = self._read_volumes()
        i = self.slices[index]
        image = to_channels(images[i], self.info.in_channels, f"{self.images_path} slice {i}")
        raw = RawMask(labels[i], palette=False, lossy=False, path=Path(f"{self.labels_path} (slice {i})"))
        return image, decode_mask(raw, self.encoding, self.info.num_classes, self.info.ignore_index)


def stack_slices(split: str, slices: Mapping[str, Any] | None, count: int) -> range | None:
    """The slices of ``split`` under a ``tiff_stack`` config's ``slices: {split: [start, stop], ...}``.

    Every split's range is checked (``0 <= start < stop <= count``), not only the one asked for, so
    a malformed ``val`` range is refused when ``train`` is built. ``split="all"`` gives ``None`` (all slices).
    """
    form = "give {split: [start, stop], ...}, e.g. {train: [0, 24], val: [24, 30]}"
    if slices is None:
        if split == "all":
            return None
        raise UnknownSplitError(f"split {split!r}: the tiff_stack config has no 'slices'; {form}, or use split 'all'")
    given = options.mapping("slices", slices, form)
    ranges = {str(k): options.slice_range(f"slices.{k}", v, count) for k, v in given.items()}
    if split == "all":
        return None
    if split not in ranges:
        raise unknown_split("tiff_stack split", split, [*ranges, "all"], hint="add it to 'slices'")
    return ranges[split]
