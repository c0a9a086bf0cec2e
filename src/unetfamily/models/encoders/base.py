"""What every pretrained-architecture encoder provides, and the registry that names them.

A :class:`Backbone` is an ImageNet classifier's convolutional trunk written here in plain torch
(no torchvision or timm import): ``forward(x)`` returns its stage outputs, shallowest first, and
``feature_info`` (:class:`~unetfamily.models.encoder.FeatureInfo`) gives each one's channels,
stride against the input and producing module. It keeps its own parameter names (timm's, where
timm has the architecture) and says how to read the other libraries' layouts:
``convert_state_dict`` maps a torchvision or timm state dict into those names.

``depth`` is the number of stride-2 steps the decoders may use: a backbone built with depth D
keeps the stages whose stride is at most 2**D and none deeper (no unused parameters, so every
parameter gets a gradient and DDP needs no ``find_unused_parameters``).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from unetfamily.errors import ConfigError, unknown_choice
from unetfamily.models.encoder import FeatureInfo
from unetfamily.models.encoders._layout import check_stages

__all__ = ["Backbone", "EncoderSpec", "ENCODERS", "register_encoder", "encoder_spec", "list_encoders"]


class Backbone(nn.Module):
    """An encoder trunk: (N, in_channels, H, W) -> [(N, C_k, H / r_k, W / r_k)], one per stage kept.

    Subclasses set ``feature_info`` (one level per returned tensor: ``num_chs``, ``reduction``
    ``r_k``, ``module``), ``first_conv`` (the state-dict key of the convolution that reads the
    image, adapted when ``in_channels != 3``) and ``skipped_prefixes`` (key prefixes of the
    reference model that this backbone does not build: the classifier head, stages deeper than
    its depth; weight files may hold them, they are dropped on load).
    """

    feature_info: FeatureInfo
    first_conv: str
    skipped_prefixes: tuple[str, ...]

    def forward(self, x: Tensor, stages: int | None = None) -> list[Tensor]:
        """The first ``stages`` features (all built ones when None), shallowest first; deeper ones are not run.

        Shapes: (N, in_channels, H, W) -> [(N, feature_info[k]["num_chs"], ~H / r_k, ~W / r_k)].
        """
        n = check_stages(stages, len(self.feature_info))
        return self.features(x, n) if n else []

    def features(self, x: Tensor, n: int) -> list[Tensor]:  # pragma: no cover - abstract
        """The first ``n`` >= 1 features of image ``x``."""
        raise NotImplementedError


@dataclass(frozen=True)
class EncoderSpec:
    """A named encoder: how to build it and how to read the weight layouts users have.

    - ``build(in_channels, depth)`` -> :class:`Backbone`;
    - ``convert_state_dict(state)`` -> the state in the backbone's names; it recognises the
      layouts it can read (torchvision's, timm's, its own) and raises a ConfigError otherwise;
    - ``reductions``: the stride of each stage at full depth, shallowest first;
    - ``reference``: the torchvision / timm model names the mapping is tested against.
    """

    name: str
    build: Callable[[int, int], Backbone]
    convert_state_dict: Callable[[Mapping[str, Tensor]], dict[str, Tensor]]
    reductions: tuple[int, ...]
    reference: Mapping[str, str]
    paper: str = ""


ENCODERS: dict[str, EncoderSpec] = {}


def register_encoder(spec: EncoderSpec) -> EncoderSpec:
    """Add ``spec`` to :data:`ENCODERS` under its name."""
    if spec.name in ENCODERS:
        raise RuntimeError(f"encoder {spec.name!r} is registered twice")
    ENCODERS[spec.name] = spec
    return spec


def list_encoders() -> list[str]:
    """Names accepted by ``create_model(..., encoder=NAME)``, sorted."""
    return sorted(ENCODERS)


def encoder_spec(name: Any) -> EncoderSpec:
    """The registered encoder ``name``; a ConfigError naming the close matches otherwise."""
    if not isinstance(name, str) or name not in ENCODERS:
        raise unknown_choice("encoder", name, list_encoders(), hint="`unetfamily models --encoders` lists them")
    return ENCODERS[name]


def check_depth(name: str, depth: Any, low: int = 1, high: int = 5) -> int:
    """``depth`` checked as an encoder depth (whole number in [low, high])."""
    if isinstance(depth, bool) or not isinstance(depth, int) or not low <= depth <= high:
        raise ConfigError(f"encoder_depth={depth!r} for encoder {name!r} must be a whole number from {low} to {high}")
    return depth
