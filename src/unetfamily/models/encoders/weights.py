"""Reading the ImageNet weight files users have into an encoder, without unpickling anything.

A weight file is a safetensors file or a ``.pth``/``.pt``/``.bin`` state dict read with
``torch.load(weights_only=True)`` (tensors and plain containers only: a file that needs full
unpickling is refused, never executed). Checkpoints that wrap the state (``{"state_dict": ...}``,
``{"model": ...}``) and DDP's ``module.`` prefix are unwrapped. The encoder's
:class:`~unetfamily.models.encoders.base.EncoderSpec` maps the layout (torchvision's, timm's)
into its own names; then every tensor must find its place: a missing or unexpected key, or a
wrong shape, is an error listing them.

Images of other than 3 channels reuse the RGB filters of the first convolution (smp's rule):
one channel takes their sum; C channels take filter ``c % 3`` scaled by 3 / C, so that an image
whose channels are all equal gives the same response as its RGB version. The ImageNet
normalisation that goes with the weights (:func:`imagenet_norm`) follows the same cycle.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from unetfamily.errors import ConfigError, regular_file

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "imagenet_norm", "read_state_dict", "load_weights"]

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_WRAPPERS = ("state_dict", "model", "model_state_dict", "module")
_SHOWN = 8


def imagenet_norm(in_channels: int) -> dict[str, Any]:
    """The ``input_norm`` of ImageNet weights for ``in_channels`` images (see the module docstring)."""
    if in_channels == 1:
        return {"mean": [sum(IMAGENET_MEAN) / 3], "std": [sum(IMAGENET_STD) / 3], "clip": None}
    return {"mean": [IMAGENET_MEAN[c % 3] for c in range(in_channels)],
            "std": [IMAGENET_STD[c % 3] for c in range(in_channels)], "clip": None}


def read_state_dict(path: str | Path, what: str = "encoder_weights") -> dict[str, Tensor]:
    """The tensors of weight file ``path`` by name (safetensors, or a state dict read with weights_only).

    Raises a ConfigError naming ``what`` and the file when it is missing, unreadable, needs
    unpickling of arbitrary objects, or holds no tensors.
    """
    path = regular_file(path, f"{what} file", ConfigError)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as e:
            raise ConfigError(f"{what}={path}: not a readable safetensors file ({e})") from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - UnpicklingError, zip errors, EOF: all mean "not a plain state dict"
        raise ConfigError(
            f"{what}={path}: not a state dict that loads with torch.load(weights_only=True) ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); save the weights with torch.save(model.state_dict(), "
            f"PATH) or as safetensors") from e
    return _unwrap(obj, path, what)


def _unwrap(obj: Any, path: Path, what: str) -> dict[str, Tensor]:
    for _ in range(3):
        if isinstance(obj, Mapping) and not any(isinstance(v, Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ConfigError(f"{what}={path}: holds no state dict (a mapping of names to tensors); "
                          f"save the weights with torch.save(model.state_dict(), PATH)")
    if all(str(k).startswith("module.") for k in obj):  # saved from a DDP-wrapped model
        obj = {str(k)[len("module."):]: v for k, v in obj.items()}
    return {str(k): v for k, v in obj.items()}


def _listed(keys: list[str]) -> str:
    more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def adapt_first_conv(weight: Tensor, in_channels: int) -> Tensor:
    """An RGB filter bank (O, 3, k, k) for ``in_channels`` inputs (see the module docstring)."""
    if in_channels == weight.shape[1]:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    return torch.stack([weight[:, c % 3] for c in range(in_channels)], dim=1) * (3 / in_channels)


def load_weights(module: nn.Module, state: Mapping[str, Tensor], source: str, *, skipped: tuple[str, ...] = (),
                 first_conv: str | None = None) -> None:
    """Copy ``state`` (already in ``module``'s names) into ``module``, every key accounted for.

    Keys starting with a prefix in ``skipped`` (parts of the reference model this module does
    not build) are dropped; ``first_conv`` names the weight adapted to the module's input
    channels. Missing keys, unexpected keys and wrong shapes raise one ConfigError naming
    ``source`` and listing them.
    """
    own = module.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith(skipped)}
    if first_conv is not None and first_conv in state and first_conv in own:
        state[first_conv] = adapt_first_conv(state[first_conv], own[first_conv].shape[1])
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own)
    shapes = sorted(f"{k} {tuple(state[k].shape)} (expected {tuple(own[k].shape)})"
                    for k in own if k in state and state[k].shape != own[k].shape)
    if missing or unexpected or shapes:
        problems = [f"{len(missing)} missing key(s): {_listed(missing)}" if missing else "",
                    f"{len(unexpected)} unexpected key(s): {_listed(unexpected)}" if unexpected else "",
                    f"{len(shapes)} wrong shape(s): {_listed(shapes)}" if shapes else ""]
        raise ConfigError(f"{source} does not fit the encoder: " + "; ".join(p for p in problems if p)
                          + "; give the weights of the same architecture (torchvision's or timm's layout)")
    with torch.no_grad():
        for k, v in own.items():
            v.copy_(state[k].to(v.dtype))
    log.info("%s: loaded %d tensors", source, len(own))
