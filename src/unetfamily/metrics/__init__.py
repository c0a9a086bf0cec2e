"""Segmentation metrics from a confusion matrix accumulated over the whole evaluation set.

:class:`SegmentationMetrics` is a ``torchmetrics.Metric`` whose state is a (K, K) confusion
matrix (rows = target class, columns = predicted class, the torchvision convention) summed
across processes under DDP, so ``compute()`` gives the same numbers on one process or many.
Dice, IoU, precision, recall and accuracy all derive from that matrix, so they are scores of the
whole set, not averages of per-batch scores.

Conventions (``docs/losses_metrics.md`` has the full list):

- K = ``num_classes`` counts the background: binary = 2 (``num_classes=1``, the models'
  1-channel convention, is read as 2). Class 0 is the background, unless ``include_background``
  says it is a class like the others (a data config's ``background: false``, CamVid's sky).
- Predictions: 1-channel logits -> ``sigmoid > threshold``; C-channel logits -> argmax; an
  integer (N, H, W) tensor is taken as labels. Deep-supervision lists and ``(seg, cls)`` tuples
  are unpacked and the final output is used as is.
- A class with tp + fp + fn = 0 over the whole set (absent from target and prediction) has IoU
  and Dice NaN and is left out of every mean. Precision is NaN for a class never predicted,
  recall NaN for a class never present in the target.
- ``iou`` / ``dice`` / ``precision`` / ``recall``: mean over the FOREGROUND classes 1..K-1 (for
  binary simply class 1), over all K classes with ``include_background``; ``miou`` / ``mdice``: mean
  over all classes INCLUDING background (the PASCAL VOC mIoU). The per-image NSD and clDice are
  means over the same classes as ``dice``.
- HD95 (binary only, ``hd95=True``), per image then averaged, in pixels: both prediction and
  target empty -> 0, counted in the mean; exactly one empty -> undefined, left out of the mean
  and counted in ``hd95_undefined``.
- Ignored pixels (target == ``ignore_index``: outside a region of interest, or an ignore label)
  count in no score: they are left out of the confusion matrix, removed from both masks before
  the boundary and centreline metrics (:mod:`~unetfamily.metrics.distance`), and a label
  prediction may hold any value there. So the prediction at ignored pixels changes nothing and a
  prediction wrong only there scores perfectly; an image whose every pixel is ignored is scored
  like an empty image with an empty prediction (Dice/NSD/clDice NaN, HD95 0), and adds no pixel
  to the confusion matrix.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from unetfamily.losses._common import ModelOutput, check_target_range, unpack_output
from unetfamily.metrics.distance import hd95, normalized_surface_dice
from unetfamily.metrics.topology import cldice

__all__ = ["SegmentationMetrics", "cldice", "hd95", "normalized_surface_dice", "logits_to_labels", "per_image_scores", "scores_from_confusion"]


def _num_classes(num_classes: int) -> int:
    if num_classes < 1:
        raise ValueError(f"num_classes={num_classes} must be >= 1 (classes including background; binary = 2)")
    return max(num_classes, 2)


def logits_to_labels(output: ModelOutput, num_classes: int, threshold: float = 0.5) -> Tensor:
    """Hard labels (N, H, W) long from a raw model output (its final segmentation output).

    Args:
        output: Tensor (N, C, H, W) logits, a deep-supervision list, a ``(seg, cls)`` tuple, or
            an integer (N, H, W) tensor of labels (returned as is).
        num_classes: classes including background (binary: 2, or 1 as the models count it).
        threshold: probability threshold for 1-channel (binary sigmoid) logits.
    """
    k = _num_classes(num_classes)
    if isinstance(output, Tensor) and output.ndim == 3 and not output.is_floating_point():
        if output.numel() and (output.min() < 0 or output.max() >= k):
            raise ValueError(f"label predictions must lie in [0, {k}), got values in [{output.min()}, {output.max()}]")
        return output.long()
    logits = unpack_output(output)[0][0]
    channels = logits.shape[1]
    if channels == 1 and k == 2:
        return (logits.detach().float().sigmoid() > threshold).squeeze(1).long()
    if channels != k:
        raise ValueError(f"logits have {channels} channels but num_classes={num_classes}")
    return logits.detach().argmax(dim=1)


def _check_target(target: Tensor) -> None:
    if target.ndim == 4:
        raise ValueError(
            "multi-label (N, C, H, W) targets are not supported by these metrics: score each label as a binary "
            "task (num_classes=2) with target[:, c].long() and output[:, c:c+1]"
        )


def _confusion(pred: Tensor, target: Tensor, k: int, ignore_index: int) -> Tensor:
    """Per-image confusion matrices (N, K, K) long; rows = target, columns = prediction."""
    if pred.shape != target.shape or target.ndim != 3:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} must both be (N, H, W)")
    if target.is_floating_point():
        raise ValueError(f"target must hold integer class indices, got {target.dtype}")
    valid = check_target_range(target, k, ignore_index)
    image = torch.arange(target.shape[0], device=target.device).view(-1, 1, 1).expand_as(target)
    index = (image * k + target) * k + pred
    counts = torch.bincount(index[valid], minlength=target.shape[0] * k * k)
    return counts.view(-1, k, k)


def _first(include_background: bool) -> int:
    """The first class the foreground means average: 0 when class 0 is scored like the others, else 1."""
    return 0 if include_background else 1


def _nanmean(x: Tensor) -> Tensor:
    """Mean over the last dim ignoring NaN; NaN when every value is NaN (no warning)."""
    ok = ~x.isnan()
    return torch.where(ok, x, 0).sum(-1) / ok.sum(-1)


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    return torch.where(den > 0, num / den.clamp_min(1), torch.full_like(num, math.nan))


def scores_from_confusion(confmat: Tensor, include_background: bool = False) -> dict[str, Tensor]:
    """Scores from a confusion matrix (..., K, K) (rows = target, columns = prediction).

    Returns float64 tensors: ``per_class_iou``, ``per_class_dice``, ``per_class_precision``,
    ``per_class_recall`` (..., K); ``iou``, ``dice``, ``precision``, ``recall`` (mean over
    classes 1..K-1, over all K with ``include_background``), ``miou``, ``mdice`` (mean over all K
    classes), ``pixel_accuracy`` (...); NaN entries (see module doc) are left out of the means.
    """
    cm = confmat.double()
    tp = cm.diagonal(dim1=-2, dim2=-1)
    fp = cm.sum(-2) - tp
    fn = cm.sum(-1) - tp
    out = {
        "per_class_iou": _ratio(tp, tp + fp + fn),
        "per_class_dice": _ratio(2 * tp, 2 * tp + fp + fn),
        "per_class_precision": _ratio(tp, tp + fp),
        "per_class_recall": _ratio(tp, tp + fn),
    }
    for name in ("iou", "dice", "precision", "recall"):
        out[name] = _nanmean(out[f"per_class_{name}"][..., _first(include_background):])
    out["miou"] = _nanmean(out["per_class_iou"])
    out["mdice"] = _nanmean(out["per_class_dice"])
    out["pixel_accuracy"] = _ratio(tp.sum(-1), cm.sum((-2, -1)))
    return out


def per_image_scores(
    output: ModelOutput,
    target: Tensor,
    num_classes: int,
    *,
    ignore_index: int = 255,
    threshold: float = 0.5,
    with_hd95: bool = False,
    nsd_tolerance: float | None = None,
    with_cldice: bool = False,
    describe: bool = False,
    include_background: bool = False,
) -> dict[str, Tensor]:
    """Scores of each image, for evaluation reports.

    Args:
        output: raw model output or (N, H, W) labels (see :func:`logits_to_labels`).
        target: (N, H, W) long class indices, ``ignore_index`` ignored.
        num_classes: classes including background (binary: 2).
        with_hd95: also return ``hd95`` (N,) (binary only; NaN where exactly one mask is empty).
        nsd_tolerance: also return the normalised surface Dice at this tolerance in pixels:
            ``per_class_nsd`` (N, K) and ``nsd`` (N,), the mean over foreground classes.
        with_cldice: also return centreline Dice: ``per_class_cldice`` (N, K) and ``cldice`` (N,).
        describe: also return what each image holds, to resolve the NaN scores of empty masks (below).
        include_background: class 0 is a class like the others: ``dice``, ``iou``, ``nsd`` and ``cldice``
            average every class, and an image holding only class 0 is not empty.

    Returns:
        ``per_class_dice``, ``per_class_iou`` (N, K) float64 (NaN where the class is absent from
        both prediction and target in that image) and ``dice``, ``iou`` (N,): the mean over
        foreground classes present (binary: class 1; an image with empty prediction and empty
        target gets NaN); with ``describe``, the keys of :func:`_describe` (which images hold no
        scored class, or no class 1 for HD95; which have a valid pixel; their diagonals).
    """
    _check_target(target)
    k = _num_classes(num_classes)
    pred = _labels(output, target, k, threshold, ignore_index)
    first = _first(include_background)
    scores = scores_from_confusion(_confusion(pred, target, k, ignore_index), include_background)
    out = {name: scores[name] for name in ("per_class_dice", "per_class_iou", "dice", "iou")}
    if describe:
        out.update(_describe(pred, target, ignore_index, first, with_hd95))
    if with_hd95:
        out["hd95"] = _hd95_batch(pred, target, k, ignore_index)
    if nsd_tolerance is not None:
        nsd = _per_class(pred, target, k, ignore_index,
                         lambda p, t, valid: normalized_surface_dice(p, t, nsd_tolerance, valid=valid), first)
        out["per_class_nsd"], out["nsd"] = nsd, _nanmean(nsd[:, first:])
    if with_cldice:
        cl = _per_class(pred, target, k, ignore_index, cldice, first)
        out["per_class_cldice"], out["cldice"] = cl, _nanmean(cl[:, first:])
    return out


def _describe(pred: Tensor, target: Tensor, ignore_index: int, first: int, hd95: bool) -> dict[str, Tensor]:
    """:func:`per_image_scores`' ``describe`` keys, (N,) each.

    ``target_empty`` / ``prediction_empty`` bool: no scored class (``first`` on) on the valid pixels (both True
    also where no pixel is valid); with ``hd95``, ``hd95_target_empty`` / ``hd95_prediction_empty``: no class 1,
    the only class HD95 measures (so a missed or hallucinated object is told apart also when class 0 is scored);
    ``valid`` bool: some pixel is not ``ignore_index``; ``image_diagonal`` float64: the farthest two pixels lie apart.
    """
    valid = target != ignore_index

    def empty(hit: Tensor) -> Tensor:
        return ~(hit & valid).flatten(1).any(1)

    out = {"valid": valid.flatten(1).any(1), "target_empty": empty(target >= first),
           "prediction_empty": empty(pred >= first),
           "image_diagonal": torch.full((target.shape[0],), math.hypot(*target.shape[-2:]), dtype=torch.float64)}
    if hd95:
        out["hd95_target_empty"], out["hd95_prediction_empty"] = empty(target == 1), empty(pred == 1)
    return out


def _labels(output: ModelOutput, target: Tensor, k: int, threshold: float, ignore_index: int) -> Tensor:
    """:func:`logits_to_labels`; a label prediction (N, H, W) may hold anything at ignored pixels (set to 0)."""
    if isinstance(output, Tensor) and output.ndim == 3 and not output.is_floating_point():
        if output.shape == target.shape:
            output = torch.where(target != ignore_index, output, torch.zeros_like(output))
    return logits_to_labels(output, k, threshold)


def _per_class(pred: Tensor, target: Tensor, k: int, ignore_index: int, score, first: int = 1) -> Tensor:
    """(N, K) float64: ``score(pred == c, target == c, valid=...)`` per image and class ``c >= first`` (others NaN).

    ``valid`` is False at ignored pixels, which the mask metrics remove from both masks.
    """
    valid = (target != ignore_index).cpu().numpy()
    p, t = pred.cpu().numpy(), target.cpu().numpy()
    out = np.full((p.shape[0], k), np.nan)
    for c in range(first, k):
        for i in range(p.shape[0]):
            out[i, c] = score(p[i] == c, t[i] == c, valid=valid[i])
    return torch.from_numpy(out)


def _hd95_batch(pred: Tensor, target: Tensor, k: int, ignore_index: int) -> Tensor:
    """(N,) float64 HD95 of class 1 in each image (binary tasks only)."""
    if k != 2:
        raise ValueError(f"HD95 is implemented for binary tasks (num_classes=2), got num_classes={k}")
    return _per_class(pred, target, k, ignore_index, hd95)[:, 1]


class SegmentationMetrics(Metric):
    """Dataset-level segmentation scores that synchronise across DDP processes.

    Args:
        num_classes: classes INCLUDING background; binary = 2 (1 is read as 2).
        ignore_index: target value left out of every count.
        threshold: probability threshold for 1-channel (sigmoid) logits.
        hd95: also track the per-image 95th-percentile Hausdorff distance (binary only; needs scipy;
            runs on CPU, one distance transform per image).
        include_background: class 0 is a class like the others, averaged into ``dice``, ``iou``,
            ``precision`` and ``recall`` (see :func:`scores_from_confusion`).
        **kwargs: forwarded to ``torchmetrics.Metric`` (e.g. ``sync_on_compute``).

    ``update(output, target)``: a raw model output (or (N, H, W) labels) and an (N, H, W) target.
    ``compute()`` returns the keys of :func:`scores_from_confusion` plus ``confusion_matrix``
    (K, K) long and, with ``hd95``, ``hd95`` (mean over counted images), ``hd95_images`` (number
    counted, both-empty images included) and ``hd95_undefined`` (images with exactly one empty
    mask, left out).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self, num_classes: int, *, ignore_index: int = 255, threshold: float = 0.5, hd95: bool = False,
        include_background: bool = False, **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_classes = _num_classes(num_classes)
        if hd95 and self.num_classes != 2:
            raise ValueError(f"hd95=True is implemented for binary tasks (num_classes=2), got {num_classes}")
        self.ignore_index, self.threshold, self.hd95 = ignore_index, threshold, hd95
        self.include_background = include_background
        k = self.num_classes
        self.add_state("confmat", default=torch.zeros(k, k, dtype=torch.long), dist_reduce_fx="sum")
        if hd95:
            self.add_state("hd95_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state("hd95_count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
            self.add_state("hd95_undefined", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, output: ModelOutput, target: Tensor) -> None:
        """Accumulate one batch: raw model output (or (N, H, W) labels) and target (N, H, W) long."""
        _check_target(target)
        pred = _labels(output, target, self.num_classes, self.threshold, self.ignore_index)
        self.confmat += _confusion(pred, target, self.num_classes, self.ignore_index).sum(0)
        if self.hd95:
            values = _hd95_batch(pred, target, self.num_classes, self.ignore_index)
            defined = ~values.isnan()
            self.hd95_sum += values[defined].sum().to(self.hd95_sum.device)
            self.hd95_count += int(defined.sum())
            self.hd95_undefined += int((~defined).sum())

    def compute(self) -> dict[str, Tensor]:
        """Scores of everything accumulated (across all processes under DDP)."""
        out = scores_from_confusion(self.confmat, self.include_background)
        out["confusion_matrix"] = self.confmat.clone()
        if self.hd95:
            out["hd95"] = _ratio(self.hd95_sum, self.hd95_count.double())
            out["hd95_images"] = self.hd95_count.clone()
            out["hd95_undefined"] = self.hd95_undefined.clone()
        return out
