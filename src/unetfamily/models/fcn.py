"""FCN-32s, FCN-16s and FCN-8s.

Paper: "Fully Convolutional Networks for Semantic Segmentation", Long, Shelhamer, Darrell,
CVPR 2015, https://arxiv.org/abs/1411.4038

A VGG-16 trunk (5 stages of 2, 2, 3, 3, 3 conv3x3+ReLU, max-pool after each) made fully
convolutional: fc6 = 7x7 conv, fc7 = 1x1 conv (dropout 0.5 after each), then a 1x1 "score"
conv to the classes. Coarse scores are up-sampled by transposed convolutions initialised to
bilinear interpolation and learned, and skips are ADDED (not concatenated):

- FCN-32s: score(fc7) up x32.
- FCN-16s: score(fc7) up x2 + score(pool4), then up x16.
- FCN-8s:  that sum up x2 + score(pool3), then up x8.

Departures from the Caffe original: 'same' padding instead of padding the first conv by 100
and cropping (inputs are zero-padded bottom/right to a multiple of 32 and the logits cropped
back, so every up-sampling is exact); the skip score layers start at zero (as in the paper's
staged training, so FCN-16s/8s start as FCN-32s) and every up-sampling is learnable; ImageNet
weights only from a torchvision VGG-16 file the user gives (:meth:`FCN.load_encoder_weights`,
``create_model(..., encoder_weights=PATH)``; nothing is downloaded), fc6/fc7 cast as
convolutions as in the paper; optional normalisation after each trunk conv; ``channels`` and
``fc_channels`` make the trunk narrow enough to train on a CPU.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from torch import Tensor, nn

from unetfamily.errors import ConfigError
from unetfamily.models._blocks import ConvNormAct, Norm, SegmentationModel, bilinear_kernel, check_channels, check_choice
from unetfamily.models._registry import register_model
from unetfamily.models.encoders.vgg import convert_vgg16
from unetfamily.models.encoders.weights import load_weights

__all__ = ["FCN"]

Variant = Literal["32s", "16s", "8s"]
_VGG16_CONVS = (2, 2, 3, 3, 3)
#: What an FCN must be built with to take torchvision's VGG-16 weights.
_VGG16_CONFIG = {"channels": (64, 128, 256, 512, 512), "fc_channels": 4096, "norm": "none"}


def _bilinear_up(num_classes: int, factor: int) -> nn.ConvTranspose2d:
    up = nn.ConvTranspose2d(num_classes, num_classes, 2 * factor, stride=factor, padding=factor // 2, bias=False)
    up.weight.data.copy_(bilinear_kernel(num_classes, 2 * factor))
    return up


def _score(in_channels: int, num_classes: int, zero_init: bool = False) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, num_classes, 1)
    if zero_init:
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    return conv


class FCN(SegmentationModel):
    """FCN-32s/16s/8s on a VGG-16-style trunk.

    Args:
        in_channels: image channels.
        num_classes: output channels.
        variant: "32s", "16s" or "8s" (which skips are fused).
        channels: the five VGG stage widths (paper: 64, 128, 256, 512, 512).
        fc_channels: width of fc6/fc7 (paper: 4096).
        norm: normalisation after each trunk conv ("none" in the paper).
        dropout: dropout after fc6 and fc7 (paper: 0.5).

    Shapes: (N, in_channels, H, W) -> logits (N, num_classes, H, W) for any H, W.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        variant: Variant = "8s",
        channels: Sequence[int] = (64, 128, 256, 512, 512),
        fc_channels: int = 4096,
        norm: Norm = "none",
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        check_choice("variant", variant, ("32s", "16s", "8s"))
        channels = check_channels(channels, 5, 5)
        self.in_channels, self.num_classes, self.channels, self.variant = in_channels, num_classes, channels, variant
        self.fc_channels, self.trunk_norm = fc_channels, norm
        self.size_multiple = 32
        stages, prev = [], in_channels
        for width, n_convs in zip(channels, _VGG16_CONVS):
            layers = [ConvNormAct(prev if k == 0 else width, width, 3, norm) for k in range(n_convs)]
            stages.append(nn.Sequential(*layers, nn.MaxPool2d(2)))
            prev = width
        self.stages = nn.ModuleList(stages)  # stage s ends with pool{s+1}
        self.fc = nn.Sequential(
            nn.Conv2d(channels[4], fc_channels, 7, padding=3), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Conv2d(fc_channels, fc_channels, 1), nn.ReLU(inplace=True), nn.Dropout(dropout),
        )
        self.score_fr = _score(fc_channels, num_classes)
        if variant in ("16s", "8s"):
            self.score_pool4 = _score(channels[3], num_classes, zero_init=True)
            self.upscore2 = _bilinear_up(num_classes, 2)
        if variant == "8s":
            self.score_pool3 = _score(channels[2], num_classes, zero_init=True)
            self.upscore_pool4 = _bilinear_up(num_classes, 2)
        self.upscore_final = _bilinear_up(num_classes, {"32s": 32, "16s": 16, "8s": 8}[variant])

    def pretrained_name(self) -> str:
        """``fcn32s``, ``fcn16s`` or ``fcn8s``: the registry name of this variant."""
        return f"fcn{self.variant}"

    def encoder_modules(self) -> list[nn.Module]:
        """The parts ImageNet VGG-16 weights initialise: the trunk ``stages`` and ``fc`` (fc6, fc7)."""
        return [self.stages, self.fc]

    def load_encoder_weights(self, state: Mapping[str, Tensor], source: str) -> None:
        """Copy torchvision's ``vgg16`` state dict (or one in this model's names) into the trunk and fc6/fc7.

        fc6/fc7 become convolutions (:mod:`unetfamily.models.encoders.vgg`); the 1000-class layer
        is dropped and the score / up-sampling layers keep their initialisation. The first
        convolution is adapted to ``in_channels``. Every other key must find its place: a
        ConfigError naming ``source`` lists missing, unexpected and wrongly shaped ones. Only
        an FCN of VGG-16's widths without normalisation takes these weights.
        """
        built = {"channels": self.channels, "fc_channels": self.fc_channels, "norm": self.trunk_norm}
        wrong = [arg for arg, need in _VGG16_CONFIG.items() if built[arg] != need]
        if wrong:
            raise ConfigError(f"{source}: VGG-16 weights need an FCN built with "
                              + ", ".join(f"{a}={_VGG16_CONFIG[a]!r}" for a in wrong)
                              + "; this one has " + ", ".join(f"{a}={built[a]!r}" for a in wrong))
        trunk = nn.ModuleDict({"stages": self.stages, "fc": self.fc})  # shares the modules: a view by name
        load_weights(trunk, convert_vgg16(state, source), source, first_conv="stages.0.0.0.weight")

    def forward_padded(self, x: Tensor) -> Tensor:
        pools = []
        for stage in self.stages:
            x = stage(x)
            pools.append(x)
        score = self.score_fr(self.fc(x))
        if self.variant != "32s":
            score = self.upscore2(score) + self.score_pool4(pools[3])
        if self.variant == "8s":
            score = self.upscore_pool4(score) + self.score_pool3(pools[2])
        return self.upscore_final(score)


@register_model
def fcn32s(**kwargs: object) -> FCN:
    """FCN-32s, VGG-16 widths."""
    return FCN(**{"variant": "32s", **kwargs})


@register_model
def fcn16s(**kwargs: object) -> FCN:
    """FCN-16s, VGG-16 widths."""
    return FCN(**{"variant": "16s", **kwargs})


@register_model
def fcn8s(**kwargs: object) -> FCN:
    """FCN-8s, VGG-16 widths."""
    return FCN(**{"variant": "8s", **kwargs})


@register_model
def fcn32s_voc(**kwargs: object) -> FCN:
    """FCN-32s at the paper's PASCAL VOC configuration: VGG-16, 4096-wide fc6/fc7, 21 classes."""
    return FCN(**{"variant": "32s", "num_classes": 21, **kwargs})


@register_model
def fcn16s_voc(**kwargs: object) -> FCN:
    """FCN-16s at the paper's PASCAL VOC configuration: VGG-16, 4096-wide fc6/fc7, 21 classes."""
    return FCN(**{"variant": "16s", "num_classes": 21, **kwargs})


@register_model
def fcn8s_voc(**kwargs: object) -> FCN:
    """FCN-8s at the paper's PASCAL VOC configuration: VGG-16, 4096-wide fc6/fc7, 21 classes."""
    return FCN(**{"variant": "8s", "num_classes": 21, **kwargs})
