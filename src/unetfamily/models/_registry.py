"""A tiny model registry keyed by factory-function name (the timm pattern).

Every model file ends with small factory functions decorated with :func:`register_model`;
:func:`create_model` looks them up by name, drops ``None`` keyword arguments so callers can
forward optional CLI/config values blindly, and fails with close matches on a typo.
"""
from __future__ import annotations

import difflib
import fnmatch
from typing import Callable, TypeVar

from torch import nn

__all__ = ["register_model", "create_model", "list_models", "model_entrypoint"]

_F = TypeVar("_F", bound=Callable[..., nn.Module])
_MODEL_ENTRYPOINTS: dict[str, Callable[..., nn.Module]] = {}


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


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    """The factory registered as ``name``; unknown names raise ``ValueError`` with suggestions."""
    try:
        return _MODEL_ENTRYPOINTS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_MODEL_ENTRYPOINTS), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown model {name!r}.{hint} `unetfamily models` lists all "
            f"{len(_MODEL_ENTRYPOINTS)} registered names."
        ) from None


def create_model(name: str, **kwargs: object) -> nn.Module:
    """Build the registered model ``name``.

    Keyword arguments whose value is ``None`` are dropped, so the factory's defaults apply.
    Every model maps an image batch (N, in_channels, H, W) to logits (N, num_classes, H, W).
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return model_entrypoint(name)(**kwargs)
