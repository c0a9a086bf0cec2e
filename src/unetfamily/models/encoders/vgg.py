"""torchvision's VGG-16 weights in the names of :class:`~unetfamily.models.fcn.FCN`'s trunk.

FCN (Long et al., CVPR 2015) starts from the ImageNet VGG-16 classifier and casts its fully
connected layers as convolutions: fc6's 4096 x 25088 matrix becomes a 4096 x 512 x 7 x 7 filter
bank (25088 = 512 x 7 x 7, the order in which torchvision flattens pool5) and fc7's 4096 x 4096
matrix a 1x1 convolution. The 1000-class layer (``classifier.6``) has no place in a segmentation
model and is dropped. On a 224 x 224 image, pool5 is 7 x 7 and the centre of the fully
convolutional fc7 equals the classifier's fc7.

torchvision layout -> FCN names:

- ``features.{0,2}`` -> ``stages.0.{0,1}.0``, ``features.{5,7}`` -> ``stages.1.{0,1}.0``,
  ``features.{10,12,14}`` -> ``stages.2.{0,1,2}.0``, ``features.{17,19,21}`` -> ``stages.3.*``,
  ``features.{24,26,28}`` -> ``stages.4.*`` (each trunk unit is Conv, norm, ReLU; ``.0`` its conv);
- ``classifier.0`` -> ``fc.0`` (reshaped to 7 x 7), ``classifier.3`` -> ``fc.3`` (reshaped to 1 x 1).
"""
from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

from unetfamily.errors import ConfigError

__all__ = ["VGG16_CONV_INDICES", "convert_vgg16"]

#: torchvision ``features`` index of each convolution, per FCN stage.
VGG16_CONV_INDICES = ((0, 2), (5, 7), (10, 12, 14), (17, 19, 21), (24, 26, 28))
_CONV_NAMES = {idx: f"stages.{s}.{k}.0" for s, stage in enumerate(VGG16_CONV_INDICES) for k, idx in enumerate(stage)}
#: The ImageNet 1000-class layer: read and dropped.
DROPPED = ("classifier.6.weight", "classifier.6.bias")
_OWN_KEY = re.compile(r"(stages\.[0-4]\.[0-2]\.0|fc\.[03])\.(weight|bias)")
#: fc6 sees pool5 as 7 x 7.
FC6_KERNEL = 7


def _fc_as_conv(weight: Tensor, kernel: int) -> Tensor:
    """An (O, I * kernel**2) matrix as an (O, I, kernel, kernel) filter bank; other shapes unchanged."""
    if weight.dim() == 2 and weight.shape[1] % (kernel * kernel) == 0:
        return weight.reshape(weight.shape[0], weight.shape[1] // (kernel * kernel), kernel, kernel)
    return weight


def _torchvision_key(key: str) -> str | None:
    if m := re.fullmatch(r"features\.(\d+)\.(weight|bias)", key):
        name = _CONV_NAMES.get(int(m[1]))
        return None if name is None else f"{name}.{m[2]}"
    if m := re.fullmatch(r"classifier\.([03])\.(weight|bias)", key):
        return f"fc.{m[1]}.{m[2]}"
    return None


def convert_vgg16(state: Mapping[str, Tensor], source: str = "VGG-16 weights") -> dict[str, Tensor]:
    """torchvision's ``vgg16`` state dict (or one already in FCN's names) in FCN's trunk names.

    ``classifier.6`` (the 1000-class layer) is dropped; keys of neither layout are kept as they
    are, so that loading lists them as unexpected. A state with no key of either layout is a
    ConfigError naming ``source``.
    """
    names = {k: _torchvision_key(k) for k in state}
    n_torchvision = sum(v is not None for v in names.values()) + sum(k in DROPPED for k in state)
    n_own = sum(_OWN_KEY.fullmatch(k) is not None for k in state)
    if n_torchvision == n_own == 0:
        shown = ", ".join(list(state)[:4]) + (", ..." if len(state) > 4 else "")
        raise ConfigError(f"{source}: the state is not torchvision's vgg16 layout (features.0.weight, ..., "
                          "classifier.0.weight, classifier.3.weight) nor FCN's own (stages.0.0.0.weight, ..., "
                          f"fc.0.weight); its keys start {shown or '(no keys)'}")
    torchvision, out = n_torchvision > n_own, {}
    for key, value in state.items():
        if torchvision and key in DROPPED:
            continue
        new = (names[key] if torchvision else None) or key
        if new == "fc.0.weight":
            value = _fc_as_conv(value, FC6_KERNEL)
        elif new == "fc.3.weight":
            value = _fc_as_conv(value, 1)
        out[new] = value
    return out
