"""A tiny model registry keyed by factory-function name (the timm pattern).

Every model file ends with small factory functions decorated with :func:`register_model`;
:func:`create_model` looks them up by name, drops ``None`` keyword arguments so callers can
forward optional CLI/config values blindly, resolves spelling variants (``unet++``, ``UNet3+``,
``u-net``) and fails with close matches on a typo.
"""
from __future__ import annotations

import fnmatch
from typing import Callable, TypeVar

from torch import nn

from unetfamily.errors import resolve_choice

__all__ = ["register_model", "create_model", "list_models", "model_entrypoint", "resolve_model_name"]

_F = TypeVar("_F", bound=Callable[..., nn.Module])
_MODEL_ENTRYPOINTS: dict[str, Callable[..., nn.Module]] = {}
# Names in use elsewhere (papers, other packages) for a registered model. Spellings that differ
# from a registered name only in case, punctuation or "+" for "plus" resolve without an entry.
_ALIASES = {
    "unet++": "unet_plusplus",
    "unetpp": "unet_plusplus",
    "nested_unet": "unet_plusplus",
    "unet_2plus": "unet_plusplus",
    "unet3+": "unet_3plus",
    "unet3p": "unet_3plus",
    "u-net": "unet",
    "fcn-8s": "fcn8s",
    "fcn-16s": "fcn16s",
    "fcn-32s": "fcn32s",
}


def register_model(fn: _F) -> _F:
    """Register a factory function under its own ``__name__``."""
    name = fn.__name__
    if name in _MODEL_ENTRYPOINTS:
        raise RuntimeError(f"model {name!r} is registered twice")
    _MODEL_ENTRYPOINTS[name] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Sorted registered model names matching a shell-style ``pattern`` (e.g. ``"unet*"``)."""
    return sorted(n for n in _MODEL_ENTRYPOINTS if fnmatch.fnmatchcase(n, pattern))


def resolve_model_name(name: str) -> str:
    """The registered name ``name`` spells (``"unet++"``, ``"UNetPlusPlus"`` -> ``"unet_plusplus"``).

    Raises :class:`~unetfamily.errors.ConfigError` (a ``ValueError``) naming the close matches
    for an unknown name, so callers can check a list of names before building anything.
    """
    return resolve_choice(
        "model", name, _MODEL_ENTRYPOINTS, _ALIASES,
        hint=f"`unetfamily models` lists all {len(_MODEL_ENTRYPOINTS)} registered names",
    )


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    """The factory registered as ``name`` or a spelling of it (see :func:`resolve_model_name`)."""
    return _MODEL_ENTRYPOINTS[resolve_model_name(name)]


def create_model(name: str, **kwargs: object) -> nn.Module:
    """Build the registered model ``name`` (or a spelling of it, see :func:`resolve_model_name`).

    Keyword arguments whose value is ``None`` are dropped, so the factory's defaults apply.
    Every model maps an image batch (N, in_channels, H, W) to logits (N, num_classes, H, W).
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return model_entrypoint(name)(**kwargs)
