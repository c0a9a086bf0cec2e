"""What the project knows about each family: its name, display label and default widths.

Used by ``compare`` (which variants to build), ``bench`` and ``unetfamily models --forward``;
lives beside the models so that no higher layer has to import ``compare`` to learn it.
"""
from __future__ import annotations

from typing import Any, Literal

__all__ = ["Family", "FAMILIES", "family_of", "family_kwargs", "model_label"]

Family = Literal["fcn", "unet", "unet_plusplus", "unet_3plus"]
FAMILIES: tuple[Family, ...] = ("fcn", "unet", "unet_plusplus", "unet_3plus")

_LABELS = {"fcn32s": "FCN-32s", "fcn16s": "FCN-16s", "fcn8s": "FCN-8s", "unet": "U-Net",
           "unet_plusplus": "UNet++", "unet_3plus": "UNet3+", "unet_3plus_efficient": "UNet3+ efficient"}


def family_of(name: str) -> Family:
    """``"fcn"``, ``"unet"``, ``"unet_plusplus"`` or ``"unet_3plus"`` for a registry name or a spelling of one."""
    from unetfamily.errors import unknown_choice
    from unetfamily.models._registry import resolve_model_name

    name = resolve_model_name(name)
    if name.startswith("fcn"):
        return "fcn"
    for family in ("unet_plusplus", "unet_3plus", "unet"):
        if name.startswith(family):
            return family  # type: ignore[return-value]
    raise unknown_choice("model", name, FAMILIES, "not a model of the UNet family registry")


def model_label(name: str) -> str:
    """The display name of a registry name (``"unet_plusplus"`` -> ``"UNet++"``); unknown names as given."""
    return _LABELS.get(name, name)


def family_kwargs(name: str, width: int | None, depth: int = 4) -> dict[str, Any]:
    """Constructor widths for ``name`` at base width ``width`` (``None``: the paper's widths)."""
    if width is None:
        return {}
    family = family_of(name)
    if family == "fcn":
        # BatchNorm like every other family here (VGG-16 has none), so a comparison is of
        # architectures, not of normalisation; the paper's dropout after fc6/fc7 is kept.
        return {"channels": [width, 2 * width, 4 * width, 8 * width, 8 * width], "fc_channels": 16 * width,
                "norm": "batch"}
    channels = [width * 2**i for i in range(depth + 1)]
    if family == "unet_3plus":
        return {"channels": channels, "cat_channels": width}
    return {"channels": channels}
