"""Evaluation: :func:`evaluate` over a loader, :func:`evaluate_checkpoint` for a saved model.

Scores come from one confusion matrix accumulated over the whole split (and over all processes
under DDP), see :mod:`unetfamily.metrics`; per-image scores are for finding where a model fails.

With a ``window`` (``train.val_window``) each image is predicted in Gaussian-blended sliding
windows (:func:`window_labels`), as :class:`~unetfamily.engine.predict.Predictor` predicts it:
the windows' probabilities are blended (docs/predict_export.md says why), then thresholded
(binary) or arg-maxed into the labels the metrics score.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unetfamily.config import Range
from unetfamily.engine.inference import sliding_window_strips
from unetfamily.engine.trained_cases import trained_on, warn_trained_on
from unetfamily.errors import ConfigError
from unetfamily.models import final_output

log = logging.getLogger(__name__)

__all__ = ["evaluate", "evaluate_checkpoint", "scored_as_validated", "validated_background", "window_labels"]


def _plain(value: torch.Tensor) -> Any:
    value = value.detach().cpu()
    if value.dim() == 0:
        return value.item()
    return value.tolist()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Any,
    device: torch.device | str,
    num_classes: int,
    ignore_index: int = 255,
    *,
    amp: str = "none",
    hd95: bool = False,
    per_image: bool = False,
    threshold: float = 0.5,
    nsd_tolerance: float | None = None,
    cldice: bool = False,
    window: Sequence[int] | None = None,
    overlap: float = 0.5,
    window_batch: int = 4,
    include_background: bool = False,
) -> dict[str, Any]:
    """Scores of ``model`` on every batch of ``loader`` (``{"image": (N,C,H,W), "mask": (N,H,W)}``).

    ``num_classes`` counts the background (binary = 2); ``include_background`` (the data's ``not
    info.has_background``) averages class 0 into the foreground scores. Returns plain Python values: the scalar
    scores (``dice``, ``iou``, ``miou``, ``pixel_accuracy``, ...), ``per_class_*`` lists, the
    ``confusion_matrix`` (rows = target) and, with ``per_image``, a list of per-image scores.
    With ``per_image``, ``nsd_tolerance`` (pixels) adds the normalised surface Dice and ``cldice``
    the centreline Dice of every image, and their means over the images where they are defined
    (``nsd``, ``cldice``). ``window`` ([H, W], None: whole images) predicts each image in sliding
    windows that share ``overlap``, ``window_batch`` windows per forward pass (:func:`window_labels`).
    The model is left in eval mode. The model, the blending and the confusion matrix run on ``device``
    (batches from pinned memory copied without blocking); only the per-image scores come back to the
    CPU, one copy per batch, and the distance-based ones (HD95, NSD, clDice) are computed there (SciPy).
    """
    from unetfamily.metrics import SegmentationMetrics, per_image_scores  # torchmetrics: the 'train' extra

    device = torch.device(device)
    model.eval()
    metrics = SegmentationMetrics(num_classes, ignore_index=ignore_index, threshold=threshold, hd95=hd95,
                                  include_background=include_background).to(device)
    images_scores: list[dict[str, Any]] = []
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if amp == "bf16" else contextlib.nullcontext()
    for batch in loader:
        images = batch["image"].to(device, non_blocking=True)
        masks = batch["mask"].to(device, non_blocking=True)
        if window is not None:
            output = window_labels(model, images, window, overlap, threshold=threshold, batch_size=window_batch,
                                   amp=amp)
        else:
            with autocast:
                output = model(images)
            output = output.float() if isinstance(output, torch.Tensor) else output
        metrics.update(output, masks)
        if per_image:
            scores = per_image_scores(output, masks, num_classes, ignore_index=ignore_index, threshold=threshold,
                                      with_hd95=hd95, nsd_tolerance=nsd_tolerance, with_cldice=cldice, describe=True,
                                      include_background=include_background)
            _add_images(images_scores, scores, batch.get("name"), len(images))
    result = {k: _plain(v) for k, v in metrics.compute().items()}
    return {**result, **_image_means(images_scores)} if per_image else result


def _image_means(images_scores: list[dict[str, Any]]) -> dict[str, Any]:
    """``per_image`` and the means of the per-image-only scores (NSD, clDice) over the images where defined."""
    out: dict[str, Any] = {"per_image": images_scores}
    for key in ("nsd", "cldice"):
        values = [r[key] for r in images_scores if key in r and r[key] is not None and math.isfinite(r[key])]
        if images_scores and key in images_scores[0]:
            out[key] = sum(values) / len(values) if values else math.nan
    return out


def _add_images(images_scores: list[dict[str, Any]], scores: dict[str, torch.Tensor], names: list[str] | None,
                count: int) -> None:
    """Append one batch's per-image ``scores`` (brought to the CPU in one copy per score) to ``images_scores``."""
    scores = {k: v.detach().cpu() for k, v in scores.items()}
    start = len(images_scores)
    for i, name in enumerate(names if names is not None else [str(start + j) for j in range(count)]):
        images_scores.append({"name": name, **{k: _plain(v[i]) for k, v in scores.items()}})


@torch.no_grad()
def window_labels(model: nn.Module, images: torch.Tensor, window: Sequence[int], overlap: float = 0.5, *,
                  threshold: float = 0.5, batch_size: int = 4, amp: str = "none") -> torch.Tensor:
    """Labels (N, H, W) long of ``images`` (N, C, H, W), predicted in Gaussian-blended sliding windows.

    Each window of ``window`` = [h, w] pixels (an image smaller than it is zero-padded, as in
    :class:`~unetfamily.engine.predict.Predictor`) goes through ``model`` (the caller puts it in eval
    mode), ``batch_size`` windows per call, under bf16 autocast with ``amp="bf16"``. The
    probabilities of its final output (sigmoid for 1 channel, softmax otherwise) are blended, and
    the labels are ``probability > threshold`` (1 channel) or the arg-max, as
    :func:`~unetfamily.metrics.logits_to_labels` labels logits.
    """
    autocast = torch.autocast(images.device.type, dtype=torch.bfloat16) if amp == "bf16" else contextlib.nullcontext()

    def probabilities(tiles: torch.Tensor) -> torch.Tensor:
        with autocast:
            logits = final_output(model(tiles)).float()
        return logits.sigmoid() if logits.shape[1] == 1 else logits.softmax(dim=1)

    n, _, height, width = images.shape
    labels = torch.empty(n, height, width, dtype=torch.long, device=images.device)
    roi = (int(window[0]), int(window[1]))
    for row, block in sliding_window_strips(probabilities, images, roi, overlap, batch_size, "gaussian"):
        rows = slice(row, row + block.shape[2])
        labels[:, rows] = (block[:, 0] > threshold).long() if block.shape[1] == 1 else block.argmax(dim=1)
    return labels


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str | Path | dict[str, Any] | None = None,
    split: str = "val",
    *,
    batch_size: int = 4,
    hd95: bool = False,
    threshold: float | None = None,
    device: str | torch.device = "auto",
    names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Scores of a checkpoint's model (file or run folder) on ``split`` of a dataset, per image too.

    ``data`` is a dataset config (mapping or YAML path, see :func:`unetfamily.data.build_dataset`);
    None uses the data config the model was trained with. ``threshold`` (in (0, 1), None: 0.5) is
    for binary (1-output) models; ``hd95`` for binary tasks. Options a model or dataset cannot use
    (a threshold for a multi-class model, data of other classes or channels) raise a
    :class:`~unetfamily.errors.ConfigError`; ``names`` maps option names to how errors show them
    (the CLI passes ``{"threshold": "--threshold", ...}``). Returns :func:`evaluate`'s result with
    ``per_image`` scores, plus ``classes``, ``background`` (class 0 left out of ``dice`` and ``iou``), ``split``,
    ``checkpoint`` (the file that was read) and ``trained_on``: the names of the cases that are images the model
    trained on (a WARNING names them unless ``split`` is ``train``; :mod:`unetfamily.engine.trained_cases`), None
    when the checkpoint or the data records no training cases.
    A model trained with ``train.val_window`` is scored as it was validated: each image in sliding
    windows, one image at a time, ``batch_size`` windows per forward pass.
    """
    from unetfamily.data import build_dataset, make_loader
    from unetfamily.data.check import sample_contents
    from unetfamily.engine.checkpoint import load_model, resolve_checkpoint
    from unetfamily.engine.device import resolve_device

    name = {**{k: k for k in ("threshold", "hd95", "batch_size", "data")}, **(names or {})}
    Range(ge=1, integer=True)(name["batch_size"], batch_size)
    Range(gt=0, lt=1, null="use 0.5")(name["threshold"], threshold)
    where = resolve_device(device)
    model, ckpt = load_model(checkpoint, where)
    dataset = build_dataset(ckpt.config.get("data", {}) if data is None else data, split)
    _check_fit(model, dataset.info, hd95, threshold, name)
    if data is not None:
        _check_geometry(ckpt.config.get("data"), dataset, name["data"])
        _check_class_names(ckpt.extra.get("classes"), list(dataset.info.classes), name["data"])
    option = name["data"] if data is not None else None
    _warn_other_scoring(validated_background(ckpt.extra), dataset.info, option)
    trained = trained_on(ckpt.extra, sample_contents(dataset)) if ckpt.extra.get("train_cases") else None
    warn_trained_on(trained, len(dataset), split, option)
    window, overlap = _saved_window(ckpt.config, checkpoint)
    loader = make_loader(dataset, 1 if window is not None else batch_size, shuffle=False)
    result = evaluate(model, loader, where, dataset.info.num_classes, dataset.info.ignore_index,
                      hd95=hd95, per_image=True, threshold=0.5 if threshold is None else threshold,
                      window=window, overlap=overlap, window_batch=batch_size,
                      include_background=not dataset.info.has_background)
    result["classes"], result["background"] = list(dataset.info.classes), dataset.info.has_background
    result["split"], result["checkpoint"] = split, str(resolve_checkpoint(checkpoint))
    result["trained_on"] = trained
    return result


def validated_background(extra: Mapping[str, Any]) -> bool | None:
    """Whether the validation of the run that wrote a checkpoint (its ``extra``) left class 0 out of ``dice`` and
    ``iou``: its ``background``; True for a training checkpoint written before the data's ``background`` key existed
    (it names its ``classes`` but not ``background``: every score left class 0 out then); None when unknown."""
    background = extra.get("background")
    if isinstance(background, bool):
        return background
    return True if isinstance(extra.get("classes"), list) else None


def _class0(background: bool) -> str:
    return "left class 0 out of" if background else "averaged class 0 into"


def _warn_other_scoring(validated: bool | None, info: Any, option: str | None) -> None:
    """A warning when the data scores class 0 otherwise than the model's validation did: its dice and iou then differ
    from the run's validation scores (and its best checkpoint was chosen on the other mean)."""
    if validated is None or validated == info.has_background:
        return
    declared = "auto" if info.background is None else str(info.background).lower()
    where = f"the data of {option}" if option else "the run's data config, as read today,"
    log.warning("the model's validation %s dice and iou, but %s says background: %s, so they are scored here over "
                "%s; they are not comparable with the run's validation scores. Declare background: %s in the data "
                "config to score as the run was validated", _class0(validated), where, declared,
                f"classes 1..{info.num_classes - 1} ({info.classes[0]!r} left out)" if info.has_background
                else f"all {info.num_classes} classes ({info.classes[0]!r} included)", str(validated).lower())


def scored_as_validated(info: Any, extra: Mapping[str, Any]) -> Any:
    """The DatasetInfo a resumed run validates with: ``info`` with class 0 scored as the run's checkpoint (its
    ``extra``) says its earlier validations scored it, so that its best checkpoint is chosen on one mean; a warning
    when the data's ``background`` now says otherwise (a run from before the key, or under another ``auto``). A run
    not validated yet (no ``history``) scores as the data says."""
    validated = validated_background(extra)
    if validated is None or validated == info.has_background or not extra.get("history"):
        return info
    log.warning("this run's validations so far %s dice and iou, and the data's background now says otherwise: the "
                "resumed run goes on scoring as it began (background: %s), so that its best checkpoint is chosen on "
                "one score. eval scores it by the data config and says when that differs", _class0(validated),
                str(validated).lower())
    return dataclasses.replace(info, background=validated)


def _saved_window(config: dict[str, Any], checkpoint: str | Path) -> tuple[list[int] | None, float]:
    """(train.val_window, train.val_overlap) of a checkpoint's config, checked; (None, 0.5) when it has none."""
    from unetfamily.config import TrainConfig

    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    window, overlap = train.get("val_window"), train.get("val_overlap", 0.5)
    try:
        TrainConfig(val_window=window, val_overlap=overlap)
    except ConfigError as exc:
        raise ConfigError(f"checkpoint {checkpoint}: its config is not valid: {exc}") from exc
    return window, overlap


def _geometry_words(resize: Any, scale: float) -> str:
    if resize is not None:
        return f"resized to {resize[0]} x {resize[1]} (resize: [{resize[0]}, {resize[1]}])"
    return f"scaled by {scale:g} (scale: {scale:g})" if scale != 1.0 else "at their own size (no resize or scale)"


def _check_geometry(trained: Any, dataset: Any, option: str) -> None:
    """Refuse data whose images reach the model at another geometry (``resize`` / ``scale``) than its training data's,
    when the model was trained on resized images.

    The model would be scored at a scale it never saw, while ``predict`` resizes its inputs as in training; the
    message says what to set in the data config. Datasets that do not say how they resize are not checked.
    """
    from unetfamily.data import data_geometry, options as data_options

    if not hasattr(dataset, "resize") or not hasattr(dataset, "scale"):
        return
    geometry = data_geometry(trained)
    want = data_options.size("data.resize", geometry["resize"]), float(geometry["scale"] or 1.0)
    have = dataset.resize if dataset.resize is None else tuple(int(v) for v in dataset.resize), float(dataset.scale)
    if want != (None, 1.0) and want != have:  # trained at native size: how the data is sized is the user's choice
        raise ConfigError(f"{option}: the model was trained on images {_geometry_words(*want)} but this dataset gives "
                          f"them {_geometry_words(*have)}, a scale the model never saw; set "
                          f"{_geometry_words(*want).split('(')[-1].rstrip(')')} in the data config (as predict resizes "
                          "its inputs), or score it with its own data config (leave --data out)")


def _check_class_names(trained: Any, given: list[str], option: str) -> None:
    """The data's class names against those the model was trained with (its checkpoint's): the same names in
    another order are refused (class i would be scored as another class); other names are a warning."""
    if not isinstance(trained, list) or trained == given:
        return
    if sorted(map(str, trained)) == sorted(given):
        raise ConfigError(f"{option}: the dataset lists the model's classes in another order ({', '.join(given)}; the "
                          f"model: {', '.join(map(str, trained))}), so each class would be scored as another; list "
                          "them in the model's order")
    log.warning("%s: the dataset's classes (%s) are not named as the model's (%s): class i is scored under the "
                "dataset's name; check that they mean the same, in the same order", option, ", ".join(given),
                ", ".join(map(str, trained)))


def _check_fit(model: nn.Module, info: Any, hd95: bool, threshold: float | None, name: Mapping[str, str]) -> None:
    """Refuse data the model cannot be scored on and options that would have no effect on it."""
    outputs, classes = getattr(model, "num_classes", None), info.num_classes
    if outputs is not None and max(outputs, 2) != classes:
        raise ConfigError(f"{name['data']}: the dataset has {classes} classes ({', '.join(info.classes)}) but the model "
                          f"predicts {max(outputs, 2)}; score it on data with the classes it was trained on")
    channels = getattr(model, "in_channels", None)
    if channels is not None and channels != info.in_channels:
        raise ConfigError(f"{name['data']}: the dataset's images have {info.in_channels} channel(s) but the model "
                          f"takes {channels}; score it on data like the data it was trained on")
    if threshold is not None and outputs != 1:
        raise ConfigError(f"{name['threshold']} applies to binary models (one sigmoid output); this model has "
                          f"{outputs} outputs and is scored by argmax: leave {name['threshold']} out")
    if hd95 and classes != 2:
        raise ConfigError(f"{name['hd95']} is computed for binary tasks only; this dataset has {classes} classes")
