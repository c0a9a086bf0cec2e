"""The variants a comparison trains: family members, their widths, and the ablations.

Widths are set by one base width ``w`` per family so that a comparison is either at the papers'
widths (``"paper"``), at one small base width for all (``"small"``, CPU-friendly), or at
parameter counts matched to the U-Net of that base width (``"matched"``: each family's ``w`` is
chosen so its parameter count is closest to U-Net's). With an encoder (``compare --encoder``) every
variant is built on that backbone instead: no widths are set (the decoders size themselves from the
backbone's features), and the U-Net depth ablation, which varies the family's own encoder, is refused.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from unetfamily.compare.config import ABLATIONS
from unetfamily.errors import ConfigError, unknown_choice
from unetfamily.models import create_model, family_kwargs, family_of, model_label

__all__ = ["Variant", "matched_width", "build_variants", "ABLATIONS"]


@dataclass
class Variant:
    """One trained configuration of a comparison."""

    id: str
    label: str
    model: str
    family: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    ablation: str | None = None
    levels: bool = False  # evaluate UNet++ pruning levels of this trained model


def _params(name: str, kwargs: dict[str, Any], in_channels: int, num_classes: int) -> int:
    with torch.device("meta"):
        model = create_model(name, in_channels=in_channels, num_classes=num_classes, **kwargs)
    return sum(p.numel() for p in model.parameters())


def matched_width(name: str, target_params: int, in_channels: int, num_classes: int, extra: dict | None = None) -> int:
    """The base width (multiple of 2) whose parameter count for ``name`` is closest to ``target_params``."""
    best = min(
        range(2, 257, 2),
        key=lambda w: abs(_params(name, {**family_kwargs(name, w), **(extra or {})}, in_channels, num_classes) - target_params),
    )
    return best


def build_variants(
    models: list[str], ablations: list[str], widths: str, base_width: int, in_channels: int, num_classes: int,
    encoder: dict[str, Any] | None = None,
) -> list[Variant]:
    """Variants for the requested models and ablations.

    Main variants: the papers' full forms (UNet++ and UNet3+ with deep supervision; UNet++ also
    evaluated at pruning levels L1..L4). Ablations: ``unet_depth`` (U-Net with 0..5
    down-samplings; 0 = none: one conv block at full resolution), ``unetpp_ds`` (UNet++ without deep supervision), ``unet3p`` (UNet3+ without
    deep supervision, and with DS + CGM for binary tasks). ``encoder``: ``{"encoder": NAME[, "encoder_weights":
    PATH]}`` for every variant, in place of the widths (``widths`` and ``base_width`` are then unused).
    """
    unknown = sorted(set(ablations) - set(ABLATIONS))
    if unknown:
        raise unknown_choice("ablation", unknown[0], ABLATIONS)
    if encoder and (widths == "matched" or "unet_depth" in ablations):
        raise ConfigError("width matching and the unet_depth ablation size the families' own encoders; "
                          f"they do not apply to models on the {encoder.get('encoder')} encoder")
    width = None if widths == "paper" else base_width
    target = (_params("unet", family_kwargs("unet", width), in_channels, num_classes)
              if widths == "matched" and not encoder else None)

    def make(id_: str, model: str, extra: dict[str, Any], label: str, ablation: str | None = None,
             depth: int = 4, levels: bool = False) -> Variant:
        if encoder:
            return Variant(id_, label, model, family_of(model), {**encoder, **extra}, ablation, levels)
        w = width
        if target is not None and family_of(model) != "unet":
            w = matched_width(model, target, in_channels, num_classes, extra)
        return Variant(id_, label, model, family_of(model), {**family_kwargs(model, w, depth), **extra}, ablation, levels)

    variants: list[Variant] = []
    for name in models:
        family = family_of(name)
        if family == "unet_plusplus":
            variants.append(make(name, name, {"deep_supervision": True}, "UNet++ (DS)", levels=True))
        elif family == "unet_3plus":
            variants.append(make(name, name, {"deep_supervision": True}, f"{model_label(name)} (DS)"))
        else:
            variants.append(make(name, name, {}, model_label(name)))
    if "unet_depth" in ablations:
        for depth in (0, 1, 2, 3, 5):
            variants.append(make(f"unet_d{depth}", "unet", {}, f"U-Net depth {depth}", f"depth {depth}", depth=depth))
    if "unetpp_ds" in ablations:
        variants.append(make("unet_plusplus_nods", "unet_plusplus", {}, "UNet++ (no DS)", "no DS"))
    if "unet3p" in ablations:
        variants.append(make("unet_3plus_nods", "unet_3plus", {}, "UNet3+ (no DS)", "no DS"))
        if num_classes == 1:
            variants.append(make("unet_3plus_cgm", "unet_3plus", {"deep_supervision": True, "cgm": True},
                                 "UNet3+ (DS + CGM)", "DS + CGM"))
    seen: set[str] = set()
    for v in variants:
        if v.id in seen:
            raise ConfigError(f"variant {v.id!r} is requested twice; name each model once in --models")
        seen.add(v.id)
    return variants
