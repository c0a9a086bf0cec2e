"""A tiny model registry keyed by factory-function name (the timm pattern).

Every model file ends with small factory functions decorated with :func:`register_model`;
:func:`create_model` looks them up by name, drops ``None`` keyword arguments so callers can
forward optional CLI/config values blindly, resolves spelling variants (``unet++``, ``UNet3+``,
``u-net``) and fails with close matches on a typo. Before building, it checks the keyword
arguments against the constructor the factory returns (its return annotation): unknown names,
wrong types and out-of-range sizes are :class:`~unetfamily.errors.ConfigError` s naming them.
"""
from __future__ import annotations

import fnmatch
import functools
import inspect
import math
import os
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, TypeVar

from torch import nn

from unetfamily.errors import ConfigError, file_sha256, resolve_choice, unknown_choice
from unetfamily.models.encoders.weights import imagenet_norm, read_state_dict
from unetfamily.models.input_norm import attach_input_norm, check_input_norm

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
#: Keyword arguments with the same valid range in every model that takes them: (rule in words, test).
_RANGES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    **{k: ("at least 1", lambda v: v >= 1) for k in ("in_channels", "num_classes", "cat_channels", "fc_channels")},
    "dropout": ("in [0, 1)", lambda v: 0 <= v < 1),
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
    ``input_norm={"mean": [...], "std": [...], "clip": [lo, hi] or None}`` (one value per input
    channel) builds the per-channel clip + z-score into the model (:mod:`unetfamily.models.input_norm`).
    ``encoder_weights=PATH`` (a model built with ``encoder=NAME``, or an FCN) loads an ImageNet
    classifier's weights (safetensors or a weights-only ``.pth``; torchvision's or timm's layout)
    into the encoder and, unless ``input_norm`` is given, attaches the ImageNet normalisation. The
    path is not part of what the model records: its checkpoints hold the weights themselves.
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    input_norm = kwargs.pop("input_norm", None)
    encoder_weights = kwargs.pop("encoder_weights", None)
    name = resolve_model_name(name)
    factory = _MODEL_ENTRYPOINTS[name]
    _check_kwargs(name, factory, kwargs)
    if kwargs.get("encoder") is not None and "channels" in kwargs:
        raise ConfigError(f"model {name!r}: channels sets the widths of the family's own encoder; with "
                          f"encoder={kwargs['encoder']!r} the widths are the backbone's: leave channels out")
    if input_norm is not None:  # its form first: a bad value must not cost a model build
        check_input_norm(input_norm, None)
    state = None if encoder_weights is None else read_state_dict(_weights_path(encoder_weights))
    model = factory(**kwargs)
    if state is not None:
        model.load_encoder_weights(state, f"encoder_weights={encoder_weights}")
        input_norm = weights_input_norm(int(getattr(model, "in_channels")), input_norm)
        model.__dict__["_encoder_weights"] = {"file": Path(encoder_weights).name, "sha256": file_sha256(encoder_weights)}
    # What save_pretrained records: this name and these arguments rebuild the model.
    model.__dict__["_created_as"] = (name, {**kwargs, **({} if input_norm is None else {"input_norm": input_norm})})
    return model if input_norm is None else attach_input_norm(model, input_norm)


def weights_input_norm(in_channels: int, given: Any) -> Any:
    """The input normalisation of a model whose encoder starts from ImageNet weights: ``given``, else ImageNet's.

    The weights expect ImageNet-normalised images, so the normalisation joins the model (and so its
    checkpoints and exports) unless the caller chose one."""
    return imagenet_norm(in_channels) if given is None else given


def rebuild_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``model.kwargs`` of a saved config, to rebuild a model whose weights come from a checkpoint.

    ``encoder_weights=PATH`` (the ImageNet file a run started from) is dropped, so the file need not
    exist any more: the checkpoint holds the loaded and trained weights. The input normalisation
    :func:`create_model` attached with the weights (:func:`weights_input_norm`) is given instead, so
    the rebuilt model has the same modules; its values come from the checkpoint.
    """
    if not isinstance(kwargs, dict) or kwargs.get("encoder_weights") is None:
        return kwargs
    rest = {k: v for k, v in kwargs.items() if k != "encoder_weights"}
    rest["input_norm"] = weights_input_norm(int(rest.get("in_channels", 3)), rest.get("input_norm"))
    return rest


@functools.lru_cache(maxsize=None)
def _parameters(factory: Callable[..., nn.Module]) -> dict[str, Any] | None:
    """{keyword: type hint} of the constructor ``factory`` returns, or None when it cannot be known."""
    try:
        cls = typing.get_type_hints(factory).get("return")
        if not isinstance(cls, type):
            return None
        params = inspect.signature(cls.__init__).parameters
        hints = typing.get_type_hints(cls.__init__)
    except (NameError, TypeError, ValueError):  # annotations that do not resolve: leave the checks to the model
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    return {k: hints.get(k, Any) for k, p in params.items() if k != "self" and p.kind is not p.VAR_POSITIONAL}


def _check_kwargs(name: str, factory: Callable[..., nn.Module], kwargs: dict[str, object]) -> None:
    """Refuse keyword arguments ``name``'s constructor does not take, of the wrong type, or sizes below 1."""
    params = _parameters(factory)
    if params is None:
        return
    for key, value in kwargs.items():
        if key not in params:
            raise unknown_choice(f"model {name!r}: keyword argument", key, params, hint="model.kwargs in a config")
        what = f"model {name!r}: {key}={value!r}"
        hint = params[key]
        if hint in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float))
                                     or (hint is int and not isinstance(value, int))):
            raise ConfigError(f"{what} must be {'a whole number' if hint is int else 'a number'}")
        if hint is float and not math.isfinite(value):
            raise ConfigError(f"{what} must be a finite number")
        if hint is bool and not isinstance(value, bool):
            raise ConfigError(f"{what} must be true or false")
        if typing.get_origin(hint) is Sequence and (
                isinstance(value, (str, bytes)) or not isinstance(value, Sequence)
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
            raise ConfigError(f"{what} must be a list of whole numbers")
        if key in _RANGES and not _RANGES[key][1](value):
            raise ConfigError(f"{what} must be {_RANGES[key][0]}")


def _weights_path(value: object) -> Path:
    """``encoder_weights`` as a path, or a ConfigError saying what it must be."""
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ConfigError(f"encoder_weights={value!r} must be the path of a weight file (.safetensors, .pth or .pt)")
    return Path(value)
