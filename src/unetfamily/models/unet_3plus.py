"""UNet 3+: full-scale skip connections, full-scale deep supervision and a classification-guided module.

Paper: "UNet 3+: A Full-Scale Connected UNet for Medical Image Segmentation", Huang, Lin, Tong,
Hu, Zhang, Iwamoto, Han, Chen, Wu, ICASSP 2020, https://arxiv.org/abs/2004.08790

Notation: encoder features e_0..e_D (e_0 at full resolution), decoder features d_0..d_{D-1},
and d_D = e_D. Decoder level i fuses ALL scales k = 0..D, each through its own branch
``decoder[i]["from_k"]``:

- k < i: e_k max-pooled by 2**(i-k)   (shallower encoder features)
- k = i: e_i as is
- k > i: d_k bilinearly up-sampled by 2**(k-i)   (deeper decoder features, and e_D)

then conv3x3 -> ``cat_channels`` + norm + ReLU; the D+1 branches are concatenated
((D+1) * cat_channels = 320 channels for the paper) and fused by conv3x3 + norm + ReLU.

Outputs: a conv3x3 head on d_0. With ``deep_supervision`` a conv3x3 head on every d_i and on e_D,
bilinearly up-sampled to the input size; the model returns [d_0 head, d_1 head, ..., e_D head].

Classification-guided module (``cgm=True``, binary tasks): dropout 0.5 -> 1x1 conv to 2 ->
global max pool on e_D gives image-level logits for [target absent, target present]. They are
RETURNED (``(segmentation, cls_logits)``) so they can be trained with their own BCE on "mask has
foreground" (the authors' code never returns them, so its CGM cannot be trained). In eval mode
the argmax decision gates the segmentation: where "absent" wins, the logits are set to -1e4 so
every sigmoid PROBABILITY is 0 (the authors multiply logits by 0, which gives 0.5). In training
mode the outputs are not gated, so every image trains the decoder.

Departures from the authors' code, all deliberate: logits instead of a baked-in sigmoid; every
resize sized by the target tensor (any H, W; inputs are zero-padded to a multiple of 2**D and
cropped back); CGM trainable and gating probabilities; ``norm`` selectable.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unetfamily.models._blocks import ConvNormAct, DoubleConv, ModelOutput, Norm, SegmentationModel, check_channels
from unetfamily.models._registry import register_model

__all__ = ["UNet3Plus"]

#: Logit written where the CGM says "no target": sigmoid gives exactly 0 in float32.
ABSENT_LOGIT = -1e4


class FullScaleDecoderLevel(nn.Module):
    """Decoder level i: one branch per source scale, concatenation, fusion conv."""

    def __init__(self, level: int, source_channels: Sequence[int], cat_channels: int, norm: Norm) -> None:
        super().__init__()
        self.level = level
        self.branches = nn.ModuleDict(
            {f"from_{k}": ConvNormAct(c, cat_channels, 3, norm) for k, c in enumerate(source_channels)}
        )
        self.fuse = ConvNormAct(cat_channels * len(source_channels), cat_channels * len(source_channels), 3, norm)

    def forward(self, sources: Sequence[Tensor]) -> Tensor:
        """``sources[k]`` is e_k for k <= level and d_k for k > level; returns d_level."""
        size = sources[self.level].shape[-2:]
        parts = []
        for k, src in enumerate(sources):
            if k < self.level:
                f = 2 ** (self.level - k)
                src = F.max_pool2d(src, f, f, ceil_mode=True)
            elif k > self.level:
                src = F.interpolate(src, size=size, mode="bilinear", align_corners=False)
            parts.append(self.branches[f"from_{k}"](src))
        return self.fuse(torch.cat(parts, dim=1))


class UNet3Plus(SegmentationModel):
    """UNet 3+ with full-scale skips, optional full-scale deep supervision and CGM.

    Args:
        in_channels: image channels.
        num_classes: output channels (1 for binary with a sigmoid, C for softmax).
        channels: encoder width per level, shallowest first; D = len - 1 down-samplings (1..6).
        cat_channels: width of every full-scale branch (64 in the paper).
        norm: normalisation everywhere ("batch" in the paper).
        deep_supervision: heads on every decoder level and on e_D, all returned.
        cgm: classification-guided module (binary tasks, ``num_classes == 1``, only).

    Shapes: (N, in_channels, H, W) -> logits (N, num_classes, H, W); with deep supervision a list
    of D + 1 such tensors, final first; with ``cgm`` a tuple (that output, cls logits (N, 2)).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        channels: Sequence[int] = (64, 128, 256, 512, 1024),
        cat_channels: int = 64,
        norm: Norm = "batch",
        deep_supervision: bool = False,
        cgm: bool = False,
    ) -> None:
        super().__init__()
        channels = check_channels(channels, 2, 7)
        if cgm and num_classes != 1:
            raise ValueError(
                f"cgm=True needs a binary model (num_classes=1), got num_classes={num_classes}: the "
                f"classification-guided module is one image-level switch for all classes"
            )
        self.in_channels, self.num_classes, self.channels = in_channels, num_classes, channels
        self.depth = depth = len(channels) - 1
        self.size_multiple = 2**depth
        self.deep_supervision, self.cgm = deep_supervision, cgm
        up_channels = cat_channels * (depth + 1)
        self.encoder = nn.ModuleList(
            DoubleConv(in_channels if i == 0 else channels[i - 1], c, norm) for i, c in enumerate(channels)
        )
        self.decoder = nn.ModuleList()
        for i in range(depth):
            sources = [channels[k] if k <= i or k == depth else up_channels for k in range(depth + 1)]
            self.decoder.append(FullScaleDecoderLevel(i, sources, cat_channels, norm))
        head_levels = range(depth + 1) if deep_supervision else [0]
        self.heads = nn.ModuleDict(
            {
                f"head_{i}": nn.Conv2d(channels[depth] if i == depth else up_channels, num_classes, 3, padding=1)
                for i in head_levels
            }
        )
        if cgm:
            self.classifier = nn.Sequential(
                nn.Dropout(0.5), nn.Conv2d(channels[depth], 2, 1), nn.AdaptiveMaxPool2d(1), nn.Flatten(1)
            )

    def forward_padded(self, x: Tensor) -> ModelOutput:
        enc = []
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            enc.append(x)
        dec: list[Tensor] = [enc[-1]]  # d_D = e_D; built deepest first, then reversed
        for i in reversed(range(self.depth)):
            dec.insert(0, self.decoder[i](enc[: i + 1] + dec))
        levels = range(self.depth + 1) if self.deep_supervision else [0]
        outputs = [self._head(i, dec[i], enc[0].shape[-2:]) for i in levels]
        if self.cgm:
            cls_logits = self.classifier(enc[-1])
            if not self.training:
                absent = (cls_logits.argmax(dim=1) == 0).view(-1, 1, 1, 1)
                outputs = [o.masked_fill(absent, ABSENT_LOGIT) for o in outputs]
        seg = outputs if self.deep_supervision else outputs[0]
        return (seg, cls_logits) if self.cgm else seg

    def _head(self, level: int, feature: Tensor, size: torch.Size) -> Tensor:
        out = self.heads[f"head_{level}"](feature)
        return out if level == 0 else F.interpolate(out, size=size, mode="bilinear", align_corners=False)


@register_model
def unet_3plus(**kwargs: object) -> UNet3Plus:
    """UNet 3+, widths 64..1024, 64-channel full-scale branches, BatchNorm."""
    return UNet3Plus(**kwargs)


@register_model
def unet_3plus_huang2020(**kwargs: object) -> UNet3Plus:
    """UNet 3+ as in its authors' code (26.97M parameters; 26.99M with deep supervision)."""
    return UNet3Plus(**{"channels": (64, 128, 256, 512, 1024), "cat_channels": 64, "norm": "batch", **kwargs})
