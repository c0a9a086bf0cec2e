"""The data check: every split of a dataset checked cheaply, and its properties decided once, before training.

Training reads files lazily, so without a check a bad file in ``val`` (or an image that cannot be batched with the
others) stops a run after a whole epoch. :func:`check_dataset` reads every file of every split first: image headers
and container integrity (no full decode where the format allows, see :func:`~unetfamily.data.io.inspect_image`), mask
values (each mask decoded once; results are cached per file), sizes and channels, and a digest of each image
(:func:`sample_contents`). It then checks the dataset as a whole:

- one :class:`~unetfamily.data.base.DatasetInfo` (classes, ignore_index, in_channels) for all splits;
- masks mean the same thing in every file (``auto`` never reads 255 as foreground in one file and
  as ignore in another) and hold some class besides background;
- a split batched by more than one image has one image size after ``resize``/``crop_size``;
- no sample is in two splits (leakage) or twice in one under two names: a WARNING, or with the
  data config's ``strict: true`` a DataError;
- pairs whose EXIF orientation tags differ although their sizes cannot tell (square, or turned by
  180 degrees): one WARNING for the dataset (:mod:`unetfamily.data.exif`).

Every bad file is collected; one DataError names the first few and counts them all.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from unetfamily.data import options
from unetfamily.data.base import DatasetInfo, PairedFilesDataset, SamplePaths, SegmentationDataset
from unetfamily.data.encodings import ambiguous_reading, decode_mask
from unetfamily.data.errors import DataError
from unetfamily.data.exif import size_mismatch, turned_differently, unturned_warning
from unetfamily.data.folds import FoldDataset
from unetfamily.data.formats import TiffStackDataset
from unetfamily.data.io import RawMask, convertible, image_to_float
from unetfamily.data.probe import distinct_values, probe_image, probe_mask
from unetfamily.data.registry import load_data_config
from unetfamily.data.split_sets import build_splits, shared_info
from unetfamily.data.synthetic import SyntheticShapes

__all__ = ["DatasetCheck", "check_dataset", "sample_contents"]

log = logging.getLogger(__name__)

#: Bad files named in full in the error; the rest are counted.
SHOWN_PROBLEMS = 3


@dataclass(frozen=True)
class DatasetCheck:
    """What :func:`check_dataset` found: the one ``info`` of every split, counts, and the warnings it logged."""

    info: DatasetInfo
    samples: dict[str, int]  # split -> samples
    files: int  # files read
    classes_found: list[str]  # classes present in some mask ("<ignore>" for ignore_index)
    image_sizes: dict[str, int]  # split -> distinct image sizes in its files (before resize)
    warnings: list[str]
    seconds: float
    #: split -> (name, digest of its image file's bytes or stack slice's pixels) per sample, for splits read from files
    contents: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


@dataclass
class _Split:
    """What checking one split found."""

    name: str
    samples: int
    files: int = 0
    problems: list[str] = field(default_factory=list)
    identities: list[tuple[str, str]] = field(default_factory=list)  # (sample name, content identity)
    content: bool = True  # the identities are digests of what was read, not the sample names
    sizes: dict[tuple[int, int], str] = field(default_factory=dict)  # (H, W) -> first sample of that size
    values: set[int] = field(default_factory=set)  # decoded mask values (classes, ignore_index)
    readings: dict[str, str] = field(default_factory=dict)  # how `auto` read an ambiguous mask -> one such file
    unturned: list[tuple] = field(default_factory=list)  # (image, mask, what) turned differently, sizes agreeing
    dtypes: dict[str, Path] = field(default_factory=dict)  # pixel type of the image files -> first such file


def check_dataset(
    config: Mapping[str, Any] | str | Path,
    splits: Sequence[str] = ("train", "val"),
    *,
    optional: Sequence[str] = ("test",),
    datasets: Mapping[str, SegmentationDataset] | None = None,
    batch_sizes: Mapping[str, int] | None = None,
    full: bool = False,
    threads: int | None = None,
) -> DatasetCheck:
    """Check every file of the dataset ``config`` describes, before training; return its one DatasetInfo.

    Args:
        config: a dataset config (mapping, YAML path or type name), as for :func:`build_dataset`.
        splits: splits that must exist; an :class:`UnknownSplitError` if one does not.
        optional: splits checked when the config defines them (a broken one is still an error).
        datasets: splits already built from ``config`` (reused instead of building them again).
        batch_sizes: split -> batch size; a split batched by more than 1 must have one image size.
        full: decode every image completely instead of the cheaper integrity check.
        threads: files read in parallel (default: CPU count, at most 8).

    Raises DataError (one, naming the first bad files and counting all) or DataConfigError.
    """
    start = time.perf_counter()
    cfg = load_data_config(config)
    strict = options.boolean("strict", cfg.get("strict", False))
    built = build_splits(cfg, splits, optional, datasets or {})
    info = shared_info(built)
    reports = [_check_split(name, ds, full, _threads(threads)) for name, ds in built.items()]
    _raise_problems(reports)
    warnings: list[str] = []
    _check_readings(reports)
    found = _check_classes(reports, info, warnings)
    _check_sizes(built, reports, batch_sizes or {})
    _check_duplicates(reports, strict, warnings)
    _check_dtypes(reports, warnings)
    unturned = [pair for r in reports for pair in r.unturned]
    if unturned:  # one WARNING for the whole dataset, naming an example
        warnings.append(unturned_warning(len({image.path for image, _, _ in unturned}), *unturned[0]))
    for text in warnings:
        log.warning("%s", text)
    seconds = time.perf_counter() - start
    files = sum(r.files for r in reports)
    log.info("data check passed: %s; %d files read in %.1f s",
             ", ".join(f"{r.name} {r.samples}" for r in reports), files, seconds)
    return DatasetCheck(info, {r.name: r.samples for r in reports}, files, found,
                        {r.name: len(r.sizes) for r in reports}, warnings, round(seconds, 3),
                        {r.name: r.identities for r in reports if r.content})


def sample_contents(dataset: SegmentationDataset, threads: int | None = None) -> list[tuple[str, str]] | None:
    """(name, content identity) of each readable sample of ``dataset``, as :func:`check_dataset`'s ``contents`` holds
    them; None for data not read from files (synthetic, a type the check decodes instead)."""
    report = _check_split("", dataset, False, _threads(threads))
    return report.identities if report.content else None


def _threads(threads: int | None) -> int:
    return max(1, threads or min(8, os.cpu_count() or 1))


def _check_split(name: str, dataset: SegmentationDataset, full: bool, threads: int) -> _Split:
    report = _Split(name, len(dataset))
    if isinstance(dataset, FoldDataset):
        for part, indices in dataset.sources():
            _check_indices(part, indices, report, full, threads)
    else:
        _check_indices(dataset, range(len(dataset)), report, full, threads)
    return report


def _check_indices(ds: SegmentationDataset, indices: Iterable[int], report: _Split, full: bool, threads: int) -> None:
    if isinstance(ds, PairedFilesDataset):
        _check_pairs(ds, list(indices), report, full, threads)
    elif isinstance(ds, TiffStackDataset):
        _check_stack(ds, indices, report)
    elif isinstance(ds, SyntheticShapes):  # generated: nothing to read
        report.sizes.setdefault((ds.size, ds.size), ds.sample_name(0))
        report.values.update(range(ds.info.num_classes))
        report.identities += [(ds.sample_name(i), ds.sample_name(i)) for i in indices]
        report.content = False
    else:  # a dataset type this check does not know: decode its samples
        report.content = False
        for i in indices:
            try:
                _, mask = ds.load(i)
            except DataError as e:
                report.problems.append(str(e))
                continue
            report.sizes.setdefault(tuple(mask.shape), ds.sample_name(i))
            report.values.update(np.unique(mask.numpy()).tolist())
            report.identities.append((ds.sample_name(i), ds.sample_name(i)))


def _probe_pair(sample: SamplePaths, full: bool) -> tuple[Any, Any, Any]:
    """(ImageProbe, MaskProbe, region-of-interest MaskProbe or None), each the error text where it fails."""
    def probe(fn: Any, path: Path | None, **kwargs: Any) -> Any:
        if path is None:
            return None
        try:
            return fn(path, **kwargs)
        except DataError as e:
            return str(e)

    return probe(probe_image, sample.image, full=full), probe(probe_mask, sample.mask), probe(probe_mask, sample.roi)


def _check_pairs(ds: PairedFilesDataset, indices: list[int], report: _Split, full: bool, threads: int) -> None:
    info = ds.info
    with ThreadPoolExecutor(max_workers=threads) as pool:
        probed = list(pool.map(lambda i: _probe_pair(ds.samples[i], full), indices))
    for i, (image, mask, roi) in zip(indices, probed):
        s = ds.samples[i]
        report.files += 2 if roi is None else 3
        errors = [p for p in (image, mask, roi) if isinstance(p, str)]
        if not errors and not convertible(image.channels, info.in_channels):
            errors.append(f"{s.image}: image has {image.channels} channels; cannot convert to "
                          f"in_channels={info.in_channels} (gray <-> RGB convert, alpha is dropped)")
        if not errors:
            errors = _pair_sizes(image, mask, roi, report)
        if not errors:
            errors += _record_mask(mask.values, ds.encoding, info, report)
        if errors:
            report.problems += errors
            continue
        report.sizes.setdefault((image.height, image.width), s.name)
        report.dtypes.setdefault(image.dtype, s.image)
        report.identities.append((s.name, image.digest))


def _pair_sizes(image: Any, mask: Any, roi: Any, report: _Split) -> list[str]:
    """The size mismatches of an image and its mask (and ROI); pairs turned differently noted in ``report``."""
    pairs = [(mask, "mask"), *([(roi, "region-of-interest mask")] if roi is not None else [])]
    errors = [e for other, what in pairs if (e := size_mismatch(image, other, what))]
    if not errors:
        report.unturned += [(image, other, what) for other, what in pairs if turned_differently(image, other)]
    return errors


def _record_mask(values: RawMask, encoding: Any, info: DatasetInfo, report: _Split) -> list[str]:
    """Decode a mask's distinct values as training would; record them, or return the error."""
    try:
        decoded = decode_mask(values, encoding, info.num_classes, info.ignore_index)
    except DataError as e:
        return [str(e)]
    report.values.update(np.unique(decoded).tolist())
    reading = ambiguous_reading(values, encoding, info.num_classes)
    if reading in ("index", "binary"):
        report.readings.setdefault(reading, str(values.path))
    return []


def _check_stack(ds: TiffStackDataset, indices: Iterable[int], report: _Split) -> None:
    images, labels = ds.volumes()
    channels = 1 if images.ndim == 3 else images.shape[-1]
    for i in indices:
        n = ds.slices[i]
        report.files += 1
        where = Path(f"{ds.labels_path} (slice {n})")
        if not convertible(channels, ds.info.in_channels):
            errors = [f"{ds.images_path} slice {n}: {channels} channels; cannot convert to "
                      f"in_channels={ds.info.in_channels}"]
        else:
            errors = _scalable(images[n], f"{ds.images_path} slice {n}")
            values = RawMask(distinct_values(labels[n]), palette=False, lossy=False, path=where)
            errors = errors or _record_mask(values, ds.encoding, ds.info, report)
        if errors:
            report.problems += errors
            continue
        report.sizes.setdefault(tuple(images.shape[1:3]), ds.sample_name(i))
        digest = hashlib.blake2b(np.ascontiguousarray(images[n]).tobytes(), digest_size=16).hexdigest()
        report.identities.append((ds.sample_name(i), digest))


def _scalable(pixels: np.ndarray, where: str) -> list[str]:
    """[] if training can scale ``pixels`` to [0, 1] (8/16-bit, or floats already in range), else the error."""
    if pixels.dtype in (np.uint8, np.uint16):
        return []
    try:
        image_to_float(pixels, where)
    except DataError as e:
        return [str(e)]
    return []


def _raise_problems(reports: Sequence[_Split]) -> None:
    problems = [p for r in reports for p in r.problems]
    if not problems:
        return
    per_split = ", ".join(f"{r.name} {len(r.problems)}" for r in reports if r.problems)
    more = f"; and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
    raise DataError(
        f"data check: {len(problems)} bad file(s) among {sum(r.files for r in reports)} ({per_split}), found "
        f"before training: " + "; ".join(problems[:SHOWN_PROBLEMS]) + more + ". Fix or remove them"
    )


def _check_readings(reports: Sequence[_Split]) -> None:
    readings: dict[str, str] = {}
    for r in reports:
        for kind, path in r.readings.items():
            readings.setdefault(kind, path)
    if len(readings) > 1:
        raise DataError(
            f"mask_encoding auto: {readings['index']} holds {{0, 1}} (class indices, 255 = ignore) but "
            f"{readings['binary']} holds {{0, 255}} (binary, 255 = foreground); 255 cannot mean both. Declare "
            "mask_encoding: binary (255 is foreground) or mask_encoding: index (255 is ignore_index)"
        )


def _check_classes(reports: Sequence[_Split], info: DatasetInfo, warnings: list[str]) -> list[str]:
    """The classes found in the masks; a DataError when only background and ignore_index are."""
    found = set().union(*(r.values for r in reports))
    names = [info.classes[c] if c < info.num_classes else "<ignore>" for c in sorted(found)]
    if not found & set(range(1, info.num_classes)):
        text = f"no mask holds a class other than 0 ({info.classes[0]!r})"
        if info.ignore_index in found:
            raise DataError(
                f"{text}, but masks hold {info.ignore_index} (= ignore_index), so every pixel not of class 0 is "
                f"ignored. If {info.ignore_index} marks the foreground, declare mask_encoding: binary; otherwise "
                "fix the masks or the classes"
            )
        warnings.append(f"{text}: training would learn only that class; check the masks and mask_encoding")
        return names
    absent = [name for c, name in enumerate(info.classes) if c not in found]
    if absent:
        warnings.append(f"classes {absent} appear in no mask of the splits checked "
                        f"({', '.join(r.name for r in reports)}); their scores will be undefined")
    if info.background is None and not info.has_background:
        warnings.append(f"class 0 ({info.classes[0]!r}) is not named like a background, so it is scored like the "
                        f"other classes (background: auto): dice, iou, NSD, clDice and a comparison's verdict average "
                        f"all {info.num_classes} classes. If class 0 is a background to leave out of them, declare "
                        "background: true in the data config; background: false silences this")
    return names


def _check_sizes(built: Mapping[str, SegmentationDataset], reports: Sequence[_Split], batch: Mapping[str, int]) -> None:
    for r in reports:
        ds = built[r.name]
        fixed = ds.resize is not None or getattr(ds.transform, "crop_size", None) is not None
        if batch.get(r.name, 1) <= 1 or fixed or len(r.sizes) <= 1:
            continue
        examples = ", ".join(f"{h}x{w} ({name})" for (h, w), name in list(r.sizes.items())[:3])
        raise DataError(
            f"split {r.name!r}: images of {len(r.sizes)} sizes (HxW {examples}) cannot be stacked into batches of "
            f"{batch[r.name]}; set the dataset's 'resize', an augmentation 'crop_size' (train only), or batch size 1"
        )


def _check_dtypes(reports: Sequence[_Split], warnings: list[str]) -> None:
    """A warning when the image files have several pixel types: each is scaled by its own type's range, so one
    brightness reads ~257x darker from a 16-bit file than from an 8-bit one (a mixed export)."""
    dtypes: dict[str, Path] = {}
    for r in reports:
        for dtype, path in r.dtypes.items():
            if dtype.startswith("uint"):  # float images are in [0, 1] already, whatever the others' type
                dtypes.setdefault(dtype, path)
    if len(dtypes) > 1:
        found = ", ".join(f"{dtype} (e.g. {path})" for dtype, path in sorted(dtypes.items()))
        warnings.append(f"the images have several pixel types: {found}; each is scaled to [0, 1] by its own type's "
                        "range (8-bit /255, 16-bit /65535), so the same intensity reads differently in each. Save "
                        "them all with one bit depth")


def _check_duplicates(reports: Sequence[_Split], strict: bool, warnings: list[str]) -> None:
    """Samples in two splits (leakage), or in one split under two names: warnings, or errors with ``strict``."""
    found = []
    for r in reports:
        names: dict[str, set[str]] = {}
        for name, identity in r.identities:
            names.setdefault(identity, set()).add(name)
        same = [sorted(n) for n in names.values() if len(n) > 1]
        if same:
            found.append(f"split {r.name!r}: {len(same)} sample(s) appear under several names, e.g. {same[:3]}")
    for a, b in combinations(reports, 2):
        in_b = {identity: name for name, identity in b.identities}
        both = [(name, in_b[identity]) for name, identity in a.identities if identity in in_b]
        if both:
            found.append(f"split leakage: {len(both)} sample(s) of {a.name!r} are also in {b.name!r}, "
                         f"e.g. {both[:3]}; a sample must be in one split only")
    if found and strict:
        raise DataError("; ".join(found) + " (strict: true)")
    warnings += [f"{text} (strict: true refuses this)" for text in found]
