"""Which normalisation layers a training batch would give one value per channel (PyTorch refuses them).

Batch statistics need more than one value per channel: a batch of one image whose feature map shrinks to
1 x 1 (an 8 x 8 image after three poolings), or a pooled 1 x 1 branch, makes ``F.batch_norm`` raise in
the first training step; instance statistics need more than one pixel per image and channel whatever the
batch. :func:`single_value_norms` finds such layers before anything trains, on the ``meta`` device (no
memory, no arithmetic) with the model's own modules.
"""
from __future__ import annotations

import logging
from itertools import chain

import torch
from torch import nn
from torch.func import functional_call

__all__ = ["single_value_norms"]

log = logging.getLogger(__name__)


class _Found(Exception):
    """Stops the forward pass at the first layer found."""


def single_value_norms(model: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[str, tuple[int, ...]]]:
    """(name, input shape) of the first BatchNorm or InstanceNorm layer of ``model`` that a training forward pass
    on an (N, C, H, W) input of ``input_shape`` gives one value per channel (per image, for InstanceNorm) to
    compute its statistics from; [] when there is none.

    Runs the model's own forward pass in training mode on meta copies of its weights (``torch.func``) when a
    layer could be such (batch 1, or any InstanceNorm): the model's weights, buffers and mode are left as
    they were. A pass that cannot run on the meta
    device finds nothing (logged at debug level), so this never stops a model that would train.
    """
    # a batch of two or more images gives every BatchNorm at least two values per channel: no pass needed
    kinds: tuple[type, ...] = (nn.modules.instancenorm._InstanceNorm,)
    if input_shape[0] < 2:
        kinds += (nn.modules.batchnorm._BatchNorm,)
    norms = {m: name for name, m in model.named_modules() if isinstance(m, kinds)}
    if not norms:
        return []
    found: list[tuple[str, tuple[int, ...]]] = []

    def check(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0]
        per_channel = x.numel() // max(x.shape[1], 1) if x.dim() >= 2 else 2  # batch statistics: N x H x W
        if isinstance(module, nn.modules.instancenorm._InstanceNorm):
            per_channel //= max(x.shape[0], 1)  # statistics of each image: H x W
        if per_channel <= 1:
            found.append((norms[module], tuple(x.shape)))
            raise _Found

    handles = [m.register_forward_pre_hook(check) for m in norms]
    meta = {name: torch.empty_like(t, device="meta") for name, t in chain(model.named_parameters(),
                                                                          model.named_buffers())}
    training = model.training
    try:
        model.train()
        with torch.no_grad():
            functional_call(model, meta, (torch.empty(input_shape, device="meta"),))
    except _Found:
        pass
    except Exception as exc:  # noqa: BLE001 - an op without a meta kernel: nothing is known, nothing refused
        log.debug("the normalisation check could not run on the meta device (%s)", exc)
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    return found
