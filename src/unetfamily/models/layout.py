"""Which memory format trains a model fastest on a device: the rule behind ``train.channels_last: auto``.

The rule was fitted by ``benchmarks/speed.py`` (docs/speed.md, "The defaults"), not guessed:

- **CPU**, U-Net / UNet++ / UNet3+: channels_last (oneDNN's native layout: no reorders around
  each convolution) for inputs of at least :data:`CPU_CHANNELS_LAST_FROM` pixels of the family
  (UNet++ and UNet3+ from 128 x 128, U-Net from 256 x 256). Below that the activations are small
  next to the weights, and channels_last costs memory: oneDNN returns each weight gradient in
  its own layout and PyTorch copies it into the parameter's, so the largest weight exists twice
  for a moment (U-Net at 128 x 128: 1.20x the authors' memory in channels_last, 0.87x in NCHW,
  for no time gain). Below the smallest measured size the rule keeps PyTorch's default, NCHW.
- **CPU**, FCN: contiguous (NCHW). Its step is dominated by fc6 (a 7x7 convolution to 4096
  channels on a small map) and by the optimizer over its 134M parameters; channels_last was
  slower and used more memory in every measurement.
- **CUDA**: channels_last under bf16/fp16 autocast, where cuDNN's tensor-core kernels want NHWC
  (PyTorch's and NVIDIA's guidance; not measured here, no GPU), contiguous in fp32.
- Any other device: contiguous.
"""
from __future__ import annotations

import torch

from unetfamily.models.families import family_of

__all__ = ["CPU_CHANNELS_LAST_FROM", "prefers_channels_last"]

#: On CPU, per family, channels_last from inputs of this many pixels (H x W) on; FCN never.
CPU_CHANNELS_LAST_FROM = {"unet": 256 * 256, "unet_plusplus": 128 * 128, "unet_3plus": 128 * 128}


def prefers_channels_last(model_name: str, device: torch.device | str, input_hw: tuple[int, int],
                          amp: str = "none") -> tuple[bool, str]:
    """(channels_last?, why) for training ``model_name`` on ``device`` with inputs of ``input_hw`` (H, W).

    ``amp`` is the autocast mode ("none", "bf16", "fp16"). The reason is one sentence for the log.
    """
    kind = torch.device(device).type
    if kind == "cuda":
        if amp != "none":
            return True, f"CUDA under {amp} autocast: tensor-core convolutions run in channels_last"
        return False, "CUDA in fp32: contiguous (channels_last pays off under bf16/fp16 autocast)"
    if kind != "cpu":
        return False, f"{kind}: contiguous (no measured gain from channels_last)"
    family = family_of(model_name)
    if family == "fcn":
        return False, "FCN on CPU: contiguous (channels_last measured slower, docs/speed.md)"
    size, least = f"{input_hw[0]}x{input_hw[1]}", CPU_CHANNELS_LAST_FROM[family]
    side = round(least ** 0.5)
    if input_hw[0] * input_hw[1] < least:
        return False, (f"{size} inputs on CPU: contiguous (below {side}x{side} channels_last costs this family "
                       "memory for little time, docs/speed.md)")
    return True, f"{size} inputs on CPU: channels_last (oneDNN's native layout, docs/speed.md)"
