"""What the project knows about each family: its name, display label and default widths.

Used by ``compare`` (which variants to build), ``bench`` and ``unetfamily models --forward``;
lives beside the models so that no higher layer has to import ``compare`` to learn it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Family", "FAMILIES", "PAPERS", "Paper", "family_of", "family_kwargs", "model_label"]

Family = Literal["fcn", "unet", "unet_plusplus", "unet_3plus"]
FAMILIES: tuple[Family, ...] = ("fcn", "unet", "unet_plusplus", "unet_3plus")

_LABELS = {"fcn32s": "FCN-32s", "fcn16s": "FCN-16s", "fcn8s": "FCN-8s", "unet": "U-Net",
           "unet_plusplus": "UNet++", "unet_3plus": "UNet3+", "unet_3plus_efficient": "UNet3+ efficient"}


@dataclass(frozen=True)
class Paper:
    """The paper a family comes from, as model cards cite it (authors by surname, as in the model docstrings)."""

    title: str
    authors: tuple[str, ...]
    venue: str
    year: int
    url: str


PAPERS: dict[str, Paper] = {
    "fcn": Paper("Fully Convolutional Networks for Semantic Segmentation", ("Long", "Shelhamer", "Darrell"),
                 "CVPR", 2015, "https://arxiv.org/abs/1411.4038"),
    "unet": Paper("U-Net: Convolutional Networks for Biomedical Image Segmentation",
                  ("Ronneberger", "Fischer", "Brox"), "MICCAI", 2015, "https://arxiv.org/abs/1505.04597"),
    "unet_plusplus": Paper("UNet++: A Nested U-Net Architecture for Medical Image Segmentation",
                           ("Zhou", "Siddiquee", "Tajbakhsh", "Liang"), "DLMIA", 2018,
                           "https://arxiv.org/abs/1807.10165"),
    "unet_3plus": Paper("UNet 3+: A Full-Scale Connected UNet for Medical Image Segmentation",
                        ("Huang", "Lin", "Tong", "Hu", "Zhang", "Iwamoto", "Han", "Chen", "Wu"), "ICASSP", 2020,
                        "https://arxiv.org/abs/2004.08790"),
}


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
