"""The deterministic weights and input that encoder fixtures are made from (no torchvision/timm here).

Both sides use these functions: ``tools/make_encoder_fixtures.py`` fills the real torchvision and
timm models with them (in a separate environment where those libraries import) and records the
features; ``tests/models/test_encoder_references.py`` fills the project's encoders through their
key mapping and compares. Everything is float64 so that agreement is far inside 1e-5.
"""
from __future__ import annotations

import math
import zlib

import torch
from torch import Tensor

#: The fixed input of every encoder fixture (VGG-16's is 224 x 224 so that fc6 sees exactly 7 x 7).
INPUT_SHAPES = {"encoder": (2, 3, 64, 96), "vgg16": (1, 3, 224, 224)}
#: How many values of each feature a fixture keeps (at evenly spaced flat indices).
SAMPLES = 48


def fill_value(key: str, shape: tuple[int, ...], dtype: torch.dtype = torch.float64) -> Tensor:
    """The value of state-dict entry ``key`` of ``shape``: seeded by the key's CRC-32.

    Weights of rank >= 2 are uniform with unit-variance propagation (bound sqrt(3 / fan_in));
    1-D scales (norm weights) 1 +- 0.1, biases and running means +-0.1, running variances
    1 +- 0.5, layer scales 0.1 +- 0.05, ``num_batches_tracked`` 0.
    """
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return torch.zeros(shape, dtype=torch.long)
    gen = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    u = torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1
    if leaf in ("gamma", "layer_scale"):
        value = 0.1 + 0.05 * u
    elif leaf == "running_var":
        value = 1 + 0.5 * u
    elif leaf in ("running_mean", "bias"):
        value = 0.1 * u
    elif len(shape) >= 2:
        value = u * math.sqrt(3 / math.prod(shape[1:]))
    else:
        value = 1 + 0.1 * u
    return value.to(dtype)


def filled_state(shapes: dict[str, tuple[int, ...]]) -> dict[str, Tensor]:
    """{key: fill_value(key, shape)} for every key of a reference layout."""
    return {k: fill_value(k, tuple(s)) for k, s in shapes.items()}


def fixture_input(shape: tuple[int, ...]) -> Tensor:
    """The fixed float64 input: x[n, c, h, w] = sin(0.31 h + 0.17 w + 1.1 c + 2.3 n)."""
    n, c, h, w = (torch.arange(s, dtype=torch.float64) for s in shape)
    return torch.sin(0.31 * h.view(1, 1, -1, 1) + 0.17 * w.view(1, 1, 1, -1) + 1.1 * c.view(1, -1, 1, 1)
                     + 2.3 * n.view(-1, 1, 1, 1))


def summarize(feature: Tensor) -> dict:
    """Shape, sum, sum of absolute values and ``SAMPLES`` values of a feature, as plain floats."""
    flat = feature.detach().to(torch.float64).flatten()
    index = torch.linspace(0, flat.numel() - 1, SAMPLES).round().long()
    return {"shape": list(feature.shape), "sum": flat.sum().item(), "abs_sum": flat.abs().sum().item(),
            "samples": flat[index].tolist()}
