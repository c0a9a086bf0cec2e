"""UNet 3+: full-scale skip connections, full-scale deep supervision and a classification-guided module.

Paper: "UNet 3+: A Full-Scale Connected UNet for Medical Image Segmentation", Huang, Lin, Tong,
Hu, Zhang, Iwamoto, Han, Chen, Wu, ICASSP 2020, https://arxiv.org/abs/2004.08790

Notation: encoder features e_0..e_D (e_0 at full resolution; ``encoder``, the U-Net encoder
shared with the other families), decoder features d_0..d_{D-1}, and d_D = e_D. Decoder level i
fuses ALL scales k = 0..D, each through its own branch ``decoder[i].branches["from_k"]``:

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
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unetfamily.errors import ConfigError
from unetfamily.models._blocks import ConvNormAct, ModelOutput, Norm, SegmentationModel, check_choice
from unetfamily.models._memory import active_mode, cat_channels, remember
from unetfamily.models._registry import register_model
from unetfamily.models.encoders.pyramid import make_encoder

__all__ = ["UNet3Plus"]

Decoder = Literal["exact", "efficient"]
#: Input channels re-sampled at a time by the "checkpoint" memory saving (see :class:`_ResizeConv`).
_CHECKPOINT_GROUP = 128

#: Logit written where the CGM says "no target": sigmoid gives exactly 0 in float32.
ABSENT_LOGIT = -1e4


class FullScaleDecoderLevel(nn.Module):
    """Decoder level i: one branch per source scale, concatenation, fusion conv.

    ``source_channels[k]`` and ``reductions[k]`` are the width and stride of source k (the
    encoder's ``feature_info`` for e_k, ``cat_channels * (D + 1)`` for a decoder feature d_k).
    """

    def __init__(self, level: int, source_channels: Sequence[int], reductions: Sequence[int], cat_channels: int,
                 norm: Norm, decoder: Decoder = "exact") -> None:
        super().__init__()
        self.level, self.decoder = level, decoder
        # Shallower sources are max-pooled down to this level's stride.
        self.pool_factors = [reductions[level] // reductions[k] for k in range(level)]
        self.branches = nn.ModuleDict(
            {f"from_{k}": ConvNormAct(c, cat_channels, 3, norm) for k, c in enumerate(source_channels)}
        )
        self.fuse = ConvNormAct(cat_channels * len(source_channels), cat_channels * len(source_channels), 3, norm)

    def forward(self, sources: Sequence[Tensor]) -> Tensor:
        """``sources[k]`` is e_k for k <= level and d_k for k > level; returns d_level.

        Under ``memory_saving`` the resized sources and the concatenation are recomputed in
        backward (from the sources and the branch outputs) instead of stored (:class:`_ResizeConv`
        for the up-sampled ones). With "checkpoint" an up-sampled source is never materialised
        whole: its branch convolution is summed over channel groups of 128.
        """
        size = sources[self.level].shape[-2:]
        mode = active_mode()
        parts = []
        for k, src in enumerate(sources):
            branch = self.branches[f"from_{k}"]
            if k < self.level:
                factor = self.pool_factors[k]
                parts.append(branch(remember(_pool(src, factor), _pool, src, factor)))
            elif k == self.level:
                parts.append(branch(src))
            elif self.decoder == "efficient":  # convolve at the source's resolution, then resize
                small = branch[0](src)
                parts.append(branch.norm_act(remember(_resize(small, size), _resize, small, size)))
            elif mode != "none":  # the up-sampled map is not kept for backward
                group = _CHECKPOINT_GROUP if mode == "checkpoint" else None
                parts.append(branch.norm_act(_ResizeConv.apply(src, size, branch[0].weight, branch[0].bias, group)))
            else:
                parts.append(branch(_resize(src, size)))
        return self.fuse(cat_channels(parts))


class _ResizeConv(torch.autograd.Function):
    """conv(resize(x)) that keeps only the small ``x`` for backward.

    A deep source up-sampled to a fine level is the largest tensor of UNet3+ (e_4, 1024 channels,
    up-sampled 16x: 537 MB at batch 2, 256 px; the same again for its gradient). Backward
    re-samples it, takes the weight and bias gradients, frees it, and only then computes the
    input gradient (``convolution_backward`` in two calls, then the resize's own backward
    kernel), so the map and its gradient are never held together. With ``group=None`` every
    kernel is the one autograd runs: results are bit-identical to ``conv(resize(x))``. With
    ``group=g`` the convolution is summed over input-channel groups of ``g`` (forward and
    backward), so only one group's up-sampled map exists at a time; that changes the float
    summation order (results equal up to rounding). Under autocast the convolution runs in the
    autocast dtype, as ``F.conv2d`` would: backward casts the map and the weights the same way.
    """

    @staticmethod
    def forward(ctx, x: Tensor, size: torch.Size, weight: Tensor, bias: Tensor | None, group: int | None) -> Tensor:
        ctx.size, ctx.has_bias = size, bias is not None
        device = x.device.type
        autocast = torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device)  # meta has none
        ctx.conv_dtype = torch.get_autocast_dtype(device) if autocast else None
        ctx.groups = [slice(c, c + group) for c in range(0, x.shape[1], group)] if group else [slice(None)]
        ctx.save_for_backward(x, weight)
        pad = weight.shape[-1] // 2
        if len(ctx.groups) == 1:
            return F.conv2d(_resize(x, size), weight, bias, padding=pad)
        out = None
        for g in ctx.groups:
            part = F.conv2d(_resize(x[:, g], size), weight[:, g], padding=pad)
            out = part if out is None else out.add_(part)
        return out if bias is None else out.add_(bias.view(1, -1, 1, 1))

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, None, Tensor, Tensor | None, None]:
        x, weight_param = ctx.saved_tensors
        weight = _cast(weight_param, ctx.conv_dtype)
        grad_x, grad_w, grad_b = torch.empty_like(x), torch.empty_like(weight_param), None
        conv_args = ([1, 1], [weight.shape[-1] // 2] * 2, [1, 1], False, [0, 0], 1)
        for i, g in enumerate(ctx.groups):
            up = _cast(_resize(x[:, g], ctx.size), ctx.conv_dtype)
            want_bias = ctx.has_bias and i == 0
            _, grad_w[:, g], gb = torch.ops.aten.convolution_backward(
                grad_out, up, weight[:, g], [weight.shape[0]] if want_bias else None, *conv_args, [False, True, want_bias])
            grad_b = gb.to(weight_param.dtype) if want_bias else grad_b
            # The input gradient needs only the weights: free the map first. Its stand-in is never
            # written (an expanded tensor would be made contiguous, i.e. materialised, by oneDNN).
            shape, dtype, layout = up.shape, up.dtype, _layout(up)
            del up
            stand_in = torch.empty(shape, dtype=dtype, device=x.device, memory_format=layout)
            grad_up = torch.ops.aten.convolution_backward(
                grad_out, stand_in, weight[:, g], None, *conv_args, [True, False, False])[0].to(x.dtype)
            grad_x[:, g] = torch.ops.aten.upsample_bilinear2d_backward(
                grad_up, list(ctx.size), list(shape[:2]) + list(x.shape[2:]), False, None, None)
        return grad_x, None, grad_w, grad_b, None


def _cast(x: Tensor, dtype: torch.dtype | None) -> Tensor:
    return x if dtype is None else x.to(dtype)


def _layout(x: Tensor) -> torch.memory_format:
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


def _pool(x: Tensor, factor: int) -> Tensor:
    return F.max_pool2d(x, factor, factor, ceil_mode=True)


def _resize(x: Tensor, size: torch.Size) -> Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


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
        decoder: "exact" (the paper: deeper features are up-sampled, then convolved) or
            "efficient" (not in the paper: the branch conv runs on the deeper feature at its own
            resolution and its 64-channel output is up-sampled, then normalised). Same
            parameters; at the paper's widths 109.0 instead of 197.7 GMACs per 256 x 256 image
            (``unetfamily bench``); a different model, so compare its accuracy
            (``unetfamily compare --models unet_3plus,unet_3plus_efficient``).
        encoder: a pretrained-architecture backbone giving e_0..e_D (``channels`` then unused;
            :class:`~unetfamily.models.encoders.pyramid.PyramidEncoder`).
        encoder_depth: the backbone's stride-2 steps used, 1..5 (with ``encoder``).

    Modules: ``encoder`` (:class:`~unetfamily.models.encoder.UNetEncoder`, stage i gives e_i),
    ``decoder[i]`` (:class:`FullScaleDecoderLevel`), ``heads["head_i"]``, ``classifier`` (CGM).
    The decoder is sized from ``feature_info`` (the encoder's levels: ``num_chs``,
    ``reduction``, ``module``): widths for the branches, strides for the pooling factors.

    Shapes: (N, in_channels, H, W) -> logits (N, num_classes, H, W); with deep supervision a list
    of D + 1 such tensors, final first; with ``cgm`` a tuple (that output, cls logits (N, 2)).
    """

    renamed_keys = ((r"^encoder\.(\d+)\.", r"encoder.stages.\1."),)  # 0.1.0: encoder.{i}
    registry_name = "unet_3plus"

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        channels: Sequence[int] = (64, 128, 256, 512, 1024),
        cat_channels: int = 64,
        norm: Norm = "batch",
        deep_supervision: bool = False,
        cgm: bool = False,
        decoder: Decoder = "exact",
        encoder: str | None = None,
        encoder_depth: int = 5,
    ) -> None:
        super().__init__()
        check_choice("decoder", decoder, get_args(Decoder))
        if cgm and num_classes != 1:
            raise ConfigError(
                f"cgm=True needs a binary model (num_classes=1), got num_classes={num_classes}: the "
                f"classification-guided module is one image-level switch for all classes"
            )
        self.encoder = make_encoder(in_channels, channels, norm, encoder, encoder_depth, min_depth=1)
        self.feature_info = self.encoder.feature_info.prefixed("encoder")
        widths, reductions = self.feature_info.channels(), self.feature_info.reductions()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.depth = depth = len(widths) - 1
        self.size_multiple = reductions[-1]
        self.deep_supervision, self.cgm = deep_supervision, cgm
        up_channels = cat_channels * (depth + 1)
        self.decoder = nn.ModuleList()
        for i in range(depth):
            sources = [widths[k] if k <= i or k == depth else up_channels for k in range(depth + 1)]
            self.decoder.append(FullScaleDecoderLevel(i, sources, reductions, cat_channels, norm, decoder))
        head_levels = range(depth + 1) if deep_supervision else [0]
        self.heads = nn.ModuleDict(
            {
                f"head_{i}": nn.Conv2d(widths[depth] if i == depth else up_channels, num_classes, 3, padding=1)
                for i in head_levels
            }
        )
        if cgm:
            self.classifier = nn.Sequential(
                nn.Dropout(0.5), nn.Conv2d(widths[depth], 2, 1), nn.AdaptiveMaxPool2d(1), nn.Flatten(1)
            )

    def forward_padded(self, x: Tensor) -> ModelOutput:
        enc = self.encoder(x)
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
    """Alias of :func:`unet_3plus`, named like the other authors' presets: UNet 3+ as in its
    authors' code (26.97M parameters; 26.99M with deep supervision) is this package's default."""
    return unet_3plus(**kwargs)


@register_model
def unet_3plus_efficient(**kwargs: object) -> UNet3Plus:
    """UNet 3+ with the "efficient" decoder (deeper features convolved before up-sampling), widths 64..1024."""
    return UNet3Plus(**{"decoder": "efficient", **kwargs})
