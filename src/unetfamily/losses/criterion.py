"""Compound recipes, deep supervision, the CGM loss, the registry and the top-level criterion.

- :class:`CompoundLoss`: a weighted sum of named losses that can report each term.
- Recipes: ``dice_ce`` (CE + Dice), ``bce_dice_unetpp`` (UNet++: 0.5 * BCE + (1 - Dice), where the
  authors' Keras writes ``0.5 * bce - dice``, the same gradient but a loss that goes negative),
  ``hybrid_unet3p`` (UNet3+: focal + MS-SSIM + IoU, equal weights).
- :class:`DeepSupervisionLoss`: one loss per output (final first), weighted and summed.
- :func:`cgm_loss`: BCE of the UNet3+ classification-guided module on "mask has foreground".
- :func:`build_loss` / :func:`list_losses`: the registry, by name.
- :class:`SegmentationCriterion`: takes any raw model output and the target, returns
  ``(total, terms)``.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unetfamily.errors import unknown_choice
from unetfamily.losses._common import ModelOutput, has_foreground, masked_mean, neutralise, unpack_output
from unetfamily.losses.pixel import CrossEntropyLoss, FocalLoss, Weights
from unetfamily.losses.region import DiceLoss, IoULoss
from unetfamily.losses.ssim import MSSSIMLoss

__all__ = [
    "CompoundLoss",
    "DeepSupervisionLoss",
    "SegmentationCriterion",
    "bce_dice_unetpp",
    "build_loss",
    "cgm_loss",
    "dice_ce",
    "hybrid_unet3p",
    "list_losses",
]


class CompoundLoss(nn.Module):
    """``sum_k weights[k] * losses[k](logits, target)``; :meth:`terms` returns each weighted term.

    Args:
        losses: name -> loss module taking ``(logits (N, C, H, W), target)``.
        weights: name -> weight; missing names get 1.
    """

    def __init__(self, losses: Mapping[str, nn.Module], weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        weights = dict(weights or {})
        unknown = set(weights) - set(losses)
        if unknown:
            raise ValueError(f"weights name unknown terms {sorted(unknown)}; terms are {list(losses)}")
        self.losses = nn.ModuleDict(losses)
        self.weights = {name: float(weights.get(name, 1.0)) for name in losses}

    def terms(self, logits: Tensor, target: Tensor) -> dict[str, Tensor]:
        """Each weighted term (scalar tensors, with grad), by name."""
        return {name: self.weights[name] * loss(logits, target) for name, loss in self.losses.items()}

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Scalar sum of the weighted terms."""
        return torch.stack(list(self.terms(logits, target).values())).sum()

    def extra_repr(self) -> str:
        return f"weights={self.weights}"


def dice_ce(
    *,
    ce_weight: float = 1.0,
    dice_weight: float = 1.0,
    weight: Weights | None = None,
    pos_weight: Weights | None = None,
    smooth: float = 1.0,
    include_background: bool = True,
    ignore_index: int = 255,
) -> CompoundLoss:
    """``ce_weight * CE + dice_weight * (1 - Dice)`` (MONAI's DiceCELoss); BCE for 1-channel logits."""
    return CompoundLoss(
        {
            "ce": CrossEntropyLoss(weight=weight, pos_weight=pos_weight, ignore_index=ignore_index),
            "dice": DiceLoss(smooth=smooth, include_background=include_background, ignore_index=ignore_index),
        },
        {"ce": ce_weight, "dice": dice_weight},
    )


def bce_dice_unetpp(
    *, pos_weight: Weights | None = None, weight: Weights | None = None, ignore_index: int = 255
) -> CompoundLoss:
    """UNet++ (Zhou et al. 2018): ``0.5 * BCE + (1 - Dice)``, Dice with smooth = 1 over the whole batch.

    Softmax CE and multi-class Dice for C >= 2 channels (the paper is binary).
    """
    return CompoundLoss(
        {
            "bce": CrossEntropyLoss(weight=weight, pos_weight=pos_weight, ignore_index=ignore_index),
            "dice": DiceLoss(smooth=1.0, ignore_index=ignore_index),
        },
        {"bce": 0.5},
    )


def hybrid_unet3p(
    *,
    gamma: float = 2.0,
    alpha: Weights | None = None,
    win_size: int = 11,
    ignore_index: int = 255,
) -> CompoundLoss:
    """UNet3+ (Huang et al. 2020) hybrid loss: ``focal + (1 - MS-SSIM) + (1 - IoU)``, equal weights.

    IoU per image (as the authors' ``IOU_loss``) with smooth = 1 so that empty images are not 0/0.
    """
    return CompoundLoss(
        {
            "focal": FocalLoss(gamma=gamma, alpha=alpha, ignore_index=ignore_index),
            "ms_ssim": MSSSIMLoss(win_size=win_size, ignore_index=ignore_index),
            "iou": IoULoss(per_image=True, ignore_index=ignore_index),
        }
    )


_LOSSES: dict[str, Callable[..., nn.Module]] = {
    "ce": CrossEntropyLoss,
    "dice": DiceLoss,
    "iou": IoULoss,
    "focal": FocalLoss,
    "ms_ssim": MSSSIMLoss,
    "dice_ce": dice_ce,
    "bce_dice_unetpp": bce_dice_unetpp,
    "hybrid_unet3p": hybrid_unet3p,
}


def list_losses() -> list[str]:
    """Sorted names accepted by :func:`build_loss`."""
    return sorted(_LOSSES)


def build_loss(name: str, **kwargs: object) -> nn.Module:
    """The loss registered as ``name``, a module mapping ``(logits (N, C, H, W), target)`` to a scalar.

    Keyword arguments whose value is ``None`` are dropped so the loss's defaults apply.
    """
    if name not in _LOSSES:
        raise unknown_choice("loss.name", name, list_losses())
    return _LOSSES[name](**{k: v for k, v in kwargs.items() if v is not None})


class DeepSupervisionLoss(nn.Module):
    """Apply ``base_loss`` to every output of a deep-supervised model and sum with ``weights``.

    Each head is compared with the full-resolution target (the models up-sample every head to the
    input size; a head of another size is an error, not silently resized). The defaults follow
    both papers: one loss per head, equal weights 1, summed (not averaged). A head of weight 0 is
    not evaluated.

    Args:
        base_loss: module mapping ``(logits (N, C, H, W), target)`` to a scalar; if it has a
            ``terms`` method (:class:`CompoundLoss`) its terms are reported per head too.
        weights: one weight per head, final head first; ``None`` = 1 for every head.

    After each call ``last_terms`` holds detached scalars: ``"head{i}"`` (unweighted loss of head
    i) and ``"head{i}/{term}"`` for compound losses.
    """

    def __init__(self, base_loss: nn.Module, weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.base_loss = base_loss
        self.weights = None if weights is None else tuple(float(w) for w in weights)
        self.last_terms: dict[str, Tensor] = {}

    def forward(
        self, outputs: Tensor | Sequence[Tensor], target: Tensor, return_terms: bool = False
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """``outputs``: (N, C, H, W) or a list of them, final first; ``target``: (N, H, W) or (N, C, H, W).

        Returns the scalar total, or ``(total, terms)`` with ``return_terms=True``.
        """
        outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
        weights = self.weights if self.weights is not None else (1.0,) * len(outputs)
        if len(weights) != len(outputs):
            raise ValueError(f"{len(weights)} deep-supervision weights for {len(outputs)} outputs")
        size = target.shape[-2:]
        total, terms = None, {}
        for i, (out, w) in enumerate(zip(outputs, weights)):
            if out.shape[-2:] != size:
                raise ValueError(
                    f"output {i} is {tuple(out.shape[-2:])} but the target is {tuple(size)}: every "
                    "deep-supervision head must be up-sampled to the input size"
                )
            if w == 0:
                continue
            if hasattr(self.base_loss, "terms"):
                parts = self.base_loss.terms(out, target)
                loss = torch.stack(list(parts.values())).sum()
                terms.update({f"head{i}/{k}": v.detach() for k, v in parts.items()})
            else:
                loss = self.base_loss(out, target)
            terms[f"head{i}"] = loss.detach()
            total = w * loss if total is None else total + w * loss
        if total is None:
            raise ValueError("every deep-supervision weight is 0: nothing to train")
        self.last_terms = terms
        return (total, terms) if return_terms else total

    def extra_repr(self) -> str:
        return f"weights={self.weights}"


def cgm_loss(cls_logits: Tensor, target: Tensor, ignore_index: int = 255) -> Tensor:
    """BCE of the classification-guided module on the image-level label "mask has foreground".

    Args:
        cls_logits: (N, 2) logits for [target absent, target present], one sigmoid each (the
            paper's CGM); the decision is their argmax.
        target: (N, H, W) class indices or (N, C, H, W) multi-label; the label is 1 when any
            non-ignored pixel has class >= 1 (see :func:`~unetfamily.losses.has_foreground`).

    Returns:
        Scalar BCE averaged over the 2N logits, leaving out images whose pixels are all ignored
        (nothing is known about them; a batch of only such images gives 0 with zero gradient).
    """
    if cls_logits.ndim != 2 or cls_logits.shape != (target.shape[0], 2):
        raise ValueError(f"cls_logits must be (N, 2) = ({target.shape[0]}, 2), got {tuple(cls_logits.shape)}")
    if cls_logits.dtype in (torch.float16, torch.bfloat16):
        cls_logits = cls_logits.float()
    present = has_foreground(target, ignore_index).to(cls_logits.dtype)
    labels = torch.stack([1 - present, present], dim=1)
    known = (target != ignore_index).flatten(1).any(dim=1, keepdim=True)  # (N, 1)
    bce = F.binary_cross_entropy_with_logits(neutralise(cls_logits, known), labels, reduction="none")
    return masked_mean(bce, known.to(bce.dtype))


class SegmentationCriterion(nn.Module):
    """Total loss of any raw model output: a Tensor, a deep-supervision list, or ``(seg, cls_logits)``.

    Args:
        loss: a name from :func:`list_losses` or a loss module ``(logits, target) -> scalar``
            (a module is used as is: set its ``ignore_index`` yourself).
        num_classes: optional check of the logits' channels: the model's ``num_classes``
            (1 for a binary sigmoid model) or the number of classes with background (2 for binary).
        ds_weights: per-head weights, final head first (see :class:`DeepSupervisionLoss`).
        cgm_weight: weight of :func:`cgm_loss` when the output carries CGM logits (0 skips it).
        ignore_index: target value left out of every loss.
        **loss_kwargs: forwarded to :func:`build_loss` (``None`` values dropped).

    ``forward(output, target)`` returns ``(total, terms)``; ``terms`` holds detached scalars:
    ``"total"``, ``"seg"``, ``"head{i}"``, ``"head{i}/{term}"`` and ``"cgm"`` when present.
    """

    def __init__(
        self,
        loss: str | nn.Module = "dice_ce",
        *,
        num_classes: int | None = None,
        ds_weights: Sequence[float] | None = None,
        cgm_weight: float = 1.0,
        ignore_index: int = 255,
        **loss_kwargs: object,
    ) -> None:
        super().__init__()
        if isinstance(loss, str):
            loss = build_loss(loss, ignore_index=ignore_index, **loss_kwargs)
        elif loss_kwargs:
            raise ValueError(f"loss options {sorted(loss_kwargs)} need a loss name, not a module")
        self.num_classes, self.cgm_weight, self.ignore_index = num_classes, float(cgm_weight), ignore_index
        self.seg_loss = DeepSupervisionLoss(loss, ds_weights)

    def forward(self, output: ModelOutput, target: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Raw model output and target (N, H, W) long or (N, C, H, W) float -> (scalar total, terms)."""
        seg, cls_logits = unpack_output(output)
        channels = seg[0].shape[1]
        if self.num_classes is not None and not (
            channels == self.num_classes or (channels == 1 and self.num_classes == 2)
        ):
            raise ValueError(f"the model outputs {channels} channels but num_classes={self.num_classes}")
        total, terms = self.seg_loss(seg, target, return_terms=True)
        terms["seg"] = total.detach()
        if cls_logits is not None and self.cgm_weight != 0:
            cgm = cgm_loss(cls_logits, target, self.ignore_index)
            terms["cgm"] = cgm.detach()
            total = total + self.cgm_weight * cgm
        terms["total"] = total.detach()
        return total, terms
