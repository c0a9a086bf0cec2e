"""UNet++: nested U-Nets with dense skip pathways, deep supervision and pruning.

Papers: "UNet++: A Nested U-Net Architecture for Medical Image Segmentation", Zhou, Siddiquee,
Tajbakhsh, Liang, DLMIA 2018, https://arxiv.org/abs/1807.10165 ; "UNet++: Redesigning Skip
Connections to Exploit Multiscale Features in Image Segmentation", IEEE TMI 2019,
https://arxiv.org/abs/1912.05074

Node X^{i,j} lives at down-sampling level i and position j along the skip row. Column j = 0 is
the U-Net encoder shared with the other families (``encoder.stages[i]`` is X^{i,0}); the nested
nodes j >= 1 are ``nodes["x_i_j"]``:

    X^{i,0} = H(pool(X^{i-1,0}))
    X^{i,j} = H([X^{i,0}, ..., X^{i,j-1}, Up(X^{i+1,j-1})])      for j > 0

with H two conv3x3 (+norm) + ReLU and Up a learned x2 up-sampling (``ups["up_i_j"]``). So the
U-Nets of depth 1..D are nested in one network; the head on X^{0,L} (``heads["head_L"]``) is the
output of the depth-L sub-network.

Deep supervision (``deep_supervision=True``) puts a 1x1 head on each X^{0,1..D} and the model
returns all of them, final (L = D) first, then L = D-1, ..., 1, each to be trained with its own
loss (the authors' PyTorch ports average them before the loss, which makes per-head losses
impossible). Inference modes (:meth:`predict`): "accurate" averages the heads' logits,
"fast" takes one head. Pruning: :meth:`forward_level` computes only the nodes with i + j <= L
and returns exactly head L of the full model; :meth:`pruned` returns a standalone depth-L
network holding only those weights (smaller to ship and faster).

Departures from the papers: 'same' convolutions; inputs whose H, W are not multiples of 2**D are
zero-padded bottom/right and cropped back; optional normalisation (the DLMIA paper has none,
its TMI version and most ports use BatchNorm); no dropout inside nodes.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from unetfamily.errors import ConfigError
from unetfamily.models._blocks import DoubleConv, Norm, SegmentationModel, Upsample, check_choice, make_upsample
from unetfamily.models._memory import cat_channels, checkpoint_block, rerun_block
from unetfamily.models._registry import register_model
from unetfamily.models.encoders.pyramid import make_encoder
from unetfamily.models.input_norm import attach_input_norm

__all__ = ["UNetPlusPlus"]


#: Under ``memory_saving="recompute"``, inputs of at least this many pixels (H x W) have the nested nodes of the
#: :data:`RERUN_ROWS` finest rows re-run in backward (:func:`~unetfamily.models._memory.rerun_block`) instead
#: of their convolution outputs kept. Fitted by ``benchmarks/speed.py`` (docs/speed.md): at 256 x 256 the two
#: full- and half-resolution rows hold most of the stored activations and re-running their convolutions
#: (a few % of the step's FLOPs, 64-128 channels) cuts the peak by a quarter; at 128 x 128 the peak is the
#: weights' and gradients' and the re-run only costs time.
RERUN_FROM_PIXELS = 256 * 256
RERUN_ROWS = 2


def rerun_rows(input_hw: tuple[int, ...]) -> int:
    """How many of the finest rows of nested nodes "recompute" re-runs for (H, W) ``input_hw`` inputs."""
    return RERUN_ROWS if input_hw[0] * input_hw[1] >= RERUN_FROM_PIXELS else 0


class UNetPlusPlus(SegmentationModel):
    """UNet++ with nodes X^{i,j}, optional deep supervision, and inference-time pruning.

    Args:
        in_channels: image channels.
        num_classes: output channels per head.
        channels: width per level, shallowest first; depth D = len - 1 (1..6).
        norm: normalisation in encoder nodes X^{i,0}.
        decoder_norm: normalisation in nested nodes X^{i,j>0}; ``None`` = same as ``norm``.
        upsample: "transpose" or "bilinear" (+1x1 conv).
        up_kernel_size: transposed-conv kernel, 2 (paper) or 4.
        deep_supervision: build a 1x1 head on every X^{0,j}, j = 1..D, and return all outputs.
        encoder: a pretrained-architecture backbone for column j = 0 (``channels`` then unused;
            :class:`~unetfamily.models.encoders.pyramid.PyramidEncoder`).
        encoder_depth: the backbone's stride-2 steps used, 1..5 (with ``encoder``).

    Modules: ``encoder`` computes X^{0,0}..X^{D,0} (:class:`~unetfamily.models.encoder.UNetEncoder`,
    stage i = X^{i,0}); ``nodes["x_i_j"]`` are the nested nodes (j >= 1), ``ups["up_i_j"]`` their
    up-samplings, ``heads["head_L"]`` the heads. The nested nodes are sized from ``feature_info``
    (the encoder's levels: ``num_chs``, ``reduction``, ``module``).

    Shapes: (N, in_channels, H, W) -> logits (N, num_classes, H, W), or with deep supervision a
    list of D such tensors ordered [head D, head D-1, ..., head 1].
    """

    renamed_keys = ((r"^nodes\.x_(\d+)_0\.", r"encoder.stages.\1."),)  # 0.1.0: X^{i,0} in nodes
    registry_name = "unet_plusplus"

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        channels: Sequence[int] = (32, 64, 128, 256, 512),
        norm: Norm = "batch",
        decoder_norm: Norm | None = None,
        upsample: Upsample = "transpose",
        up_kernel_size: int = 2,
        deep_supervision: bool = False,
        encoder: str | None = None,
        encoder_depth: int = 5,
    ) -> None:
        super().__init__()
        decoder_norm = norm if decoder_norm is None else decoder_norm
        self.encoder = make_encoder(in_channels, channels, norm, encoder, encoder_depth, min_depth=1)
        self.feature_info = self.encoder.feature_info.prefixed("encoder")
        widths = self.feature_info.channels()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.depth = depth = len(widths) - 1
        self.size_multiple = self.feature_info.reductions()[-1]
        self.deep_supervision = deep_supervision
        self._hparams = dict(
            in_channels=in_channels, num_classes=num_classes, norm=norm, decoder_norm=decoder_norm,
            upsample=upsample, up_kernel_size=up_kernel_size, encoder=encoder,
        )
        self.nodes = nn.ModuleDict()
        self.ups = nn.ModuleDict()
        for j in range(1, depth + 1):
            for i in range(depth + 1 - j):
                self.ups[f"up_{i}_{j}"] = make_upsample(widths[i + 1], widths[i], upsample, up_kernel_size)
                self.nodes[f"x_{i}_{j}"] = DoubleConv((j + 1) * widths[i], widths[i], decoder_norm)
        levels = range(1, depth + 1) if deep_supervision else [depth]
        self.heads = nn.ModuleDict({f"head_{j}": nn.Conv2d(widths[0], num_classes, 1) for j in levels})

    def _nodes(self, x: Tensor, level: int) -> dict[tuple[int, int], Tensor]:
        """Features X^{i,j} for all i + j <= level, computed column by column."""
        feats = {(i, 0): f for i, f in enumerate(self.encoder(x, depth=level))}
        rerun = rerun_rows(tuple(x.shape[-2:]))
        for j in range(1, level + 1):
            for i in range(level + 1 - j):
                node = functools.partial(self._nested_node, i, j)
                block = rerun_block if i < rerun else checkpoint_block
                feats[i, j] = block(node, feats[i + 1, j - 1], *(feats[i, k] for k in range(j)))
        return feats

    def memory_saving_note(self, input_hw: tuple[int, int]) -> str | None:
        rows = rerun_rows(input_hw)
        if self.memory_saving != "recompute" or not rows:  # "checkpoint" re-runs every node anyway
            return None
        return (f"{input_hw[0]}x{input_hw[1]} inputs: UNet++ also re-runs the nested nodes of its {rows} finest "
                f"rows in backward (their maps are the largest it keeps; bit-identical, docs/speed.md)")

    def _nested_node(self, i: int, j: int, deeper: Tensor, *row: Tensor) -> Tensor:
        """X^{i,j} = H([X^{i,0}, ..., X^{i,j-1}, Up(X^{i+1,j-1})]); the concatenation is recomputable."""
        return self.nodes[f"x_{i}_{j}"](cat_channels([*row, self.ups[f"up_{i}_{j}"](deeper)]))

    def forward_padded(self, x: Tensor) -> Tensor | list[Tensor]:
        feats = self._nodes(x, self.depth)
        if not self.deep_supervision:
            return self.heads[f"head_{self.depth}"](feats[0, self.depth])
        return [self.heads[f"head_{j}"](feats[0, j]) for j in range(self.depth, 0, -1)]

    def _check_level(self, level: int) -> None:
        if not 1 <= level <= self.depth:
            raise ConfigError(f"level={level} must be between 1 and the model's depth {self.depth}")
        if level < self.depth and not self.deep_supervision:
            raise ConfigError(
                f"level={level} needs the head on X^(0,{level}), which exists only with "
                f"deep_supervision=True; train with deep supervision to prune"
            )

    def _forward_level_padded(self, x: Tensor, level: int) -> Tensor:
        return self.heads[f"head_{level}"](self._nodes(x, level)[0, level])

    def forward_level(self, x: Tensor, level: int) -> Tensor:
        """Head-``level`` logits (N, num_classes, H, W), computing only nodes with i + j <= level."""
        self._check_level(level)
        return self.run_padded(self._forward_level_padded, x, level)

    def predict(self, x: Tensor, mode: Literal["accurate", "fast"] = "accurate", level: int | None = None) -> Tensor:
        """Inference logits (N, num_classes, H, W).

        "accurate": mean of all deep-supervision heads' logits (the final head alone without
        deep supervision). "fast": the single head at ``level`` (default: depth), pruned.
        """
        check_choice("mode", mode, ("accurate", "fast"))
        if mode == "fast":
            return self.forward_level(x, self.depth if level is None else level)
        out = self(x)
        return torch.stack(out).mean(dim=0) if isinstance(out, list) else out

    def pruned(self, level: int) -> "UNetPlusPlus":
        """A standalone depth-``level`` UNet++ holding only the weights that head ``level`` uses.

        Its output equals ``forward_level(x, level)`` (it keeps this model's padding multiple).
        Every module of the small network has the same name in this one (encoder stages and
        nodes with i + j <= level, head ``level``), so its weights are looked up by name.
        """
        self._check_level(level)
        widths = self.feature_info.channels()[: level + 1]
        depth = {"encoder_depth": level} if self._hparams["encoder"] else {}  # a backbone keeps its stages up to level
        small = UNetPlusPlus(**{**self._hparams, "channels": widths, **depth, "deep_supervision": False})
        small.size_multiple = self.size_multiple
        norm = getattr(self, "input_norm", None)
        if norm is not None:  # the input normalisation travels with the weights
            attach_input_norm(small, norm.spec())
        full = self.state_dict()
        small.load_state_dict({k: full[k] for k in small.state_dict()})
        return small.train(self.training)


@register_model
def unet_plusplus(**kwargs: object) -> UNetPlusPlus:
    """UNet++, depth 4, widths 32..512 (the paper's), BatchNorm, 2x2 up-convolutions."""
    return UNetPlusPlus(**kwargs)


@register_model
def unet_plusplus_huang2020(**kwargs: object) -> UNetPlusPlus:
    """The UNet++ of the UNet3+ paper's comparison, as in its authors' code (47.18M parameters):
    widths 64..1024, conv-BN-ReLU encoder, conv-ReLU nested nodes, 4x4 transposed convs."""
    return UNetPlusPlus(**{"channels": (64, 128, 256, 512, 1024), "norm": "batch", "decoder_norm": "none", "up_kernel_size": 4, **kwargs})


@register_model
def unet_plusplus_zhou2018(**kwargs: object) -> UNetPlusPlus:
    """UNet++ as in its authors' Keras code (9,041,601 parameters; 9,041,700 with deep
    supervision): widths 32..512, 1 input channel, no normalisation, 2x2 transposed convs."""
    return UNetPlusPlus(**{"in_channels": 1, "channels": (32, 64, 128, 256, 512), "norm": "none", **kwargs})
