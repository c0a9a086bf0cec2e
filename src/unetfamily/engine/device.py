"""Which device a run uses: ``"auto"`` or a torch device name, checked before anything is built."""
from __future__ import annotations

import torch

from unetfamily.errors import ConfigError, unknown_choice

__all__ = ["resolve_device"]


def resolve_device(name: str | torch.device, what: str = "device") -> torch.device:
    """``"auto"`` -> CUDA when available, else the CPU; any other name must be a device this machine has.

    ``what`` names the option in errors (``"train.device"``, ``"--device"``). Raises
    :class:`~unetfamily.errors.ConfigError` for an unknown name or a CUDA device that is not here.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise unknown_choice(what, name, ("auto", "cpu", "cuda", "mps"), hint="or cuda:N for GPU N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{what}={name!r}: CUDA is not available here; use 'cpu' or 'auto'")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"{what}={name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device
