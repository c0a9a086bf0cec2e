"""ConvNeXt-Tiny as an encoder backbone, with the parameter names of timm's ``convnext_tiny``.

Paper: "A ConvNet for the 2020s", Liu, Mao, Wu, Feichtenhofer, Darrell, Xie, CVPR 2022,
https://arxiv.org/abs/2201.03545

Stem: a 4x4 convolution of stride 4 (non-overlapping patches) and a LayerNorm over channels.
Four stages of 3, 3, 9, 3 blocks, 96, 192, 384, 768 wide; stages 1..3 start with a LayerNorm
and a 2x2 convolution of stride 2. A block is a 7x7 depthwise convolution, then, on the
channels-last (N, H, W, C) view: LayerNorm (eps 1e-6), Linear to 4C, GELU (exact, erf),
Linear back to C, times the learned per-channel layer scale ``gamma``; added to the block's
input. The per-position layers run as ``nn.Linear`` on the channels-last view (timm's choice:
the same arithmetic as 1x1 convolutions, and ``channels_last`` tensors need no copies).
Stochastic depth is off unless ``drop_path_rate`` is given (the reference models use it only in
training). The features are the four stage outputs, at strides 4, 8, 16, 32.

Weights: torchvision's ``convnext_tiny`` (``features.*``, layer scales of shape (C, 1, 1)) and
timm's (the names used here) are read by :func:`convert_state_dict`.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unetfamily.errors import ConfigError
from unetfamily.models.encoder import FeatureInfo
from unetfamily.models.encoders.base import Backbone, EncoderSpec, check_depth, register_encoder

__all__ = ["ConvNeXt", "ConvNeXtBlock", "LayerNorm2d", "convert_state_dict"]

NAME = "convnext_tiny"
DEPTHS = (3, 3, 9, 3)
DIMS = (96, 192, 384, 768)
REDUCTIONS = (4, 8, 16, 32)
LN_EPS = 1e-6
#: Parts of the reference models never built here: timm's classifier head (torchvision's is renamed into it).
_HEAD = ("head.",)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an (N, C, H, W) tensor, computed on its (N, H, W, C) view."""

    def forward(self, x: Tensor) -> Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Mlp(nn.Sequential):
    """Linear(C -> 4C), GELU, Linear(4C -> C) on channels-last tensors; timm's ``fc1`` / ``fc2`` names."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)


class ConvNeXtBlock(nn.Module):
    """x + drop_path(gamma * MLP(LayerNorm(depthwise7x7(x)))): (N, C, H, W) -> (N, C, H, W)."""

    def __init__(self, dim: int, drop_path: float = 0.0, layer_scale: float = 1e-6) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, 4 * dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))
        self.drop_path = drop_path

    def forward(self, x: Tensor) -> Tensor:
        y = self.mlp(self.norm(self.conv_dw(x).permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        y = y * self.gamma.view(1, -1, 1, 1)
        if self.drop_path > 0 and self.training:  # stochastic depth: drop the branch per sample
            keep = 1 - self.drop_path
            y = y * x.new_empty((x.shape[0], 1, 1, 1)).bernoulli_(keep).div_(keep)
        return x + y


class ConvNeXtStage(nn.Module):
    """Optional ``downsample`` (LayerNorm2d + 2x2 conv of stride 2), then ``blocks``."""

    def __init__(self, in_dim: int, dim: int, depth: int, drop_paths: list[float]) -> None:
        super().__init__()
        if in_dim != dim:
            self.downsample = nn.Sequential(LayerNorm2d(in_dim, eps=LN_EPS), nn.Conv2d(in_dim, dim, 2, stride=2))
        else:
            self.downsample = nn.Identity()
        self.blocks = nn.Sequential(*(ConvNeXtBlock(dim, drop_paths[i]) for i in range(depth)))

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.downsample(x))


class ConvNeXt(Backbone):
    """ConvNeXt-Tiny trunk: (N, in_channels, H, W) -> stage outputs at strides 4, 8, 16, 32.

    Args:
        in_channels: image channels (the stem's filters are adapted on load when not 3).
        depth: stride-2 steps the decoder uses, 1..5; the stages of stride <= 2**depth are built
            (depth 1: none, not even the stem; depth 2: stage 0; ... depth 5: all four).
        drop_path_rate: stochastic depth of the last block (linear in the block index from 0, as
            in timm and torchvision; 0 by default).

    Modules: ``stem`` (Conv 4x4/4, LayerNorm2d) and ``stages[s]`` (``downsample`` for s >= 1,
    ``blocks[i]``). ``feature_info`` names ``stages.s``, 96/192/384/768 channels.
    """

    first_conv = "stem.0.weight"

    def __init__(self, in_channels: int = 3, depth: int = 5, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        depth = check_depth(NAME, depth)
        kept = sum(r <= 2**depth for r in REDUCTIONS)
        rates = torch.linspace(0, drop_path_rate, sum(DEPTHS), device="cpu").tolist()  # numbers, also under a meta device
        starts = [sum(DEPTHS[:s]) for s in range(len(DEPTHS))]
        if kept:
            self.stem = nn.Sequential(nn.Conv2d(in_channels, DIMS[0], 4, stride=4), LayerNorm2d(DIMS[0], eps=LN_EPS))
        self.stages = nn.ModuleList(
            ConvNeXtStage(DIMS[max(s - 1, 0)], DIMS[s], DEPTHS[s], rates[starts[s]: starts[s] + DEPTHS[s]])
            for s in range(kept)
        )
        self.feature_info = FeatureInfo(
            {"num_chs": DIMS[s], "reduction": REDUCTIONS[s], "module": f"stages.{s}"} for s in range(kept)
        )
        self.skipped_prefixes = _HEAD + (() if kept else ("stem.",)) + tuple(
            f"stages.{s}." for s in range(kept, len(DEPTHS)))
        self._init_weights()

    def _init_weights(self) -> None:
        """timm's initialisation for training from scratch: truncated normal (std 0.02), zero biases."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def features(self, x: Tensor, n: int) -> list[Tensor]:
        """The first ``n`` stage outputs (see :meth:`Backbone.forward`)."""
        x = self.stem(x)
        features = []
        for stage in self.stages[:n]:
            x = stage(x)
            features.append(x)
        return features


def _torchvision_key(key: str) -> str | None:
    """The timm name of a torchvision ``convnext_tiny`` key; None for a key outside that layout."""
    if m := re.fullmatch(r"features\.0\.([01])\.(weight|bias)", key):
        return f"stem.{m[1]}.{m[2]}"
    if m := re.fullmatch(r"features\.([246])\.([01])\.(weight|bias)", key):
        return f"stages.{int(m[1]) // 2}.downsample.{m[2]}.{m[3]}"
    if m := re.fullmatch(r"features\.([1357])\.(\d+)\.(layer_scale|block\.([0235])\.(weight|bias))", key):
        block = f"stages.{int(m[1]) // 2}.blocks.{m[2]}"
        if m[3] == "layer_scale":
            return f"{block}.gamma"
        part = {"0": "conv_dw", "2": "norm", "3": "mlp.fc1", "5": "mlp.fc2"}[m[4]]
        return f"{block}.{part}.{m[5]}"
    if m := re.fullmatch(r"classifier\.([02])\.(weight|bias)", key):  # head: LayerNorm2d, Linear
        return f"head.{'norm' if m[1] == '0' else 'fc'}.{m[2]}"
    return None


_OWN_KEY = re.compile(r"(stem\.[01]|stages\.[0-3]\.(downsample\.[01]|blocks\.\d+\.(conv_dw|norm|mlp\.fc[12])))"
                      r"\.(weight|bias)|stages\.[0-3]\.blocks\.\d+\.gamma|head\.(norm|fc)\.(weight|bias)")


def convert_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``state`` in :class:`ConvNeXt`'s names, from torchvision's ``convnext_tiny`` layout or timm's (= ours).

    The layout is the one more keys belong to. torchvision's layer scales (C, 1, 1) become
    ``gamma`` (C,); both classifier heads end under ``head.`` (a skipped prefix). Keys of
    neither layout are kept unchanged, so loading reports them as unexpected. A state with no
    key of either layout raises a ConfigError.
    """
    torchvision = {k: _torchvision_key(k) for k in state}
    n_torchvision = sum(v is not None for v in torchvision.values())
    n_own = sum(_OWN_KEY.fullmatch(k) is not None for k in state)
    if n_torchvision == n_own == 0:
        shown = ", ".join(list(state)[:4]) + (", ..." if len(state) > 4 else "")
        raise ConfigError(f"encoder {NAME!r}: the weights are in none of the layouts it reads (torchvision's "
                          f"convnext_tiny: features.0.0.weight, ...; timm's convnext_tiny: stem.0.weight, ...); "
                          f"the state's keys start {shown or '(no keys)'}")
    if n_own >= n_torchvision:
        return dict(state)
    out = {}
    for key, value in state.items():
        new = torchvision[key] or key
        out[new] = value.reshape(-1) if new.endswith(".gamma") else value
    return out


SPEC = register_encoder(EncoderSpec(
    name=NAME,
    build=lambda in_channels, depth: ConvNeXt(in_channels, depth),
    convert_state_dict=convert_state_dict,
    reductions=REDUCTIONS,
    reference={"torchvision": "convnext_tiny", "timm": "convnext_tiny"},
    paper="Liu et al., A ConvNet for the 2020s, CVPR 2022, https://arxiv.org/abs/2201.03545",
))
