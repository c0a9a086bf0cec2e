"""The receptive field of a model's output, measured on the network itself.

Used by ``compare``'s ``unet_depth`` ablation to print, next to each depth's score, how many
input pixels one output pixel can see (the question "is down-sampling needed at all?").

Why measured and not derived from a formula: the families mix max-pooling, transposed convs,
bilinear resizes and full-scale skips, and a formula per family would have to be kept in step
with each model's code. The probe reads the receptive field off the gradient instead:

1. a float32 CPU copy gets every (transposed) conv and linear weight set to a positive constant
   and every bias to zero, and its normalisation layers replaced by the identity, so every
   activation is positive and no ReLU blocks a gradient; normalisation over a whole image or
   group would otherwise make each output depend on every input pixel;
2. it runs in training mode, so that decisions taken only at inference (UNet3+'s CGM gate, which
   blanks the logits of images it calls empty) do not hide the network, with dropout off;
3. max-pooling runs as average pooling of the same window: its gradient reaches only the
   window's argmax, while the receptive field is the whole window;
4. the gradient of the centre output pixel (summed over classes) is nonzero exactly on the
   input pixels the output depends on; the side of their bounding box is the receptive field.

The input side starts at 64 and doubles until that region stays clear of the border.

The gradient spreads over the field like a repeated blur, so at the field's edge it is a product of
many weights below one; should its smallest nonzero value come within a few orders of magnitude of
float32's smallest (``_FLOAT32_FLOOR``), where an edge pixel could have underflowed to zero, the
probe is run again in float64. On the families' models that never happened (float32 is 3x faster
here: oneDNN has no float64 convolutions).
"""
from __future__ import annotations

import copy
import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from unetfamily.errors import ConfigError
from unetfamily.models._blocks import SegmentationModel, final_output

__all__ = ["receptive_field"]

log = logging.getLogger(__name__)

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm, nn.LayerNorm)
_START_SIZE = 64
_FLOAT32_FLOOR = 1e-30  # float32's smallest normal is 1.2e-38


def receptive_field(model: nn.Module, in_channels: int, max_size: int = 1024) -> int:
    """The side in pixels of the input region that the centre pixel of ``model``'s final output sees.

    ``model`` maps (N, ``in_channels``, S, S) to logits (N, C, S, S), or to a deep-supervision list
    or a (segmentation, classification) tuple (:func:`~unetfamily.models.final_output` picks the
    final logits). The model itself is not changed: a float32 CPU copy is probed (float64 if float32 could
    have lost the field's edge, see the module's notes). Returns the
    larger of the region's height and width; if the region still reaches the border of a
    ``max_size`` input, that (a lower bound) is returned and a warning logged.

    Examples: one 3x3 conv -> 3; two -> 5; U-Net depth 0 (one DoubleConv, 1x1 head) -> 5;
    U-Net depth 1 with 2x2 up-convolutions -> 18. The value depends on the layout only, not on
    widths or weights: for a wide model, probing a narrow build of it is as exact and much faster.
    """
    if in_channels < 1:
        raise ConfigError(f"in_channels={in_channels} must be a positive number of image channels")
    if max_size < 8:
        raise ConfigError(f"max_size={max_size} is too small to probe a receptive field; use at least 8")
    dtype = torch.float32
    probe = _probe_copy(model, dtype)
    size = min(_START_SIZE, max_size)
    while True:
        extent, touches, smallest = _gradient_extent(probe, in_channels, size, dtype)
        if smallest < _FLOAT32_FLOOR and dtype == torch.float32:
            log.debug("receptive field probe: gradient down to %.1e in float32; probing again in float64", smallest)
            dtype = torch.float64
            probe = probe.to(dtype)
            continue
        if not touches:
            return extent
        if size >= max_size:
            log.warning(
                "receptive field reaches the border of a %dx%d input: %d px is a lower bound (raise max_size)",
                size, size, extent,
            )
            return extent
        size = min(2 * size, max_size)


def _probe_copy(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A ``dtype`` CPU copy in training mode with positive constant weights, zero biases and no normalisation."""
    probe = copy.deepcopy(model).to(device="cpu", dtype=dtype).train()
    if isinstance(probe, SegmentationModel):
        probe.set_memory_saving("none")
    for module in list(probe.modules()):
        for name, child in module.named_children():
            if isinstance(child, _NORMS):
                setattr(module, name, nn.Identity())
    with torch.no_grad():
        for module in probe.modules():
            if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
                transposed = getattr(module, "transposed", False)
                fan_in = module.weight.numel() // module.weight.shape[1 if transposed else 0]
                module.weight.fill_(1.0 / fan_in)
                if module.bias is not None:
                    module.bias.zero_()
    return probe


def _gradient_extent(probe: nn.Module, in_channels: int, size: int, dtype: torch.dtype) -> tuple[int, bool, float]:
    """(side of the nonzero-gradient box, whether it touches the border, the smallest nonzero gradient) for an
    S = ``size`` input."""
    x = torch.ones(1, in_channels, size, size, dtype=dtype, requires_grad=True)
    with _ProbeOps():
        out = final_output(probe(x))
    if out.dim() != 4 or out.shape[-2:] != x.shape[-2:]:
        raise ConfigError(
            f"receptive_field needs a model whose output has the input's size; got {tuple(out.shape)} "
            f"for an input of {tuple(x.shape)}"
        )
    centre = size // 2
    (grad,) = torch.autograd.grad(out[0, :, centre, centre].sum(), x)
    magnitude = grad[0].abs().sum(0)
    seen = magnitude > 0
    rows, cols = seen.any(1).nonzero().flatten(), seen.any(0).nonzero().flatten()
    if rows.numel() == 0:
        raise ConfigError("the centre output pixel does not depend on the input; cannot measure a receptive field")
    top, bottom, left, right = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    touches = top == 0 or left == 0 or bottom == size - 1 or right == size - 1
    return max(bottom - top + 1, right - left + 1), touches, float(magnitude[seen].min())


def _avg_for_max(
    input: Tensor,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Tensor:
    """``max_pool2d``'s signature, computed as an average over the same windows."""
    if dilation not in (1, (1, 1)) or return_indices:
        raise ConfigError("receptive_field cannot probe max-pooling with dilation or returned indices")
    return F.avg_pool2d(input, kernel_size, stride, padding, ceil_mode=ceil_mode)


class _ProbeOps(TorchFunctionMode):
    """Runs every 2-D max-pooling (``F.max_pool2d``, ``nn.MaxPool2d``, ``torch.max_pool2d``) as average
    pooling, and every dropout (module or function) as the identity."""

    _MAX_POOLS = (F.max_pool2d, torch.max_pool2d)
    _DROPOUTS = (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout)

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - PyTorch's protocol
        kwargs = kwargs or {}
        if func in self._MAX_POOLS:
            return _avg_for_max(*args, **kwargs)
        if func in self._DROPOUTS:
            return args[0] if args else kwargs["input"]
        return func(*args, **kwargs)
