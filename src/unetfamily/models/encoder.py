"""The encoder shared by U-Net, UNet++ and UNet3+, and the ``feature_info`` contract decoders read.

All three papers use the same contracting path: at level i two conv3x3 (+norm) + ReLU
(:class:`~unetfamily.models._blocks.DoubleConv`), with a 2x2 max-pool between levels. U-Net
calls its outputs the skip features, UNet++ the nodes X^{i,0}, UNet3+ e_i; here they are the
pyramid that :meth:`UNetEncoder.forward` returns.

A decoder never keeps its own copy of the widths: it sizes itself from the encoder's
:class:`FeatureInfo` (channels and reduction per level, the contract of timm's
``features_only`` models), so another encoder exposing the same contract can replace this one.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from unetfamily.errors import ConfigError
from unetfamily.models._blocks import DoubleConv, Norm, check_channels

__all__ = ["FeatureInfo", "UNetEncoder"]


class FeatureInfo(list):
    """One dict per pyramid level, shallowest first, with timm's keys.

    - ``num_chs``: channels of the level's feature;
    - ``reduction``: its stride against the input (H / feature height);
    - ``module``: the name of the module that outputs it (``model.get_submodule(module)``).
    """

    def channels(self) -> tuple[int, ...]:
        """Channels per level, shallowest first."""
        return tuple(level["num_chs"] for level in self)

    def reductions(self) -> tuple[int, ...]:
        """Stride per level against the input, shallowest first."""
        return tuple(level["reduction"] for level in self)

    def module_names(self) -> tuple[str, ...]:
        """The module producing each level's feature."""
        return tuple(level["module"] for level in self)

    def prefixed(self, prefix: str) -> FeatureInfo:
        """The same levels with module names seen from a parent that holds this module as ``prefix``."""
        return FeatureInfo({**level, "module": f"{prefix}.{level['module']}"} for level in self)


class UNetEncoder(nn.Module):
    """The U-Net contracting path: ``len(channels)`` levels of DoubleConv, max-pool 2 between them.

    Args:
        in_channels: image channels.
        channels: width per level, shallowest first; ``len(channels) - 1`` down-samplings
            (``min_depth``..6).
        norm: normalisation after every conv ("batch", "instance", "group", "none").
        min_depth: the fewest down-samplings allowed: 1 for the nested decoders (UNet++, UNet3+),
            0 for U-Net, whose depth 0 is one DoubleConv at full resolution.

    ``feature_info`` lists, per level i, ``num_chs=channels[i]``, ``reduction=2**i`` and
    ``module="stages.i"``. Shapes: (N, in_channels, H, W) -> [(N, channels[i], H / 2**i, W / 2**i)]
    for H, W multiples of ``2**(len(channels) - 1)``.
    """

    def __init__(
        self, in_channels: int, channels: Sequence[int], norm: Norm = "batch", *, min_depth: int = 1
    ) -> None:
        super().__init__()
        channels = check_channels(channels, min_depth + 1, 7)
        self.stages = nn.ModuleList(
            DoubleConv(in_channels if i == 0 else channels[i - 1], c, norm) for i, c in enumerate(channels)
        )
        self.feature_info = FeatureInfo(
            {"num_chs": c, "reduction": 2**i, "module": f"stages.{i}"} for i, c in enumerate(channels)
        )

    def forward(self, x: Tensor, depth: int | None = None) -> list[Tensor]:
        """The pyramid down to level ``depth`` (default: the deepest), ``depth + 1`` tensors, shallowest first.

        Levels deeper than ``depth`` are not computed (UNet++ pruning runs only what a head needs).
        """
        depth = len(self.stages) - 1 if depth is None else depth
        if not 0 <= depth < len(self.stages):
            raise ConfigError(f"depth={depth} must be between 0 and the encoder's depth {len(self.stages) - 1}")
        features = []
        for i in range(depth + 1):
            x = self.stages[i](x if i == 0 else F.max_pool2d(x, 2))
            features.append(x)
        return features
