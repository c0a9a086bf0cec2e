"""ResNet-18, -34 and -50 (He et al., CVPR 2016) as encoder backbones, in plain torch.

The trunk is torchvision's ``resnet18/34/50`` and timm's models of the same names (ResNet v1.5:
in a bottleneck the stride sits on the 3x3 convolution), without the pooling and the ``fc``
classifier. Both libraries name the parameters alike, and so does this module: ``conv1``,
``bn1``, ``layer1`` .. ``layer4`` of blocks ``layerK.i.conv1/bn1/conv2/bn2[/conv3/bn3]`` with a
``downsample.0`` (1x1 conv) / ``downsample.1`` (BN) shortcut where the shape changes.

Features, shallowest first: relu(bn1(conv1(x))) at stride 2 (64 channels), then ``layer1``
(after the 3x3 stride-2 max-pool) at 4, ``layer2`` at 8, ``layer3`` at 16, ``layer4`` at 32.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

import torch.nn.functional as F
from torch import Tensor, nn

from unetfamily.models.encoder import FeatureInfo
from unetfamily.models.encoders._layout import unknown_layout
from unetfamily.models.encoders.base import Backbone, EncoderSpec, check_depth, register_encoder

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "RESNET_CONFIGS", "convert_resnet_state"]

PAPER = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016, https://arxiv.org/abs/1512.03385"
STEM_WIDTH = 64
#: Bottleneck (inner) width of layer1..layer4; a block outputs width * expansion channels.
STAGE_WIDTHS = (64, 128, 256, 512)
REDUCTIONS = (2, 4, 8, 16, 32)
#: Keys of the reference classifier, dropped on load.
HEAD_PREFIXES = ("fc.",)
#: Keys that only a ResNet layout (torchvision's = timm's = this module's) has.
_OWN_PREFIXES = ("conv1.", "layer1.", "layer2.", "layer3.", "layer4.")


def _shortcut(in_chs: int, out_chs: int, stride: int) -> nn.Sequential | None:
    """The projection shortcut (1x1 conv with ``stride`` + BN) where the block changes shape, else None."""
    if stride == 1 and in_chs == out_chs:
        return None
    return nn.Sequential(nn.Conv2d(in_chs, out_chs, 1, stride, bias=False), nn.BatchNorm2d(out_chs))


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN with the shortcut added before the last ReLU (ResNet-18/34).

    Shapes: (N, in_chs, H, W) -> (N, width, H / stride, W / stride).
    """

    expansion = 1

    def __init__(self, in_chs: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = _shortcut(in_chs, width, stride)

    def forward(self, x: Tensor) -> Tensor:
        """(N, in_chs, H, W) -> (N, width, H / stride, W / stride)."""
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride: v1.5), 1x1 expand by 4, each with BN; shortcut before the last ReLU.

    Shapes: (N, in_chs, H, W) -> (N, 4 * width, H / stride, W / stride).
    """

    expansion = 4

    def __init__(self, in_chs: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_chs = width * self.expansion
        self.conv1 = nn.Conv2d(in_chs, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_chs, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chs)
        self.downsample = _shortcut(in_chs, out_chs, stride)

    def forward(self, x: Tensor) -> Tensor:
        """(N, in_chs, H, W) -> (N, 4 * width, H / stride, W / stride)."""
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


#: name -> (block type, blocks in layer1..layer4).
RESNET_CONFIGS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}


class ResNet(Backbone):
    """The ResNet trunk down to stride 2**depth: (N, in_channels, H, W) -> [(N, C_k, H / r_k, W / r_k)].

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: blocks in layer1..layer4.
        in_channels: image channels (``conv1`` reads them).
        depth: 1..5; keeps the stem (stride 2) and ``layer1`` .. ``layer{depth-1}``.
        name: the encoder's name, for messages.

    ``feature_info``: ``act1`` (64 channels, r 2), ``layer1`` (r 4) .. ``layer4`` (r 32), as many as
    ``depth``; ``layer1`` .. ``layer4`` give 64, 128, 256, 512 channels times the block's expansion.
    H and W need not be multiples of 32 (convolutions round up, as in torchvision).
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: Sequence[int], in_channels: int = 3,
                 depth: int = 5, *, name: str = "resnet") -> None:
        super().__init__()
        depth = check_depth(name, depth)
        self.conv1 = nn.Conv2d(in_channels, STEM_WIDTH, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM_WIDTH)
        self.act1 = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        info = [{"num_chs": STEM_WIDTH, "reduction": REDUCTIONS[0], "module": "act1"}]
        in_chs = STEM_WIDTH
        for k in range(1, depth):
            width, stride = STAGE_WIDTHS[k - 1], 1 if k == 1 else 2
            blocks = [block(in_chs if i == 0 else width * block.expansion, width, stride if i == 0 else 1)
                      for i in range(layers[k - 1])]
            setattr(self, f"layer{k}", nn.Sequential(*blocks))
            in_chs = width * block.expansion
            info.append({"num_chs": in_chs, "reduction": REDUCTIONS[k], "module": f"layer{k}"})
        self.feature_info = FeatureInfo(info)
        self.first_conv = "conv1.weight"
        self.skipped_prefixes = HEAD_PREFIXES + tuple(f"layer{k}." for k in range(depth, 5))

    def features(self, x: Tensor, n: int) -> list[Tensor]:
        """The first ``n`` stage features (see :meth:`Backbone.forward`)."""
        features: list[Tensor] = []
        x = self.act1(self.bn1(self.conv1(x)))
        features.append(x)
        for k in range(1, n):
            x = getattr(self, f"layer{k}")(self.maxpool(x) if k == 1 else x)
            features.append(x)
        return features


def convert_resnet_state(name: str, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``state`` in :class:`ResNet`'s names: torchvision's, timm's and this module's layouts are all the same.

    ``fc.*`` (the classifier) is kept and dropped on load (``skipped_prefixes``); every other key
    is kept too, so an unknown one is reported. A state without any ``conv1.*``/``layerK.*`` key is
    refused.
    """
    if not any(k.startswith(_OWN_PREFIXES) for k in state):
        raise unknown_layout(name, f"torchvision's and timm's {name} layout (conv1.*, bn1.*, layer1.* .. "
                                   f"layer4.*, fc.*), which is also its own", state)
    return dict(state)


def _build(name: str, in_channels: int, depth: int) -> ResNet:
    block, layers = RESNET_CONFIGS[name]
    return ResNet(block, layers, in_channels, depth, name=name)


for _name in RESNET_CONFIGS:
    register_encoder(EncoderSpec(
        name=_name, build=partial(_build, _name), convert_state_dict=partial(convert_resnet_state, _name),
        reductions=REDUCTIONS, reference={"torchvision": _name, "timm": _name}, paper=PAPER))
