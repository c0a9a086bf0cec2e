"""Pixel-wise losses: cross-entropy / binary cross-entropy and focal loss.

Both average over non-ignored pixels (elements, for multi-label); a batch in which every pixel
is ignored gives 0 with a zero gradient, not NaN (``F.cross_entropy`` would give NaN).

Focal loss: Lin, Goyal, Girshick, He, Dollar, "Focal Loss for Dense Object Detection",
ICCV 2017, https://arxiv.org/abs/1708.02002 (the sigmoid form is torchvision's
``sigmoid_focal_loss``; the softmax form is its multi-class generalisation).
"""
from __future__ import annotations

from typing import Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unetfamily.losses._common import (
    check_target_range,
    encode_target,
    infer_mode,
    masked_mean,
    neutralise,
    safe_div,
)

__all__ = ["CrossEntropyLoss", "FocalLoss", "cross_entropy", "focal_loss"]

Weights = Union[float, Sequence[float], Tensor]


def _as_tensor(value: Weights | None, like: Tensor, name: str, length: int) -> Tensor | None:
    """``value`` as a 1-D tensor of ``length`` (a scalar is broadcast) on ``like``'s device/dtype."""
    if value is None:
        return None
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device).flatten()
    if t.numel() == 1:
        t = t.expand(length)
    if t.numel() != length:
        raise ValueError(f"{name} has {t.numel()} values but the logits have {length} channels")
    return t


def cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    weight: Weights | None = None,
    pos_weight: Weights | None = None,
    ignore_index: int = 255,
) -> Tensor:
    """Softmax cross-entropy (multi-class) or binary cross-entropy with logits (binary, multi-label).

    Args:
        logits: (N, C, H, W); C = 1 for binary.
        target: (N, H, W) long class indices, or (N, C, H, W) float {0, 1} for multi-label.
        weight: multi-class only, per-class weights (C,). As in ``torch.nn.CrossEntropyLoss`` the
            mean is weighted: sum_i w[y_i] * nll_i / sum_i w[y_i] over non-ignored pixels.
        pos_weight: binary / multi-label only, weight of positives, a scalar or (C,), as in
            ``torch.nn.BCEWithLogitsLoss``.
        ignore_index: target value whose pixels are left out of the loss and the gradient.

    Returns:
        Scalar loss.
    """
    mode = infer_mode(logits, target)
    if mode == "multiclass":
        if pos_weight is not None:
            raise ValueError("pos_weight applies to binary / multi-label logits; use weight=(C,) for multi-class")
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        valid = check_target_range(target, logits.shape[1], ignore_index)
        t = torch.where(valid, target, 0)
        logits = neutralise(logits, valid.unsqueeze(1))
        w = _as_tensor(weight, logits, "weight", logits.shape[1])
        nll = F.cross_entropy(logits, t, weight=w, reduction="none")  # already scaled by w[t]
        denom = (w[t] if w is not None else torch.ones_like(nll)) * valid
        return safe_div((nll * valid).sum(), denom.sum())
    if weight is not None:
        raise ValueError(
            "weight (per-class) applies to multi-class softmax logits; for binary / multi-label logits use "
            "pos_weight (weight of the positive class per channel)"
        )
    mode, logits, onehot, valid = encode_target(logits, target, ignore_index)
    pw = _as_tensor(pos_weight, logits, "pos_weight", logits.shape[1])
    pw = pw.view(-1, 1, 1) if pw is not None else None
    bce = F.binary_cross_entropy_with_logits(logits, onehot, pos_weight=pw, reduction="none")
    return masked_mean(bce, valid)


def focal_loss(
    logits: Tensor,
    target: Tensor,
    *,
    gamma: float = 2.0,
    alpha: Weights | None = None,
    ignore_index: int = 255,
) -> Tensor:
    """Focal loss ``-alpha_t * (1 - p_t)**gamma * log(p_t)``, averaged over non-ignored pixels.

    Args:
        logits: (N, C, H, W); C = 1 for binary.
        target: (N, H, W) long class indices, or (N, C, H, W) float {0, 1} for multi-label.
        gamma: focusing parameter (0 gives cross-entropy).
        alpha: binary / multi-label: weight of positives in [0, 1] (negatives get 1 - alpha), as in
            torchvision's ``sigmoid_focal_loss`` (which uses 0.25); multi-class: per-class weights
            (C,). ``None`` (default) weights every pixel 1.
        ignore_index: target value whose pixels are left out.

    Returns:
        Scalar loss.
    """
    mode, logits, onehot, valid = encode_target(logits, target, ignore_index)
    if mode == "multiclass":
        logp_t = (logits.log_softmax(dim=1) * onehot).sum(dim=1, keepdim=True)  # (N, 1, H, W)
        loss = -logp_t
        p_t = logp_t.exp()
        if alpha is not None:
            a = _as_tensor(alpha, logits, "alpha", logits.shape[1]).view(1, -1, 1, 1)
            loss = loss * (onehot * a).sum(dim=1, keepdim=True)
    else:
        loss = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")
        p = logits.sigmoid()
        p_t = p * onehot + (1 - p) * (1 - onehot)
        if alpha is not None:
            a = float(alpha)
            if not 0.0 <= a <= 1.0:
                raise ValueError(f"alpha={alpha} must lie in [0, 1] for binary / multi-label focal loss")
            loss = loss * (a * onehot + (1 - a) * (1 - onehot))
    if gamma != 0:
        loss = loss * (1 - p_t).clamp_min(0) ** gamma
    return masked_mean(loss, valid)


class CrossEntropyLoss(nn.Module):
    """Module form of :func:`cross_entropy` (softmax CE or BCE-with-logits, chosen by the shapes)."""

    def __init__(
        self, *, weight: Weights | None = None, pos_weight: Weights | None = None, ignore_index: int = 255
    ) -> None:
        super().__init__()
        self.weight, self.pos_weight, self.ignore_index = weight, pos_weight, ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """(N, C, H, W) logits and (N, H, W) or (N, C, H, W) target -> scalar loss."""
        return cross_entropy(
            logits, target, weight=self.weight, pos_weight=self.pos_weight, ignore_index=self.ignore_index
        )


class FocalLoss(nn.Module):
    """Module form of :func:`focal_loss`."""

    def __init__(self, *, gamma: float = 2.0, alpha: Weights | None = None, ignore_index: int = 255) -> None:
        super().__init__()
        self.gamma, self.alpha, self.ignore_index = gamma, alpha, ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """(N, C, H, W) logits and (N, H, W) or (N, C, H, W) target -> scalar loss."""
        return focal_loss(logits, target, gamma=self.gamma, alpha=self.alpha, ignore_index=self.ignore_index)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha}"
