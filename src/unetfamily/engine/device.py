"""Which device a run uses: ``"auto"`` or a torch device name, checked before anything is built."""
from __future__ import annotations

import torch

from unetfamily.errors import ConfigError, unknown_choice

__all__ = ["resolve_amp", "resolve_device"]


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


def resolve_amp(amp: str, device: torch.device) -> tuple[str, str]:
    """(autocast mode, why) for ``train.amp``: ``"auto"`` -> ``"bf16"`` on a CUDA device with bf16, else ``"none"``.

    bf16 needs no loss scaling and is what PyTorch's and NVIDIA's guidance (and nnU-Net's mixed
    precision) recommend on GPUs that have it; not measured here, no GPU. On CPU ``"auto"`` stays
    fp32, since bf16 changes results beyond rounding (an opt-in; docs/speed.md measures it).
    Any other value is returned as given.
    """
    if amp != "auto":
        return amp, "set in the config"
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16", "CUDA device with bf16: autocast in bf16 (no loss scaling needed)"
    return "none", f"{device.type}: fp32 (bf16 is opt-in here: train.amp=bf16)"
