""":func:`make_plan`: fingerprint a dataset, apply the rules, fit every model to the device and the budget."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from unetfamily.data import build_training_split, load_data_config
from unetfamily.data.base import SegmentationDataset, scaled_size
from unetfamily.data.fingerprint import Fingerprint, fingerprint_dataset, load_or_compute_fingerprint
from unetfamily.plan import rules
from unetfamily.plan.data_cost import DataCost, measure_data_cost
from unetfamily.plan.fit import (
    Budget, FamilyFit, affordable_patch, fit_family, memory_budget, probe,
)
from unetfamily.plan.recipe import Plan

log = logging.getLogger(__name__)

__all__ = ["ModelSpec", "make_plan", "native_config", "dataset_key", "data_spec"]

#: (id, registry name, constructor kwargs) of one model to fit.
ModelSpec = tuple[str, str, dict[str, Any]]


def data_spec(spec: str) -> tuple[dict[str, Any], str]:
    """A dataset config and its name from ``--data``: a YAML path, a folder (its ``data.yaml`` when it has one, as
    ``dataset convert`` writes; else images/ + masks/, with the class names of a ``classes.txt`` there, as
    ``dataset labelme`` writes), or a type name."""
    path = Path(spec)
    if path.is_file() or path.is_dir():  # a folder: see load_data_config
        return dict(load_data_config(path)), path.stem if path.is_file() else path.name
    return {"type": spec}, spec


def native_config(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without the keys the plan decides itself: ``resize``, ``scale`` and ``augment``."""
    return {k: v for k, v in data.items() if k not in ("resize", "scale", "augment")}


def dataset_key(config: dict[str, Any], dataset: SegmentationDataset) -> str:
    """A cache key of a dataset: its config, sample names and the size and modification time of every file it reads
    (cheap: the files' contents are not read), so a fingerprint is measured again when a mask or image is edited."""
    text = json.dumps({"config": config, "names": [dataset.sample_name(i) for i in range(len(dataset))],
                       "files": _file_stamps(dataset)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _file_stamps(dataset: Any) -> list[tuple[str, int, int]]:
    """``(path, size, mtime_ns)`` of the files ``dataset`` reads: its samples' image, mask and region-of-interest
    files (folder types), its volumes (``tiff_stack``), those of the datasets a fold pools; missing files left out."""
    paths: list[Path] = []
    for sample in getattr(dataset, "samples", None) or []:
        paths += [p for p in (getattr(sample, "image", None), getattr(sample, "mask", None),
                              getattr(sample, "roi", None)) if p is not None]
    paths += [p for p in (getattr(dataset, "images_path", None), getattr(dataset, "labels_path", None)) if p]
    stamps = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        stamps.append((str(path), st.st_size, st.st_mtime_ns))
    if callable(getattr(dataset, "sources", None)):
        stamps += [stamp for part, _ in dataset.sources() for stamp in _file_stamps(part)]
    return stamps


def _fingerprint(data: dict[str, Any], train: SegmentationDataset, cache: Path | None, key: str | None) -> Fingerprint:
    if cache is None:
        return fingerprint_dataset(train)
    return load_or_compute_fingerprint(train, cache, key or dataset_key(data, train))


def make_plan(
    data: dict[str, Any],
    models: Sequence[ModelSpec],
    *,
    device: str = "cpu",
    budget: Budget = Budget(),
    cache: Path | None = None,
    key: str | None = None,
    val_cases: int | None = None,
    train: SegmentationDataset | None = None,
) -> Plan:
    """The plan for training ``models`` on the dataset ``data`` (a dataset config) on ``device`` within ``budget``.

    The fingerprint is read from the train split at native size (``train`` if given, else built from ``data``
    without resize and augmentation; every case when the data defines no splits) and cached in the JSON file
    ``cache`` under ``key``. Each
    model is measured on ``device`` with the current torch threads. ``val_cases``: images validated on
    each epoch (default: a fifth of the training images), for the validation's share of a time budget.
    """
    native = native_config(data)
    if train is None:
        train = build_training_split(native)[1]  # data without splits: all its cases
        train.cache = False  # the fingerprint reads each image once: do not keep them all in memory
    fp = _fingerprint(native, train, cache, key)
    info, dev = train.info, torch.device(device)
    memory = memory_budget(dev)
    median = (int(fp.size_median[0]), int(fp.size_median[1]))
    shape = {"in_channels": info.in_channels, "outputs": info.num_model_outputs}
    probes = {mid: probe(name, kwargs, shape["in_channels"], shape["outputs"], median, dev)
              for mid, name, kwargs in models}
    # the shared scale is set for the median model's patch (the lower median): the costliest family
    # would otherwise shrink every family's images to its own small patch
    reference = statistics.median_low(min(affordable_patch(probes[mid], median, budget, memory))
                                      for mid, _, _ in models)
    scale = rules.scale(fp, reference)
    one_size = rules.one_size(fp, scaled_size(median, scale.value))
    resize = None if one_size.value is None else (int(one_size.value[0]), int(one_size.value[1]))
    image = resize or scaled_size(median, scale.value)
    train_pixels = (len(train) * image[0] * image[1] if resize else
                    fp.pixels_total * len(train) / max(fp.cases, 1) * scale.value ** 2)
    val_cases = val_cases if val_cases is not None else max(1, round(0.2 * len(train)))
    cached, preset = bool(native.get("cache", False)), rules.augmentation(fp).value

    @functools.cache  # models fitted to the same patch share one measurement
    def data(patch: tuple[int, int]) -> DataCost:
        fg = rules.foreground_oversampling(patch, image, preset).value
        return measure_data_cost(train, scale=scale.value, preset=preset, patch=patch, foreground=fg, cached=cached,
                                 resize=resize)

    read = measure_data_cost(train, scale=scale.value, preset=None, patch=image, foreground=0.0, cached=cached,
                             resize=resize)
    val_read = dataclasses.replace(read, cases=val_cases)
    sizes = [image] if resize else [scaled_size(size, scale.value) for size in fp.size_sample or [median]]
    fits = {mid: fit_family(mid, name, kwargs, probes[mid], image, device=dev, budget=budget, memory=memory,
                            train_pixels=train_pixels, val_cases=val_cases, data=data, val_read=val_read,
                            sizes=sizes, **shape)
            for mid, name, kwargs in models}
    return _assemble(native, fp, device, budget, (scale, one_size), image, fits, {"models": [list(m) for m in models],
                     "threads": torch.get_num_threads(), "val_cases": val_cases})


def _windows(fits: dict[str, FamilyFit]) -> str:
    """The validation windows of ``fits``: one size when all agree, else per model."""
    sizes = {mid: "x".join(map(str, fit.window)) for mid, fit in fits.items()}
    if len(set(sizes.values())) == 1:
        return next(iter(sizes.values()))
    return ", ".join(f"{m} {w}" for m, w in sizes.items())


def _assemble(native: dict[str, Any], fp: Fingerprint, device: str, budget: Budget,
              geometry: tuple[rules.Choice, rules.Choice], image: tuple[int, int], fits: dict[str, FamilyFit],
              request: dict[str, Any]) -> Plan:
    scale, one_size = geometry
    norm, augment, weights = rules.normalization(fp), rules.augmentation(fp), rules.class_weights(fp)
    foreground = {mid: rules.foreground_oversampling(tuple(fit.patch), image, augment.value)  # type: ignore[arg-type]
                  for mid, fit in fits.items()}
    optimizer = rules.optimizer(int(statistics.median(f.epochs * f.steps_per_epoch for f in fits.values())))
    fg_reason = next(iter(foreground.values())).reason if len({c.value for c in foreground.values()}) == 1 else \
        "; ".join(f"{mid}: {c.reason}" for mid, c in foreground.items())
    reasons = {
        "scale": scale.reason, "resize": one_size.reason, "normalization": norm.reason, "augment": augment.reason,
        "foreground": fg_reason, "loss": f"Dice + cross-entropy (nnU-Net); class weights: {weights.reason}",
        "optimizer": optimizer.reason + ("; under the time budget the decay follows the time spent when that is "
                                         "further along than the steps (schedule.follow_time), so a run slower "
                                         "than measured still ends annealed" if budget.seconds is not None else ""),
        "validation": f"every epoch on the full images (median {image[0]}x{image[1]} as trained) by sliding "
                      f"windows of {_windows(fits)}: the median image rounded up to multiples of 32 (never smaller "
                      f"than the patch, at most 1024 px and what memory holds; padded where an image is smaller, "
                      f"tiled where larger), one forward pass per typical image (nnU-Net uses the patch), Gaussian "
                      f"weights, overlap 0.5",
        **{f"families.{mid}": fit.reason for mid, fit in fits.items()},
    }
    return Plan(
        data=native, device=device, budget={"seconds": budget.seconds, "steps": budget.steps},
        fingerprint=fp.to_dict(), scale=float(scale.value), normalization=norm.value, augment=augment.value,
        foreground={mid: float(c.value) for mid, c in foreground.items()},
        loss={"name": "dice_ce", "kwargs": weights.value}, optimizer=optimizer.value, families=fits,
        reasons=reasons, request={**request, "budget": budget.describe(), "device": device},
        resize=None if one_size.value is None else list(one_size.value),
    )
