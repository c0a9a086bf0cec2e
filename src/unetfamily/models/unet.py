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
- Depth is ``len(channels) - 1`` down-samplings, 0 to 6; the paper's U-Net is depth 4. Depth 0
  (``channels=(w,)``) has no down-sampling at all: one DoubleConv at full resolution and the
  head, the "is down-sampling needed?" baseline of the ``unet_depth`` ablation.
- Up-sampling is a transposed conv (kernel 2 as in the paper, or 4) or bilinear + 1x1 conv.
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from unetfamily.models._blocks import DoubleConv, Norm, SegmentationModel, Upsample, check_choice, make_upsample
from unetfamily.models._memory import cat_channels
from unetfamily.models._registry import register_model
from unetfamily.models.encoders.pyramid import make_encoder

__all__ = ["UNet"]


class UNet(SegmentationModel):
    """U-Net of configurable depth and width.

    Args:
        in_channels: image channels.
        num_classes: output channels (1 for binary with a sigmoid, C for softmax).
        channels: encoder width per resolution level, shallowest first; depth = len - 1 (0..6).
        norm: normalisation in the encoder ("batch", "instance", "group", "none").
        decoder_norm: normalisation in the decoder; ``None`` means the same as ``norm``.
        upsample: "transpose" (up-convolution) or "bilinear" (bilinear x2 + 1x1 conv).
        up_kernel_size: transposed-conv kernel, 2 (paper) or 4 (stride 2, padding 1).
        head_kernel_size: output conv kernel, 1 (paper) or 3.
        encoder: a pretrained-architecture backbone (``unetfamily.models.encoders.list_encoders()``)
            instead of the paper's encoder; ``channels`` is then unused and the decoder is sized
            from the backbone's features (:class:`~unetfamily.models.encoders.pyramid.PyramidEncoder`).
        encoder_depth: the backbone's stride-2 steps used, 1..5 (with ``encoder``).

    Modules: ``encoder`` (:class:`~unetfamily.models.encoder.UNetEncoder`), ``ups[i]`` (level
    i+1 up to level i), ``decoder[i]`` (fuses [skip_i, up] at level i), ``head``. The decoder is
    sized from ``feature_info`` (the encoder's levels: ``num_chs``, ``reduction``, ``module``).

    Shapes: (N, in_channels, H, W) -> logits (N, num_classes, H, W) for any H, W.
    """

    renamed_keys = ((r"^encoder\.(\d+)\.", r"encoder.stages.\1."),)  # 0.1.0: encoder.{i}
    registry_name = "unet"

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
        encoder: str | None = None,
        encoder_depth: int = 5,
    ) -> None:
        super().__init__()
        check_choice("head_kernel_size", head_kernel_size, (1, 3))
        decoder_norm = norm if decoder_norm is None else decoder_norm
        self.encoder = make_encoder(in_channels, channels, norm, encoder, encoder_depth, min_depth=0)
        self.feature_info = self.encoder.feature_info.prefixed("encoder")
        widths = self.feature_info.channels()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.depth = len(widths) - 1
        self.size_multiple = self.feature_info.reductions()[-1]
        self.ups = nn.ModuleList(
            make_upsample(widths[i + 1], widths[i], upsample, up_kernel_size) for i in range(self.depth)
        )
        self.decoder = nn.ModuleList(DoubleConv(2 * widths[i], widths[i], decoder_norm) for i in range(self.depth))
        # Depth 0 leaves ``ups`` and ``decoder`` empty: encoder level 0 feeds the head directly.
        self.head = nn.Conv2d(widths[0], num_classes, head_kernel_size, padding=head_kernel_size // 2)

    def forward_padded(self, x: Tensor) -> Tensor:
        skips = self.encoder(x)
        x = skips[-1]
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
