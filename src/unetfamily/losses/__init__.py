"""Segmentation losses: functional and ``nn.Module`` forms, binary / multi-class / multi-label.

Every loss maps ``(logits (N, C, H, W), target)`` to a scalar, where the target is (N, H, W)
long class indices (binary: {0, 1}) or (N, C, H, W) float {0, 1} (multi-label); the mode is
read off these shapes (see :mod:`unetfamily.losses._common`). Pixels equal to ``ignore_index``
(default 255) contribute nothing to any loss or gradient.

Start from :class:`SegmentationCriterion` (any raw model output -> ``(total, terms)``) or
:func:`build_loss` (a single-output loss by name); ``docs/losses_metrics.md`` states every
convention.
"""
from unetfamily.losses._common import Mode, encode_target, has_foreground, infer_mode, probabilities, unpack_output
from unetfamily.losses.criterion import (
    CompoundLoss,
    DeepSupervisionLoss,
    SegmentationCriterion,
    bce_dice_unetpp,
    build_loss,
    cgm_loss,
    dice_ce,
    hybrid_unet3p,
    list_losses,
)
from unetfamily.losses.pixel import CrossEntropyLoss, FocalLoss, cross_entropy, focal_loss
from unetfamily.losses.region import DiceLoss, IoULoss, dice_loss, iou_loss
from unetfamily.losses.ssim import MS_SSIM_WEIGHTS, MSSSIMLoss, ms_ssim, ms_ssim_loss, ms_ssim_plan

__all__ = [
    "MS_SSIM_WEIGHTS",
    "CompoundLoss",
    "CrossEntropyLoss",
    "DeepSupervisionLoss",
    "DiceLoss",
    "FocalLoss",
    "IoULoss",
    "MSSSIMLoss",
    "Mode",
    "SegmentationCriterion",
    "bce_dice_unetpp",
    "build_loss",
    "cgm_loss",
    "cross_entropy",
    "dice_ce",
    "dice_loss",
    "encode_target",
    "focal_loss",
    "has_foreground",
    "hybrid_unet3p",
    "infer_mode",
    "iou_loss",
    "list_losses",
    "ms_ssim",
    "ms_ssim_loss",
    "ms_ssim_plan",
    "probabilities",
    "unpack_output",
]
