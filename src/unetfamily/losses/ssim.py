"""Multi-scale structural similarity (MS-SSIM) and the MS-SSIM loss of UNet3+.

Wang, Simoncelli, Bovik, "Multiscale structural similarity for image quality assessment",
Asilomar 2003. For M scales (j = 1 finest), with contrast-structure ``cs_j`` and SSIM ``s_M``
averaged over each scale's map::

    MS-SSIM = s_M ** w_M * prod_{j < M} cs_j ** w_j,    w = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

i.e. luminance enters only at the coarsest scale, each factor with its own exponent (the
UNet3+ authors' code misplaces a bracket in this product). Gaussian window 11, sigma 1.5,
K1 = 0.01, K2 = 0.03, valid filtering, 2x2 average pooling between scales (odd sizes are
floored), as in Wang's reference code and pytorch-msssim.

Stability: a negatively correlated window makes ``cs`` negative, and a negative number to a
fractional power is NaN. Like pytorch-msssim (which applies ``relu`` to each ``cs_j`` and to
``s_M``) each per-scale mean is clamped, here to ``[eps, inf)`` with ``eps = 1e-4`` rather
than to 0, so that ``x ** w`` and its gradient stay finite (relu leaves ``0 ** w`` whose
derivative is infinite). A clamped factor passes no gradient; the other loss terms of the
hybrid loss still do.

Small images: a scale needs at least ``win_size`` pixels per side. As many of the standard
scales are used as fit (the weights as published when all fit; otherwise the used scales'
weights renormalised to sum to 1); if even the full
image is smaller than the window, the window shrinks to the largest odd size that fits and a
single scale (plain SSIM) is used. For ``win_size = 11`` all five scales need min(H, W) >= 176.
"""
from __future__ import annotations

import logging
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unetfamily.losses._common import encode_target, probabilities, safe_div

__all__ = ["MS_SSIM_WEIGHTS", "MSSSIMLoss", "ms_ssim", "ms_ssim_loss", "ms_ssim_plan"]

log = logging.getLogger(__name__)

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim_plan(height: int, width: int, win_size: int = 11, num_scales: int = 5) -> tuple[int, int]:
    """(window size, number of scales) actually used for an image of ``height`` x ``width``."""
    side = min(height, width)
    if side < 1:
        raise ValueError(f"MS-SSIM needs a non-empty image, got {height}x{width}")
    if side < win_size:
        return (side if side % 2 else side - 1), 1
    scales = 1
    while scales < num_scales and side // 2**scales >= win_size:
        scales += 1
    return win_size, scales


def _gaussian_filter(x: Tensor, win: int, sigma: float) -> Tensor:
    """Separable Gaussian filter, 'valid' (no padding), per channel: (B, C, H, W) -> (B, C, H-win+1, W-win+1)."""
    coords = torch.arange(win, dtype=x.dtype, device=x.device) - (win - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, win).expand(c, 1, 1, win), groups=c)
    return F.conv2d(x, g.view(1, 1, win, 1).expand(c, 1, win, 1), groups=c)


def ms_ssim(
    x: Tensor,
    y: Tensor,
    *,
    data_range: float = 1.0,
    win_size: int = 11,
    win_sigma: float = 1.5,
    weights: Sequence[float] | None = None,
    mask: Tensor | None = None,
    k: tuple[float, float] = (0.01, 0.03),
    eps: float = 1e-4,
) -> Tensor:
    """MS-SSIM of each image and channel.

    Args:
        x, y: images (N, C, H, W) with values in [0, data_range].
        data_range: dynamic range of the values (1 for probabilities).
        win_size: odd Gaussian window size (shrunk automatically on small images, see module doc).
        win_sigma: Gaussian standard deviation.
        weights: per-scale exponents, finest first; default :data:`MS_SSIM_WEIGHTS`.
        mask: optional (N, 1 or C, H, W) in {0, 1}: pixels with 0 are zeroed in both images and
            each scale's mean is weighted by the (pooled) mask at the window centres, so masked
            pixels have no influence on the result and receive no gradient.
        k: the constants (K1, K2).
        eps: lower clamp of each per-scale mean (see module doc).

    Returns:
        (N, C) MS-SSIM values in [eps, 1] (a fully masked image gives ``eps``).
    """
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"x and y must both be (N, C, H, W), got {tuple(x.shape)} and {tuple(y.shape)}")
    weights = tuple(MS_SSIM_WEIGHTS if weights is None else weights)
    win, scales = ms_ssim_plan(x.shape[-2], x.shape[-1], win_size, len(weights))
    if x.dtype in (torch.float16, torch.bfloat16):
        x, y = x.float(), y.float()
    if (win, scales) != (win_size, len(weights)):
        log.debug("MS-SSIM on %s: window %d, %d scale(s)", tuple(x.shape[-2:]), win, scales)
    w = torch.tensor(weights[:scales], dtype=x.dtype, device=x.device)
    if scales < len(weights):
        w = w / w.sum()
    c1, c2 = (k[0] * data_range) ** 2, (k[1] * data_range) ** 2
    if mask is not None:
        mask = mask.to(x.dtype).expand_as(x)
        x, y = x * mask, y * mask
    values = []
    with torch.autocast(x.device.type, enabled=False):  # variances cancel catastrophically in half precision
        for j in range(scales):
            if j > 0:
                x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
                mask = F.avg_pool2d(mask, 2) if mask is not None else None
            term = _ssim_map(x, y, win, win_sigma, c1, c2, luminance=j == scales - 1)
            if mask is None:
                mean = term.mean(dim=(-2, -1))
            else:
                r = win // 2
                centre = mask[..., r : r + term.shape[-2], r : r + term.shape[-1]]
                mean = safe_div((term * centre).sum(dim=(-2, -1)), centre.sum(dim=(-2, -1)))
            values.append(mean.clamp_min(eps))
        return torch.stack(values, dim=0).pow(w.view(-1, 1, 1)).prod(dim=0)


def _ssim_map(x: Tensor, y: Tensor, win: int, sigma: float, c1: float, c2: float, luminance: bool) -> Tensor:
    """Contrast-structure map, times the luminance map if ``luminance``: (B, C, H-win+1, W-win+1)."""
    mu_x, mu_y = _gaussian_filter(x, win, sigma), _gaussian_filter(y, win, sigma)
    var_x = _gaussian_filter(x * x, win, sigma) - mu_x**2
    var_y = _gaussian_filter(y * y, win, sigma) - mu_y**2
    cov = _gaussian_filter(x * y, win, sigma) - mu_x * mu_y
    term = (2 * cov + c2) / (var_x + var_y + c2)
    if luminance:
        term = term * (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return term


def ms_ssim_loss(
    logits: Tensor,
    target: Tensor,
    *,
    win_size: int = 11,
    win_sigma: float = 1.5,
    weights: Sequence[float] | None = None,
    ignore_index: int = 255,
) -> Tensor:
    """``1 - MS-SSIM(probabilities, one-hot target)``, averaged over images and channels.

    Args:
        logits: (N, C, H, W); C = 1 for binary (sigmoid), C >= 2 multi-class (softmax, every
            class channel including background), multi-label (sigmoid per channel).
        target: (N, H, W) long class indices, or (N, C, H, W) float {0, 1} for multi-label.
        win_size, win_sigma, weights: as in :func:`ms_ssim`.
        ignore_index: target value whose pixels are masked out. Definition for this windowed
            loss: at ignored pixels the logits are replaced by 0 (no gradient flows there), then
            the probability and the target are BOTH set to 0 before the window statistics (so an
            ignored pixel adds no mismatch, only a flat patch shared by both images), and each
            scale's SSIM map is averaged with the valid mask at the window centres as weights
            (average-pooled at coarser scales), so windows centred on ignored pixels do not count
            (see ``mask`` in :func:`ms_ssim`). An image-channel with no valid pixel is left out of
            the mean; a batch of only ignored pixels gives 0 with a zero gradient.

    Returns:
        Scalar loss in [0, 1 - eps].
    """
    mode, logits, onehot, valid = encode_target(logits, target, ignore_index)
    prob = probabilities(logits, mode)
    score = ms_ssim(prob, onehot, data_range=1.0, win_size=win_size, win_sigma=win_sigma, weights=weights, mask=valid)
    counted = (valid.flatten(2).amax(dim=2) > 0).to(score.dtype).expand_as(score)  # (N, K)
    return safe_div(((1 - score) * counted).sum(), counted.sum())


class MSSSIMLoss(nn.Module):
    """Module form of :func:`ms_ssim_loss`."""

    def __init__(
        self,
        *,
        win_size: int = 11,
        win_sigma: float = 1.5,
        weights: Sequence[float] | None = None,
        ignore_index: int = 255,
    ) -> None:
        super().__init__()
        self.win_size, self.win_sigma, self.ignore_index = win_size, win_sigma, ignore_index
        self.weights = None if weights is None else tuple(weights)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """(N, C, H, W) logits and (N, H, W) or (N, C, H, W) target -> scalar loss."""
        return ms_ssim_loss(
            logits,
            target,
            win_size=self.win_size,
            win_sigma=self.win_sigma,
            weights=self.weights,
            ignore_index=self.ignore_index,
        )

    def extra_repr(self) -> str:
        return f"win_size={self.win_size}, win_sigma={self.win_sigma}"
