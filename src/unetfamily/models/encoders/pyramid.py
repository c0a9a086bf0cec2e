"""A pretrained-architecture backbone turned into the full pyramid the UNet decoders read.

The U-Net family's decoders expect one feature per level i = 0..D at stride 2**i, level 0 at full
resolution (:class:`~unetfamily.models.encoder.UNetEncoder`). An ImageNet backbone starts later:
ResNet and EfficientNet at stride 2, ConvNeXt at stride 4. :class:`PyramidEncoder` keeps the
backbone's stages for the strides it has and builds the missing shallow levels the way the
families build every level, with the family's own (not pretrained) DoubleConv on the image:
level 0 = DoubleConv(image) at full resolution, level i = DoubleConv(max-pool(level i-1)) until
the backbone's first stride. Their widths halve from the backbone's first width (at least 16):
ResNet 64 @ 1/2 gets a 32-wide level 0; ConvNeXt 96 @ 1/4 gets 24 @ 1/1 and 48 @ 1/2.

So every family keeps its full-resolution node and its skip at full resolution (U-Net's last
decoder level concatenates level 0, UNet++'s X^{0,j} row and UNet3+'s e_0 exist as in the
papers), where segmentation_models_pytorch drops the full-resolution skip. Both read the image:
the shallow levels and the backbone run side by side.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unetfamily.errors import ConfigError
from unetfamily.models._blocks import DoubleConv, Norm
from unetfamily.models.encoder import FeatureInfo, UNetEncoder
from unetfamily.models.encoders.base import check_depth, encoder_spec
from unetfamily.models.encoders.weights import load_weights

__all__ = ["PyramidEncoder", "make_encoder"]

#: The narrowest shallow level built beside a backbone.
MIN_SHALLOW_WIDTH = 16


class PyramidEncoder(nn.Module):
    """Backbone ``name`` plus the shallow levels it lacks: features at strides 1, 2, ..., 2**depth.

    Args:
        name: a registered encoder (``unetfamily.models.encoders.list_encoders()``).
        in_channels: image channels.
        depth: stride-2 steps, 1..5 (5: the backbone's full depth, stride 32).
        norm: normalisation of the shallow levels (the backbone keeps its own).
        min_depth: the fewest levels a decoder needs below level 0.

    Modules: ``shallow[i]`` (levels below the backbone's first stride) and ``backbone``.
    ``feature_info`` has one level per stride, ``module`` named from this encoder.
    Shapes: (N, in_channels, H, W) -> [(N, C_i, H / 2**i, W / 2**i) for i = 0..depth], H, W
    multiples of 2**depth.
    """

    def __init__(self, name: str, in_channels: int, depth: int = 5, norm: Norm = "batch", *, min_depth: int = 1) -> None:
        super().__init__()
        self.name = name
        spec = encoder_spec(name)
        depth = check_depth(name, depth, max(1, min_depth))
        self.backbone = spec.build(in_channels, depth)
        first_level = spec.reductions[0].bit_length() - 1
        widths = [max(MIN_SHALLOW_WIDTH, _first_width(self.backbone, spec.name) >> (first_level - i))
                  for i in range(min(first_level, depth + 1))]
        self.shallow = nn.ModuleList(
            DoubleConv(in_channels if i == 0 else widths[i - 1], w, norm) for i, w in enumerate(widths)
        )
        info = [{"num_chs": w, "reduction": 2**i, "module": f"shallow.{i}"} for i, w in enumerate(widths)]
        self.feature_info = FeatureInfo(info + list(self.backbone.feature_info.prefixed("backbone")))
        if self.feature_info.reductions() != tuple(2**i for i in range(depth + 1)):
            raise ConfigError(f"encoder {name!r} at depth {depth} gives strides {self.feature_info.reductions()}, "
                              f"not 1, 2, ..., {2**depth}")

    def forward(self, x: Tensor, depth: int | None = None) -> list[Tensor]:
        """The pyramid down to level ``depth`` (default: the deepest); deeper levels are not computed."""
        deepest = len(self.feature_info) - 1
        depth = deepest if depth is None else depth
        if not 0 <= depth <= deepest:
            raise ConfigError(f"depth={depth} must be between 0 and the encoder's depth {deepest}")
        features, y = [], x
        for i, level in enumerate(self.shallow[: depth + 1]):
            y = level(y if i == 0 else F.max_pool2d(y, 2))
            features.append(y)
        stages = depth + 1 - len(self.shallow)
        return features + (self.backbone(x, stages) if stages > 0 else [])

    def load_weights(self, state: Mapping[str, Tensor], source: str) -> None:
        """Copy a torchvision/timm/own-layout state dict into the backbone (every key accounted for)."""
        converted = encoder_spec(self.name).convert_state_dict(state)
        load_weights(self.backbone, converted, source, skipped=self.backbone.skipped_prefixes,
                     first_conv=self.backbone.first_conv)


def _first_width(backbone: nn.Module, name: str) -> int:
    """Channels of the backbone's shallowest feature at full depth (its first stage is always built)."""
    info = backbone.feature_info
    if info:
        return int(info[0]["num_chs"])
    with torch.device("meta"):  # a depth too shallow for any stage: read the width off the full one, unallocated
        full = encoder_spec(name).build(3, 5)
    return int(full.feature_info[0]["num_chs"])


def make_encoder(in_channels: int, channels: Sequence[int], norm: Norm, encoder: str | None, encoder_depth: int,
                 *, min_depth: int) -> UNetEncoder | PyramidEncoder:
    """The family's own encoder of ``channels`` widths, or backbone ``encoder`` at ``encoder_depth``."""
    if encoder is None:
        return UNetEncoder(in_channels, channels, norm, min_depth=min_depth)
    return PyramidEncoder(encoder, in_channels, encoder_depth, norm, min_depth=min_depth)
