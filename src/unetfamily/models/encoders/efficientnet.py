"""EfficientNet-B0 (Tan & Le, ICML 2019) as an encoder backbone, in plain torch and timm's parameter names.

The trunk of torchvision's ``efficientnet_b0`` and timm's ``efficientnet_b0`` (not the ``tf_``
variant: convolutions pad symmetrically by k // 2; BatchNorm eps 1e-5), without the 1x1 head
convolution and the classifier. A 3x3 stride-2 stem (``conv_stem``, ``bn1``, SiLU) feeds seven
stages ``blocks.0`` .. ``blocks.6``:

- ``blocks.0``: one depthwise-separable block: depthwise kxk conv + BN + SiLU (``conv_dw``,
  ``bn1``), squeeze-excitation (``se``), 1x1 projection + BN (``conv_pw``, ``bn2``);
- the others: inverted residuals (MBConv): 1x1 expansion by 6 + BN + SiLU (``conv_pw``,
  ``bn1``), depthwise kxk + BN + SiLU (``conv_dw``, ``bn2``), ``se``, 1x1 projection + BN
  (``conv_pwl``, ``bn3``).

Squeeze-excitation: spatial mean, 1x1 conv to a quarter of the *block input's* channels
(``se.conv_reduce``), SiLU, 1x1 conv back (``se.conv_expand``), sigmoid, times the input. A block
adds its input when its stride is 1 and its width unchanged. Stochastic depth (torchvision trains
with it) is not applied: in eval mode both references ignore it.

Features: ``blocks.0`` (stride 2, 16 ch), ``blocks.1`` (4, 24), ``blocks.2`` (8, 40), ``blocks.4``
(16, 112), ``blocks.6`` (32, 320).
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch.nn.functional as F
from torch import Tensor, nn

from unetfamily.models.encoder import FeatureInfo
from unetfamily.models.encoders._layout import rename_state, unknown_layout
from unetfamily.models.encoders.base import Backbone, EncoderSpec, check_depth, register_encoder

__all__ = ["SqueezeExcite", "DepthwiseSeparable", "InvertedResidual", "EfficientNet", "B0_STAGES",
           "convert_efficientnet_state"]

PAPER = "Tan & Le, EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks, ICML 2019, " \
        "https://arxiv.org/abs/1905.11946"
NAME = "efficientnet_b0"
BN_EPS = 1e-5
STEM_WIDTH = 32
#: B0's stages: (block kind, repeats, kernel, stride of the first block, expansion, output channels).
B0_STAGES = (
    ("ds", 1, 3, 1, 1, 16),
    ("ir", 2, 3, 2, 6, 24),
    ("ir", 2, 5, 2, 6, 40),
    ("ir", 3, 3, 2, 6, 80),
    ("ir", 3, 5, 1, 6, 112),
    ("ir", 4, 5, 2, 6, 192),
    ("ir", 1, 3, 1, 6, 320),
)
#: Stages whose outputs are the features (one per stride 2 .. 32).
FEATURE_STAGES = (0, 1, 2, 4, 6)
#: Keys of timm's head (1x1 conv to 1280, its BN, the classifier): torchvision's head is renamed to them.
HEAD_PREFIXES = ("conv_head.", "bn2.", "classifier.")
_SE_DIVISOR = 4


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


def _conv(in_chs: int, out_chs: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """A bias-free conv padded symmetrically by kernel // 2 (torchvision's and timm's non-``tf_`` padding)."""
    return nn.Conv2d(in_chs, out_chs, kernel, stride, kernel // 2, groups=groups, bias=False)


class SqueezeExcite(nn.Module):
    """x * sigmoid(conv_expand(silu(conv_reduce(mean_hw(x))))): (N, C, H, W) -> (N, C, H, W)."""

    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, squeezed, 1)
        self.conv_expand = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C, H, W), each channel scaled by its gate in (0, 1)."""
        gate = self.conv_expand(F.silu(self.conv_reduce(x.mean((2, 3), keepdim=True))))
        return x * gate.sigmoid()


class DepthwiseSeparable(nn.Module):
    """Depthwise kxk + BN + SiLU, SE, 1x1 projection + BN: (N, in_chs, H, W) -> (N, out_chs, H / s, W / s)."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.conv_dw = _conv(in_chs, in_chs, kernel, stride, groups=in_chs)
        self.bn1 = _bn(in_chs)
        self.se = SqueezeExcite(in_chs, max(1, in_chs // _SE_DIVISOR))
        self.conv_pw = _conv(in_chs, out_chs, 1)
        self.bn2 = _bn(out_chs)
        self.has_skip = stride == 1 and in_chs == out_chs

    def forward(self, x: Tensor) -> Tensor:
        """(N, in_chs, H, W) -> (N, out_chs, H / stride, W / stride)."""
        y = self.se(F.silu(self.bn1(self.conv_dw(x))))
        y = self.bn2(self.conv_pw(y))
        return y + x if self.has_skip else y


class InvertedResidual(nn.Module):
    """MBConv: 1x1 expand + BN + SiLU, depthwise kxk + BN + SiLU, SE, 1x1 project + BN (+ input if same shape).

    Shapes: (N, in_chs, H, W) -> (N, out_chs, H / stride, W / stride); the SE squeezes to
    in_chs // 4 channels.
    """

    def __init__(self, in_chs: int, out_chs: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = in_chs * expansion
        self.conv_pw = _conv(in_chs, mid, 1)
        self.bn1 = _bn(mid)
        self.conv_dw = _conv(mid, mid, kernel, stride, groups=mid)
        self.bn2 = _bn(mid)
        self.se = SqueezeExcite(mid, max(1, in_chs // _SE_DIVISOR))
        self.conv_pwl = _conv(mid, out_chs, 1)
        self.bn3 = _bn(out_chs)
        self.has_skip = stride == 1 and in_chs == out_chs

    def forward(self, x: Tensor) -> Tensor:
        """(N, in_chs, H, W) -> (N, out_chs, H / stride, W / stride)."""
        y = F.silu(self.bn1(self.conv_pw(x)))
        y = self.se(F.silu(self.bn2(self.conv_dw(y))))
        y = self.bn3(self.conv_pwl(y))
        return y + x if self.has_skip else y


def _stage(kind: str, repeats: int, kernel: int, stride: int, expansion: int, in_chs: int, out_chs: int
           ) -> nn.Sequential:
    """One stage: ``repeats`` blocks, the first with ``stride`` and ``in_chs`` inputs."""
    blocks: list[nn.Module] = []
    for i in range(repeats):
        c_in, s = (in_chs, stride) if i == 0 else (out_chs, 1)
        blocks.append(DepthwiseSeparable(c_in, out_chs, kernel, s) if kind == "ds"
                      else InvertedResidual(c_in, out_chs, kernel, s, expansion))
    return nn.Sequential(*blocks)


class EfficientNet(Backbone):
    """The EfficientNet-B0 trunk down to stride 2**depth: (N, in_channels, H, W) -> [(N, C_k, H / r_k, W / r_k)].

    Args:
        in_channels: image channels (``conv_stem`` reads them).
        depth: 1..5; keeps the stem and the stages of stride at most 2**depth (depth 1:
            ``blocks.0``; 2: .. ``blocks.1``; 3: .. ``blocks.2``; 4: .. ``blocks.4``; 5: all).
        name: the encoder's name, for messages.

    ``feature_info``: the outputs of ``blocks.0``, ``.1``, ``.2``, ``.4``, ``.6`` (16, 24, 40, 112,
    320 channels at strides 2 .. 32), as many as ``depth``.
    """

    def __init__(self, in_channels: int = 3, depth: int = 5, *, name: str = NAME) -> None:
        super().__init__()
        depth = check_depth(name, depth)
        self.conv_stem = _conv(in_channels, STEM_WIDTH, 3, 2)
        self.bn1 = _bn(STEM_WIDTH)
        stages, info, in_chs, reduction = [], [], STEM_WIDTH, 2
        for s, (kind, repeats, kernel, stride, expansion, out_chs) in enumerate(B0_STAGES):
            reduction *= stride
            if reduction > 2**depth:
                break
            stages.append(_stage(kind, repeats, kernel, stride, expansion, in_chs, out_chs))
            if s in FEATURE_STAGES:
                info.append({"num_chs": out_chs, "reduction": reduction, "module": f"blocks.{s}"})
            in_chs = out_chs
        self.blocks = nn.Sequential(*stages)
        self.feature_info = FeatureInfo(info)
        self.first_conv = "conv_stem.weight"
        self.skipped_prefixes = HEAD_PREFIXES + tuple(f"blocks.{s}." for s in range(len(stages), len(B0_STAGES)))

    def features(self, x: Tensor, n: int) -> list[Tensor]:
        """The first ``n`` stage features (see :meth:`Backbone.forward`)."""
        features: list[Tensor] = []
        x = F.silu(self.bn1(self.conv_stem(x)))
        for s, stage in enumerate(self.blocks):
            x = stage(x)
            if s in FEATURE_STAGES:
                features.append(x)
                if len(features) == n:
                    break
        return features


#: torchvision's per-block module paths (after ``features.{s+1}.{i}.``) -> timm's, by block kind.
_TV_BLOCK = {
    "ds": {"block.0.0": "conv_dw", "block.0.1": "bn1", "block.1.fc1": "se.conv_reduce",
           "block.1.fc2": "se.conv_expand", "block.2.0": "conv_pw", "block.2.1": "bn2"},
    "ir": {"block.0.0": "conv_pw", "block.0.1": "bn1", "block.1.0": "conv_dw", "block.1.1": "bn2",
           "block.2.fc1": "se.conv_reduce", "block.2.fc2": "se.conv_expand", "block.3.0": "conv_pwl",
           "block.3.1": "bn3"},
}
#: torchvision's stem and head modules -> timm's.
_TV_FIXED = {"features.0.0": "conv_stem", "features.0.1": "bn1", f"features.{len(B0_STAGES) + 1}.0": "conv_head",
             f"features.{len(B0_STAGES) + 1}.1": "bn2", "classifier.1": "classifier"}
_TV_BLOCK_KEY = re.compile(r"features\.(\d+)\.(\d+)\.(block\.\d+\.\w+)")
_OWN_PREFIXES = ("conv_stem.", "blocks.")


def _from_torchvision(key: str) -> str:
    """Key ``key`` of torchvision's efficientnet_b0 in timm's names; a key it does not have comes back unchanged."""
    module, _, leaf = key.rpartition(".")
    if module in _TV_FIXED:
        return f"{_TV_FIXED[module]}.{leaf}"
    match = _TV_BLOCK_KEY.fullmatch(module)
    if match and 1 <= int(match[1]) <= len(B0_STAGES):
        stage = int(match[1]) - 1
        part = _TV_BLOCK[B0_STAGES[stage][0]].get(match[3])
        if part is not None:
            return f"blocks.{stage}.{match[2]}.{part}.{leaf}"
    return key


def convert_efficientnet_state(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``state`` in :class:`EfficientNet`'s names, from torchvision's layout or timm's (= this module's).

    torchvision's ``features.0`` (stem), ``features.1..7`` (stages) and ``features.8``/``classifier.1``
    (head) become ``conv_stem``/``bn1``, ``blocks.0..6`` and ``conv_head``/``bn2``/``classifier``
    (dropped on load); timm's keys are already these. Keys in neither layout are kept as they are,
    so that loading reports them. A state with neither ``features.*`` nor ``conv_stem.*``/``blocks.*``
    keys is refused.
    """
    torchvision = sum(k.startswith("features.") for k in state)
    own = sum(k.startswith(_OWN_PREFIXES) for k in state)
    if torchvision == own == 0:
        raise unknown_layout(NAME, "torchvision's efficientnet_b0 layout (features.*, classifier.*) and timm's, "
                                   "which is also its own (conv_stem.*, bn1.*, blocks.*, conv_head.*, bn2.*, "
                                   "classifier.*)", state)
    if torchvision > own:
        return rename_state(state, _from_torchvision, NAME)
    return dict(state)


register_encoder(EncoderSpec(
    name=NAME, build=lambda in_channels, depth: EfficientNet(in_channels, depth),
    convert_state_dict=convert_efficientnet_state, reductions=(2, 4, 8, 16, 32),
    reference={"torchvision": NAME, "timm": NAME}, paper=PAPER))
