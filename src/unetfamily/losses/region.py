"""Region losses on probabilities: soft Dice and soft IoU (Jaccard).

Per channel k (the foreground channel for binary; every class for multi-class; every label for
multi-label), with p the probabilities and y the one-hot target, both zeroed at ignored pixels::

    I = sum p*y,   P = sum p,   T = sum y
    dice_k = (2 I + smooth) / (P + T + smooth)        loss = mean_k (1 - dice_k)
    iou_k  = (I + smooth) / (P + T - I + smooth)      loss = mean_k (1 - iou_k)

The sums run over the whole batch and the pixels (``per_image=False``, the UNet++ authors'
``dice_coef`` which flattens the batch) or over each image's pixels with the loss then averaged
over images (``per_image=True``, the UNet3+ authors' IoU loss; an image, or for multi-label an
image-label, whose pixels are all ignored is left out of that mean). ``smooth = 1`` (the UNet++
authors' value) keeps a class absent from both prediction and target at loss ~0 instead of 0/0;
with ``smooth = 0`` the denominator is clamped to ``eps`` so such a class gives loss 1.

Soft Dice: Milletari, Navab, Ahmadi, "V-Net", 3DV 2016, https://arxiv.org/abs/1606.04797.
Soft IoU: Rahman, Wang, "Optimizing Intersection-Over-Union in Deep Neural Networks for Image
Segmentation", ISVC 2016.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from unetfamily.losses._common import encode_target, probabilities, safe_div

__all__ = ["DiceLoss", "IoULoss", "dice_loss", "iou_loss"]

_EPS = 1e-7


def _soft_overlap(
    kind: Literal["dice", "iou"],
    logits: Tensor,
    target: Tensor,
    smooth: float,
    include_background: bool,
    per_image: bool,
    ignore_index: int,
) -> Tensor:
    mode, logits, onehot, valid = encode_target(logits, target, ignore_index)
    prob = probabilities(logits, mode) * valid
    onehot = onehot * valid
    dims = (2, 3) if per_image else (0, 2, 3)
    inter = (prob * onehot).sum(dims)
    card = prob.sum(dims) + onehot.sum(dims)  # (K,) or (N, K)
    if kind == "dice":
        score = (2 * inter + smooth) / (card + smooth).clamp_min(_EPS)
    else:
        score = (inter + smooth) / (card - inter + smooth).clamp_min(_EPS)
    loss = 1 - score
    # Per image, an image (a label, for multi-label) without a valid pixel has nothing to score.
    counted = (valid.sum(dims) > 0).to(loss.dtype).expand_as(loss) if per_image else torch.ones_like(loss)
    if mode == "multiclass" and not include_background:
        loss, counted = loss[..., 1:], counted[..., 1:]
    return safe_div((loss * counted).sum(), counted.sum())


def dice_loss(
    logits: Tensor,
    target: Tensor,
    *,
    smooth: float = 1.0,
    include_background: bool = True,
    per_image: bool = False,
    ignore_index: int = 255,
) -> Tensor:
    """Soft Dice loss, ``mean_k (1 - dice_k)``.

    Args:
        logits: (N, C, H, W); C = 1 for binary (sigmoid), C >= 2 multi-class (softmax).
        target: (N, H, W) long class indices, or (N, C, H, W) float {0, 1} for multi-label.
        smooth: added to numerator and denominator.
        include_background: multi-class only; False drops channel 0 from the mean.
        per_image: sums per image then mean over images, instead of sums over the whole batch.
        ignore_index: target value whose pixels are left out.

    Returns:
        Scalar loss in [0, 1].
    """
    return _soft_overlap("dice", logits, target, smooth, include_background, per_image, ignore_index)


def iou_loss(
    logits: Tensor,
    target: Tensor,
    *,
    smooth: float = 1.0,
    include_background: bool = True,
    per_image: bool = False,
    ignore_index: int = 255,
) -> Tensor:
    """Soft IoU (Jaccard) loss, ``mean_k (1 - iou_k)``; arguments and shapes as :func:`dice_loss`."""
    return _soft_overlap("iou", logits, target, smooth, include_background, per_image, ignore_index)


class _OverlapLoss(nn.Module):
    kind: str  # "dice" or "iou"

    def __init__(
        self,
        *,
        smooth: float = 1.0,
        include_background: bool = True,
        per_image: bool = False,
        ignore_index: int = 255,
    ) -> None:
        super().__init__()
        self.smooth, self.include_background = smooth, include_background
        self.per_image, self.ignore_index = per_image, ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """(N, C, H, W) logits and (N, H, W) or (N, C, H, W) target -> scalar loss."""
        return _soft_overlap(
            self.kind, logits, target, self.smooth, self.include_background, self.per_image, self.ignore_index
        )

    def extra_repr(self) -> str:
        return f"smooth={self.smooth}, include_background={self.include_background}, per_image={self.per_image}"


class DiceLoss(_OverlapLoss):
    """Module form of :func:`dice_loss`."""

    kind = "dice"


class IoULoss(_OverlapLoss):
    """Module form of :func:`iou_loss`."""

    kind = "iou"
