"""The dataset contract: :class:`DatasetInfo`, the sample dict, and the shared loading pipeline.

A sample is ``{"image": float32 (C, H, W) in [0, 1], "mask": int64 (H, W), "name": str}``; mask
pixels hold class indices, and ``info.ignore_index`` where a pixel is ignored.

Loading runs in two stages. The deterministic stage (decode, channel conversion, optional
``resize`` or ``scale``) is cached per sample when ``cache=True``; the random stage (``transform``, e.g. an
augmentation) runs on every access. Cached and uncached access return identical samples.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from unetfamily.data import options
from unetfamily.data.encodings import MaskEncoding, decode_mask
from unetfamily.data.errors import DataConfigError, DataError
from unetfamily.data.exif import Oriented, file_orientation, size_mismatch
from unetfamily.data.io import image_to_float, read_image, read_mask, to_channels
from unetfamily.data.probe import detect_channels
from unetfamily.errors import Range

__all__ = [
    "BACKGROUND_NAMES", "DatasetInfo", "PairedFilesDataset", "Sample", "SamplePaths", "SegmentationDataset",
    "class0_is_background", "named_like_background", "num_model_outputs", "scaled_size",
]

log = logging.getLogger(__name__)

Sample = dict[str, Any]
Transform = Callable[[Sample], Sample]

#: Largest ignore_index (masks are stored as uint8, or int16 past 255).
MAX_MASK_VALUE = 32767
#: Largest in_channels a dataset may declare (multi-sample TIFFs pass through unconverted).
MAX_CHANNELS = 1024
#: Largest ``scale`` factor a dataset accepts.
MAX_SCALE = 8.0


#: Names of a class 0 that is a background (compared stripped of spaces and underscores, in lower case).
BACKGROUND_NAMES = frozenset({"background", "bg", "backgnd", "back ground", "back", "backdrop", "void", "none",
                              "nothing", "unlabeled", "unlabelled", "other", "others", "clutter", "negative", "normal",
                              "empty", "0"})


def named_like_background(name: str) -> bool:
    """Whether a class name says background (``background``, ``_background_``, ``BG``, ``void``, ...)."""
    return name.strip(" _").lower() in BACKGROUND_NAMES


def class0_is_background(classes: Sequence[str], background: bool | None = None) -> bool:
    """Whether class 0 of ``classes`` is a background the foreground scores leave out: ``background`` as declared,
    else (None, ``background: auto``) when the task is binary or class 0 is :func:`named_like_background`."""
    if background is not None:
        return background
    return len(classes) == 2 or named_like_background(classes[0])


@dataclass(frozen=True)
class DatasetInfo:
    """What a model, a loss and the metrics need to know about a dataset.

    ``classes`` lists every predicted class ("background" first where the data has one);
    mask pixels equal to ``ignore_index`` carry no label. ``background`` says whether class 0 is a
    background, which the foreground scores (``dice``, ``iou``, NSD, HD95, a comparison's verdict) leave
    out, or a class like the others (CamVid's sky), which they average in: ``None`` (a data config's
    ``background: auto``) decides it from the classes, see :attr:`has_background`.
    """

    classes: list[str]
    ignore_index: int = 255
    in_channels: int = 3
    background: bool | None = None

    def __post_init__(self) -> None:
        classes = self.classes
        if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) and c for c in classes):
            raise DataConfigError(f"classes={classes!r} is invalid; give two or more class names "
                                  "(background first where the data has one)")
        twice = sorted({c for c in classes if classes.count(c) > 1})
        if twice:
            raise DataConfigError(f"classes: {twice} are listed twice; each class needs its own name")
        options.integer("ignore_index", self.ignore_index, lo=0, hi=MAX_MASK_VALUE)
        if self.ignore_index < len(classes):
            raise DataConfigError(
                f"ignore_index={self.ignore_index} is one of the classes 0..{len(classes) - 1} "
                f"({classes[self.ignore_index]!r}); ignored pixels need a value outside the classes (e.g. 255)"
            )
        options.integer("in_channels", self.in_channels, lo=1, hi=MAX_CHANNELS)
        if self.background is not None:
            options.boolean("background", self.background)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def has_background(self) -> bool:
        """Class 0 is a background, left out of the foreground scores: as declared, else (``background: auto``)
        when the task is binary or class 0 is named like one (:func:`class0_is_background`)."""
        return class0_is_background(self.classes, self.background)

    @property
    def num_model_outputs(self) -> int:
        """1 for two classes (one sigmoid logit), else ``len(classes)`` (softmax)."""
        return 1 if len(self.classes) == 2 else len(self.classes)


def num_model_outputs(info: DatasetInfo | Dataset) -> int:
    """Output channels a model needs for ``info`` (or a dataset's ``.info``): 1 if binary, else C."""
    return (info if isinstance(info, DatasetInfo) else info.info).num_model_outputs


def _as_size(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    return options.size("resize", size)


def _as_scale(scale: float) -> float:
    """``scale`` checked: a finite number in (0, MAX_SCALE] (0.5 halves each side)."""
    Range(gt=0, le=MAX_SCALE)("scale", scale, error=DataConfigError)
    return float(scale)


def scaled_size(shape: Sequence[int], scale: float) -> tuple[int, int]:
    """``(round(H * scale), round(W * scale))`` of an ``(H, W)`` shape, each side at least 1."""
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


class SegmentationDataset(Dataset):
    """Base of every dataset here: caching, resizing, tensor conversion and the transform.

    Subclasses implement ``__len__``, :meth:`sample_name` and :meth:`read`.
    ``resize`` gives every sample one ``(H, W)``; ``scale`` (exclusive with it) multiplies each
    sample's own size by a factor (:func:`scaled_size`), the image bilinear antialiased and the mask
    nearest, so the region of interest, already part of the mask, follows it.
    ``dataset[i]`` returns a sample dict; ``dataset[(i, seed)]`` (what
    :func:`~unetfamily.data.make_loader` asks for) runs the transform under ``torch.manual_seed(seed)``
    so augmentation is reproducible whatever the number of workers.
    """

    def __init__(
        self,
        info: DatasetInfo,
        *,
        resize: int | Sequence[int] | None = None,
        cache: bool = False,
        transform: Transform | None = None,
        scale: float = 1.0,
    ) -> None:
        self.info = info
        self.resize = _as_size(resize)
        self.cache = options.boolean("cache", cache)
        self.transform = transform
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.scale = 1.0
        if scale != 1.0:
            self.set_scale(scale)

    def set_scale(self, scale: float) -> None:
        """Resize every sample by ``scale`` from now on (clears the cache); refused with ``resize``."""
        scale = _as_scale(scale)
        if self.resize is not None:
            raise DataConfigError(
                f"scale={scale:g} and resize={list(self.resize)} are both set; give one: 'resize' makes every "
                "sample one size, 'scale' multiplies each sample's own size"
            )
        self.scale = scale
        self._cache.clear()

    # -- to implement -------------------------------------------------------------------
    def __len__(self) -> int:
        raise NotImplementedError

    def sample_name(self, index: int) -> str:
        """The sample's name (file stem or slice id)."""
        raise NotImplementedError

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Decode sample ``index``: image ``(H, W, C)`` (uint8/uint16/float) and mask ``(H, W)`` class indices."""
        raise NotImplementedError

    def read_roi(self, index: int) -> np.ndarray | None:
        """The region of interest of sample ``index``: ``(H, W)`` bool, True where pixels count; ``None``: all count.

        :meth:`read` already sets the mask to ``info.ignore_index`` outside it; this is for tools that
        show or export the region (``unetfamily dataset convert``).
        """
        return None

    # -- shared pipeline ----------------------------------------------------------------
    @property
    def has_background(self) -> bool:
        """Class 0 is a background, left out of the foreground scores: as declared, else (``background: auto``)
        when the task is binary or class 0 is named like one (:func:`class0_is_background`)."""
        return self.info.has_background

    @property
    def num_model_outputs(self) -> int:
        return self.info.num_model_outputs

    @property
    def names(self) -> list[str]:
        return [self.sample_name(i) for i in range(len(self))]

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The deterministic stage: image ``(C, H, W)`` in its storage dtype, mask ``(H, W)``. Cached if enabled."""
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} samples")
        hit = self._cache.get(index)
        if hit is not None:
            return hit
        image, mask = self.read(index)
        if image.shape[:2] != mask.shape:
            raise DataError(
                f"sample {self.sample_name(index)!r}: image is {image.shape[1]}x{image.shape[0]} (WxH) but its "
                f"mask is {mask.shape[1]}x{mask.shape[0]}; they must match pixel for pixel"
            )
        img = torch.from_numpy(_writable(image.transpose(2, 0, 1)))
        msk = torch.from_numpy(_writable(mask))
        if self.resize is not None and tuple(msk.shape) != self.resize:
            img, msk = _resize(img, msk, self.resize)
        elif self.scale != 1.0:
            img, msk = _resize(img, msk, scaled_size(msk.shape, self.scale))
        if self.cache:
            self._cache[index] = (img, msk)
        return img, msk

    def preload(self, num_threads: int = 2) -> None:
        """Fill the cache now (decoders release the GIL, so threads overlap). No-op without ``cache``."""
        if not self.cache:
            return
        todo = [i for i in range(len(self)) if i not in self._cache]
        with ThreadPoolExecutor(max_workers=max(1, num_threads)) as pool:
            for _ in pool.map(self.load, todo):
                pass
        log.info("cached %d samples of %s", len(todo), type(self).__name__)

    def __getitem__(self, key: int | tuple[int, int]) -> Sample:
        index, seed = key if isinstance(key, tuple) else (key, None)
        img, msk = self.load(int(index))
        sample = {
            "image": torch.from_numpy(image_to_float(img.numpy(), self.sample_name(index))),
            "mask": msk.long(),
            "name": self.sample_name(index),
        }
        if self.transform is None:
            return sample
        if seed is None:
            return self.transform(sample)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.transform(sample)

    def __repr__(self) -> str:
        info = self.info
        return f"{type(self).__name__}(samples={len(self)}, classes={info.classes}, in_channels={info.in_channels})"


def _writable(arr: np.ndarray) -> np.ndarray:
    arr = np.ascontiguousarray(arr)
    return arr if arr.flags.writeable else arr.copy()


def _resize(img: torch.Tensor, msk: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize an image (bilinear, antialiased, kept in its dtype) and a mask (nearest)."""
    x = F.interpolate(img[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    if not img.dtype.is_floating_point:
        x = x.round_().clamp_(0, torch.iinfo(img.dtype).max)
    x = x.to(img.dtype)
    m = F.interpolate(msk[None, None].float(), size=size, mode="nearest-exact")[0, 0].to(msk.dtype)
    return x, m


@dataclass(frozen=True)
class SamplePaths:
    """One image file, its mask file and, optionally, its region-of-interest mask file."""

    name: str
    image: Path
    mask: Path
    roi: Path | None = None


class PairedFilesDataset(SegmentationDataset):
    """Images and masks stored as one file each (folder pairs, Pascal VOC, CamVid, ...).

    Args:
        samples: the image/mask file pairs, in dataset order.
        classes: class names, background first where the data has one.
        encoding: how mask values become class indices (see :mod:`unetfamily.data.encodings`).
        ignore_index: mask value for unlabelled pixels.
        in_channels: 1 or 3 (images are converted); ``None`` decides it from every image's header
            (:func:`~unetfamily.data.probe.detect_channels`).
        resize: ``(H, W)`` or an int for square outputs; ``None`` keeps each file's size.
        cache: keep decoded (and resized) samples in memory.
        transform: called on every sample dict (e.g. an augmentation).
    """

    def __init__(
        self,
        samples: Sequence[SamplePaths],
        classes: Sequence[str],
        *,
        encoding: MaskEncoding | None = None,
        ignore_index: int = 255,
        in_channels: int | None = None,
        resize: int | Sequence[int] | None = None,
        cache: bool = False,
        transform: Transform | None = None,
    ) -> None:
        if not samples:
            raise DataError("no samples: the image list is empty")
        self.samples = list(samples)
        self.encoding = encoding or MaskEncoding()
        self.encoding.check_classes(len(classes), ignore_index)
        if in_channels is None:
            in_channels = detect_channels([s.image for s in self.samples])
        info = DatasetInfo(list(classes), ignore_index, in_channels)
        super().__init__(info, resize=resize, cache=cache, transform=transform)

    def __len__(self) -> int:
        return len(self.samples)

    def sample_name(self, index: int) -> str:
        return self.samples[index].name

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image ``(H, W, C)`` and mask ``(H, W)``; mask pixels outside the sample's ROI are ``ignore_index``."""
        s = self.samples[index]
        image = to_channels(read_image(s.image), self.info.in_channels, s.image)
        mask = decode_mask(read_mask(s.mask), self.encoding, self.info.num_classes, self.info.ignore_index)
        _check_size(s.image, image, "mask", s.mask, mask)
        roi = self.read_roi(index)
        if roi is not None:
            _check_size(s.image, image, "region-of-interest mask", s.roi, roi)
            mask = np.where(roi, mask, np.asarray(self.info.ignore_index, mask.dtype))
        return image, mask

    def read_roi(self, index: int) -> np.ndarray | None:
        """``(H, W)`` bool, True inside sample ``index``'s region of interest; ``None`` without one.

        Inside is any nonzero pixel: gray or 16-bit value != 0, RGB any channel != 0, palette index
        != 0 (whatever its colour), alpha ignored. In a JPEG, whose compression blurs edges, it is a
        value >= 128 in some channel.
        """
        path = self.samples[index].roi
        if path is None:
            return None
        raw = read_mask(path)
        inside = raw.values >= 128 if raw.lossy else raw.values != 0
        return inside.any(axis=-1) if inside.ndim == 3 else inside



def _check_size(image_path: Path, image: np.ndarray, what: str, path: Path, other: np.ndarray) -> None:
    """A DataError naming both files when ``other`` (a mask or ROI, ``(H, W)``) is not the image's ``(H, W)``.

    The message gives each file's EXIF orientation where one was applied (:func:`~unetfamily.data.exif.size_mismatch`).
    """
    if image.shape[:2] != other.shape:
        first = Oriented(Path(image_path), *image.shape[:2], file_orientation(image_path))
        second = Oriented(Path(path), *other.shape, file_orientation(path))
        raise DataError(size_mismatch(first, second, what))
