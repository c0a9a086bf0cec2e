"""FLOPs of a model's forward (or forward + backward) pass, counted on a ``meta``-device copy.

Torch's :class:`~torch.utils.flop_counter.FlopCounterMode` counts them: convolutions, matrix products and
attention, 2 FLOPs per multiply-accumulate (pooling, norms and resizes are not counted, as in the
published figures). No arithmetic is done on ``meta``: paper-width models count instantly. One
implementation for the model cards (:func:`unetfamily.models.pretrained.count_macs`), the ``compare``
run order and :mod:`unetfamily.bench`.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from unetfamily.models._blocks import output_tensors

__all__ = ["count_flops", "count_train_flops"]


def _meta_copy(model: nn.Module) -> nn.Module:
    """A float32 ``meta``-device copy of ``model`` (of its module, for a ``torch.compile``'d model): the counts do not
    depend on the weights' dtype, and the float32 input the counters feed fits a bf16 or float64 model's copy too."""
    return copy.deepcopy(getattr(model, "_orig_mod", model)).to("meta", torch.float32)


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs (2 per MAC) of one eval-mode forward pass on an input of ``input_shape`` (N, C, H, W)."""
    meta = _meta_copy(model).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(torch.empty(input_shape, device="meta"))
    return int(counter.get_total_flops())


def count_train_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one training forward + backward pass (weight and input gradients) on (N, C, H, W) ``input_shape``.

    The first layer's input gradient is not computed (the image needs none), so this is a little under 3x
    :func:`count_flops`.
    """
    meta = _meta_copy(model).train()
    with FlopCounterMode(display=False) as counter:
        out = meta(torch.empty(input_shape, device="meta"))
        sum(t.float().mean() for t in output_tensors(out)).backward()
    return int(counter.get_total_flops())
