"""Plumbing shared by every loss (and by the metrics): output unpacking, task modes, targets.

Task mode is read off the shapes, never passed as a flag (the models' contract fixes it):

- ``"binary"``: logits (N, 1, H, W), integer target (N, H, W) in {0, 1} or ``ignore_index``;
- ``"multiclass"``: logits (N, C, H, W) with C >= 2, integer target (N, H, W) of class indices;
- ``"multilabel"``: logits (N, C, H, W), float target (N, C, H, W) in {0, 1}; an element equal
  to ``ignore_index`` is ignored (per pixel AND per label).

Ignored pixels: before any loss is computed the logits there are replaced by 0 through
:func:`neutralise` (``torch.where``, so no gradient flows back), and every reduction leaves them
out; so whatever the logits hold there (garbage, +-inf, NaN) the loss and the gradient are the
same, and the gradient at ignored pixels is exactly 0.

Every loss is computed in float32 at least (float16/bfloat16 logits are up-cast), so losses are
safe under autocast; float64 stays float64 (gradcheck).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from unetfamily.models import ModelOutput

__all__ = ["Mode", "encode_target", "has_foreground", "infer_mode", "neutralise", "probabilities", "unpack_output"]

Mode = Literal["binary", "multiclass", "multilabel"]


def unpack_output(output: ModelOutput) -> tuple[list[Tensor], Tensor | None]:
    """Split a raw model output into (segmentation outputs, final first; CGM logits or None).

    Accepts a Tensor (N, C, H, W); a list of such Tensors (deep supervision, final output first);
    or a tuple ``(seg, cls_logits)`` where ``seg`` is either of those and ``cls_logits`` is (N, 2).
    """
    cls_logits = None
    if isinstance(output, tuple) and len(output) == 2 and isinstance(output[1], Tensor) and output[1].ndim == 2:
        output, cls_logits = output
    if isinstance(output, Tensor):
        seg = [output]
    elif isinstance(output, (list, tuple)) and len(output) > 0 and all(isinstance(o, Tensor) for o in output):
        seg = list(output)
    else:
        raise TypeError(
            "model output must be a Tensor (N, C, H, W), a non-empty list of them (deep supervision, final "
            f"first) or a tuple (seg, cls_logits (N, 2)); got {type(output).__name__}"
        )
    for i, o in enumerate(seg):
        if o.ndim != 4:
            raise ValueError(f"segmentation output {i} must be 4-D (N, C, H, W), got shape {tuple(o.shape)}")
    return seg, cls_logits


def infer_mode(logits: Tensor, target: Tensor) -> Mode:
    """The task mode implied by logits (N, C, H, W) and target (N, H, W) or (N, C, H, W); checks shapes."""
    if logits.ndim != 4:
        raise ValueError(f"logits must be (N, C, H, W), got shape {tuple(logits.shape)}")
    if target.ndim == 4:
        if target.shape != logits.shape:
            raise ValueError(
                f"multi-label target {tuple(target.shape)} must have the logits' shape {tuple(logits.shape)}"
            )
        if not target.is_floating_point():
            raise ValueError("a 4-D (multi-label) target must be float in {0, 1}; use (N, H, W) long for class indices")
        return "multilabel"
    if target.ndim != 3 or target.shape[0] != logits.shape[0] or target.shape[1:] != logits.shape[2:]:
        raise ValueError(
            f"target {tuple(target.shape)} does not match logits {tuple(logits.shape)}: expected (N, H, W) class "
            "indices at the logits' size (every output, deep-supervision heads included, must be at target size)"
        )
    if target.is_floating_point():
        raise ValueError(f"class-index target must be an integer tensor, got {target.dtype}; call target.long()")
    return "binary" if logits.shape[1] == 1 else "multiclass"


def check_target_range(target: Tensor, num_classes: int, ignore_index: int) -> Tensor:
    """Boolean valid mask (target != ignore_index); raise if a valid value is outside [0, num_classes)."""
    valid = target != ignore_index
    if valid.any():
        bad = valid & ((target < 0) | (target >= num_classes))
        if bad.any():
            value = int(target[bad][0])
            hint = " (0/255 masks: map 255 to 1, or pass ignore_index=255)" if num_classes == 2 else ""
            raise ValueError(
                f"target contains {value}, outside [0, {num_classes}) and not ignore_index={ignore_index}{hint}"
            )
    return valid


def neutralise(logits: Tensor, valid: Tensor) -> Tensor:
    """``logits`` (N, C, H, W) with 0 wherever the broadcastable bool ``valid`` is False.

    A ``torch.where``, not a product: the gradient at those elements is exactly 0 and a NaN or an
    infinity there cannot leak into the loss (``nan * 0`` is NaN).
    """
    return torch.where(valid, logits, torch.zeros((), dtype=logits.dtype, device=logits.device))


def encode_target(logits: Tensor, target: Tensor, ignore_index: int) -> tuple[Mode, Tensor, Tensor, Tensor]:
    """Targets in the logits' layout.

    Returns ``(mode, logits, onehot, valid)``: logits up-cast to float32 if half precision and
    set to 0 at ignored elements (:func:`neutralise`);
    ``onehot`` (N, K, H, W) float in {0, 1} (K = 1 for binary: the foreground channel; K = C
    otherwise) with 0 at ignored pixels; ``valid`` float, (N, 1, H, W) for class-index targets or
    (N, C, H, W) for multi-label, 1 where the pixel counts and 0 where it is ignored.
    """
    mode = infer_mode(logits, target)
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    dtype = logits.dtype
    if mode == "multilabel":
        valid = target != ignore_index
        return mode, neutralise(logits, valid), torch.where(valid, target, 0.0).to(dtype), valid.to(dtype)
    num_classes = 2 if mode == "binary" else logits.shape[1]
    valid = check_target_range(target, num_classes, ignore_index)
    t = torch.where(valid, target, 0)
    onehot = t.unsqueeze(1) if mode == "binary" else F.one_hot(t, num_classes).permute(0, 3, 1, 2)
    valid = valid.unsqueeze(1)
    return mode, neutralise(logits, valid), onehot.to(dtype), valid.to(dtype)


def probabilities(logits: Tensor, mode: Mode) -> Tensor:
    """Softmax over channels for multi-class, element-wise sigmoid otherwise; same shape as ``logits``."""
    return logits.softmax(dim=1) if mode == "multiclass" else logits.sigmoid()


def has_foreground(target: Tensor, ignore_index: int = 255) -> Tensor:
    """Image-level label (N,) bool: does the image hold any non-ignored pixel of class >= 1?

    ``target`` is (N, H, W) class indices or (N, C, H, W) multi-label {0, 1} (any label set).
    """
    if target.ndim == 4:
        fg = target == 1
    elif target.ndim == 3:
        fg = (target >= 1) & (target != ignore_index)
    else:
        raise ValueError(f"target must be (N, H, W) or (N, C, H, W), got shape {tuple(target.shape)}")
    return fg.flatten(1).any(dim=1)


def safe_div(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` with 0 wherever ``den == 0`` (and a finite gradient there, unlike torch.where alone)."""
    return num / torch.where(den > 0, den, torch.ones_like(den))


def masked_mean(values: Tensor, valid: Tensor) -> Tensor:
    """Mean of ``values`` over elements where the broadcastable ``valid`` mask is 1; 0 when none is."""
    valid = valid.expand_as(values)
    return safe_div((values * valid).sum(), valid.sum())
