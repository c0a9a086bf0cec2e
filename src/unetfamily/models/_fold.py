"""BatchNorm folding for inference: conv + BN -> one conv with rescaled weights and bias."""
from __future__ import annotations

import copy

import torch
from torch import nn

from unetfamily.models._blocks import ConvNormAct

__all__ = ["fold_batchnorm"]


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with the conv -> BatchNorm pair of every family block merged into the conv.

    The blocks are the families' :class:`ConvNormAct` units; a pretrained backbone's own
    BatchNorm layers (``encoder=...``) are left as they are.

    In eval mode BatchNorm is the affine map y = (x - mean) / sqrt(var + eps) * gamma + beta with
    fixed statistics, so it folds into the preceding convolution: W' = W * s, b' = (b - mean) * s
    + beta, s = gamma / sqrt(var + eps). One pass over each feature map less; the logits equal
    the unfolded model's up to float rounding (about 1e-6 relative). The copy is for inference
    only: it has no BatchNorm left to train. ``model`` itself is not changed.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if isinstance(module, ConvNormAct) and isinstance(module[1], nn.BatchNorm2d) and module[1].track_running_stats:
            conv, bn = module[0], module[1]
            scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            conv.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
            module[1] = nn.Identity()
    return folded
