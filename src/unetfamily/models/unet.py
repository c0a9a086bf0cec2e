"""U-Net.

Paper: "U-Net: Convolutional Networks for Biomedical Image Segmentation",
Ronneberger, Fischer, Brox, MICCAI 2015, https://arxiv.org/abs/1505.04597

A symmetric encoder-decoder: every level applies two conv3x3+ReLU; the encoder goes down by
2x2 max-pooling, the decoder goes up by an up-convolution that halves the width and
*concatenates* the same-level encoder feature before its two conv3x3.

Departures from the paper (all configurable where the paper's design allows):
- 'same' (padded) convolutions instead of valid ones with cropping; inputs whose H, W are not
  multiples of 2**depth are zero-padded bottom/right and the logits cropped back.
- Optional normalisation (BatchNorm by default, as in every modern U-Net); ``norm="none"`` and
  ``decoder_norm="none"`` give the original's plain conv+ReLU.
- Depth is ``len(channels) - 1`` down-samplings, 1 to 6; the paper's U-Net is depth 4.
- Up-sampling is a transposed conv (kernel 2 as in the paper, or 4) or bilinear + 1x1 conv.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unetfamily.models._blocks import (
    DoubleConv,
    Norm,
    SegmentationModel,
    Upsample,
    check_channels,
    check_choice,
    make_upsample,
)
from unetfamily.models._memory import cat_channels
from unetfamily.models._registry import register_model

__all__ = ["UNet"]


class UNet(SegmentationModel):
    """U-Net of configurable depth and width.

    Args:
        in_channels: image channels.
        num_classes: output channels (1 for binary with a sigmoid, C for softmax).
        channels: encoder width per resolution level, shallowest first; depth = len - 1 (1..6).
        norm: normalisation in the encoder ("batch", "instance", "group", "none").
        decoder_norm: normalisation in the decoder; ``None`` means the same as ``norm``.
        upsample: "transpose" (up-convolution) or "bilinear" (bilinear x2 + 1x1 conv).
        up_kernel_size: transposed-conv kernel, 2 (paper) or 4 (stride 2, padding 1).
        head_kernel_size: output conv kernel, 1 (paper) or 3.

    Shapes: (N, in_channels, H, W) -> logits (N, num_classes, H, W) for any H, W.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        channels: Sequence[int] = (64, 128, 256, 512, 1024),
        norm: Norm = "batch",
        decoder_norm: Norm | None = None,
        upsample: Upsample = "transpose",
        up_kernel_size: int = 2,
        head_kernel_size: int = 1,
    ) -> None:
        super().__init__()
        channels = check_channels(channels, 2, 7)
        check_choice("head_kernel_size", head_kernel_size, (1, 3))
        decoder_norm = norm if decoder_norm is None else decoder_norm
        self.in_channels, self.num_classes, self.channels = in_channels, num_classes, channels
        self.depth = len(channels) - 1
        self.size_multiple = 2**self.depth
        self.encoder = nn.ModuleList(
            DoubleConv(in_channels if i == 0 else channels[i - 1], c, norm) for i, c in enumerate(channels)
        )
        # ups[i] brings level i+1 to level i; decoder[i] fuses [skip_i, up] at level i.
        self.ups = nn.ModuleList(
            make_upsample(channels[i + 1], channels[i], upsample, up_kernel_size) for i in range(self.depth)
        )
        self.decoder = nn.ModuleList(DoubleConv(2 * channels[i], channels[i], decoder_norm) for i in range(self.depth))
        self.head = nn.Conv2d(channels[0], num_classes, head_kernel_size, padding=head_kernel_size // 2)

    def forward_padded(self, x: Tensor) -> Tensor:
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for i in reversed(range(self.depth)):
            x = self.decoder[i](cat_channels((skips[i], self.ups[i](x))))
        return self.head(x)


@register_model
def unet(**kwargs: object) -> UNet:
    """U-Net, depth 4, widths 64..1024, BatchNorm, 2x2 up-convolutions (all overridable)."""
    return UNet(**kwargs)


@register_model
def unet_huang2020(**kwargs: object) -> UNet:
    """The U-Net of the UNet3+ paper's comparison, as in its authors' code (39.40M parameters):
    widths 64..1024, conv-BN-ReLU encoder, conv-ReLU decoder, 4x4 transposed convs, 3x3 head."""
    return UNet(**{"norm": "batch", "decoder_norm": "none", "up_kernel_size": 4, "head_kernel_size": 3, **kwargs})


@register_model
def unet_zhou2018(**kwargs: object) -> UNet:
    """The U-Net baseline of the UNet++ authors' Keras code (7,759,521 parameters): widths 32..512,
    1 input channel, no normalisation, 2x2 transposed convs, 1x1 head."""
    return UNet(**{"in_channels": 1, "channels": (32, 64, 128, 256, 512), "norm": "none", **kwargs})
