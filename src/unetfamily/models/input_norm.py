"""Input normalisation stored in the model: clip, then per-channel z-score.

``create_model(name, input_norm={"mean": [...], "std": [...], "clip": [lo, hi] or None})``
attaches an :class:`InputNormalization` as ``model.input_norm`` (its ``mean``/``std`` buffers join
the state dict) and a forward pre-hook that normalises the image where the network first reads
it: the first encoder stage (``model.encoder.stages[0]`` in the U-Net family, the whole ``model.encoder``
with a pretrained backbone, whose shallow levels and backbone both read the image, ``model.stages[0]``
in FCN), else the model itself. Every path that computes logits from an image therefore applies
it: ``model(x)``, UNet++'s ``forward_level``/``predict(mode="fast")``, and ``forward_padded``
(which the ONNX/TorchScript export wrapper calls). Images keep their [0, 1] range everywhere
else (loaders, predictors, exported graphs' inputs). The zero padding to ``size_multiple``
happens before the hook, so padded pixels read as a raw 0 on every path alike.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any

import torch
from torch import Tensor, nn

from unetfamily.errors import ConfigError

__all__ = ["InputNormalization", "attach_input_norm", "check_input_norm"]

_KEY = "model.kwargs.input_norm"
_FORM = "{mean: [one per channel], std: [one per channel, > 0], clip: [low, high] or null}"


class InputNormalization(nn.Module):
    """``(N, C, H, W) -> (clamp(x, low, high) - mean) / std`` per channel; same shape, float.

    ``mean``/``std`` are buffers of shape ``(1, C, 1, 1)`` (saved in the state dict); ``clip``
    is ``(low, high)`` or ``None`` (no clamping), kept as plain floats.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], clip: Sequence[float] | None = None) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([float(m) for m in mean], dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor([float(s) for s in std], dtype=torch.float32).view(1, -1, 1, 1))
        self.clip: tuple[float, float] | None = None if clip is None else (float(clip[0]), float(clip[1]))

    def forward(self, x: Tensor) -> Tensor:
        if self.clip is not None:
            x = x.clamp(self.clip[0], self.clip[1])
        return (x - self.mean) / self.std

    def spec(self) -> dict[str, Any]:
        """The ``input_norm`` mapping that builds this module again."""
        return {"mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist(),
                "clip": None if self.clip is None else list(self.clip)}

    def extra_repr(self) -> str:
        return f"channels={self.mean.shape[1]}, clip={self.clip}"


class _NormalizeFirstInput:
    """Forward pre-hook: replaces the first positional input by ``norm(input)``."""

    def __init__(self, norm: InputNormalization) -> None:
        self.norm = norm

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (self.norm(args[0]), *args[1:])


def _numbers(name: str, value: Any, count: int | None, expected: str) -> list[float]:
    """``value`` as a list of finite floats (of ``count`` items when given, ``expected`` in words), or a ConfigError."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not all(
            isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise ConfigError(f"{_KEY}.{name}={value!r} must be a list of finite numbers; give {_FORM}")
    if count is not None and len(value) != count:
        raise ConfigError(f"{_KEY}.{name} has {len(value)} values; give {expected}")
    return [float(v) for v in value]


def check_input_norm(value: Any, in_channels: int | None) -> dict[str, Any]:
    """``value`` checked as an ``input_norm`` mapping for a model of ``in_channels`` (None: any count).

    Returns ``{"mean": [...], "std": [...], "clip": [lo, hi] or None}`` as floats; a ConfigError
    naming ``model.kwargs.input_norm`` otherwise.
    """
    if not isinstance(value, Mapping):
        raise ConfigError(f"{_KEY}={value!r} must be a mapping {_FORM}")
    unknown = sorted(str(k) for k in value if k not in ("mean", "std", "clip"))
    missing = [k for k in ("mean", "std") if k not in value]
    if unknown or missing:
        raise ConfigError(f"{_KEY}: " + (f"unknown key(s) {unknown}; " if unknown else "")
                          + (f"missing {missing}; " if missing else "") + f"give {_FORM}")
    per_channel = f"one per input channel (the model has in_channels={in_channels})"
    mean, std = (_numbers(k, value[k], in_channels, per_channel) for k in ("mean", "std"))
    if len(std) != len(mean) or not mean:
        raise ConfigError(f"{_KEY}: mean has {len(mean)} values and std {len(std)}; give one of each per channel")
    if any(s <= 0 for s in std):
        raise ConfigError(f"{_KEY}.std={std} must be > 0 in every channel (a constant channel: use std 1)")
    clip = value.get("clip")
    if clip is not None:
        clip = _numbers("clip", clip, 2, "[low, high], or null for no clipping")
        if not clip[0] < clip[1]:
            raise ConfigError(f"{_KEY}.clip={clip} needs low < high; give [low, high] or null for no clipping")
    return {"mean": mean, "std": std, "clip": clip}


def _input_module(model: nn.Module) -> nn.Module:
    """The module that reads the image first: the first encoder/trunk stage, else the encoder, else the model."""
    holder = getattr(model, "encoder", model)
    stages = getattr(holder, "stages", None)
    if isinstance(stages, (nn.ModuleList, nn.Sequential)) and len(stages):
        return stages[0]
    return holder  # an encoder without stages (a pretrained backbone's pyramid) reads the image itself


def attach_input_norm(model: nn.Module, input_norm: Mapping[str, Any]) -> nn.Module:
    """Give ``model`` (image ``(N, C, H, W)``) an :class:`InputNormalization` applied on every forward path.

    ``input_norm`` is ``{"mean", "std", "clip"}`` as :func:`check_input_norm` accepts for
    ``model.in_channels``. Returns ``model`` (changed in place); refuses a model that has one.
    """
    if getattr(model, "input_norm", None) is not None:
        raise ConfigError(f"{type(model).__name__} already has an input normalisation")
    spec = check_input_norm(input_norm, int(getattr(model, "in_channels")))
    model.input_norm = InputNormalization(spec["mean"], spec["std"], spec["clip"])
    _input_module(model).register_forward_pre_hook(_NormalizeFirstInput(model.input_norm))
    return model
