"""Joint image + mask augmentation on top of kornia (the ``augment`` extra).

kornia's :class:`~kornia.augmentation.AugmentationSequential` with ``data_keys=["input", "mask"]``
draws one set of parameters per sample and applies it to both tensors: geometric steps warp the
mask with nearest-neighbour resampling (its default ``extra_args``), intensity steps skip the
mask. Padding fills masks with 0, which would silently label new border pixels as class 0, so
:class:`Augmentation` shifts the mask by +1 before the warp and maps the 0 fill to
``ignore_index`` afterwards. The same module works on one sample (``(C, H, W)`` / ``(H, W)``, in
DataLoader workers) and on a collated batch (``(N, C, H, W)`` / ``(N, H, W)``, on the GPU).

kornia draws from torch's global RNG; :func:`~unetfamily.data.make_loader` seeds it per sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

import torch
from torch import nn

from unetfamily.data import options
from unetfamily.data.errors import unknown_choice
from unetfamily.errors import require

__all__ = ["PRESETS", "Augmentation", "build_augmentation"]

Preset = Literal["light", "medical", "natural"]
PRESETS: tuple[str, ...] = get_args(Preset)


def _kornia() -> Any:
    """``kornia.augmentation``, or a MissingExtraError naming the ``augment`` extra."""
    require("kornia", "augment", "augmentation")
    import kornia.augmentation as K

    return K


class Augmentation(nn.Module):
    """Apply kornia augmentations jointly to ``sample["image"]`` and ``sample["mask"]``.

    Args:
        *steps: kornia 2-D augmentation modules, applied in order.
        ignore_index: mask value written where a geometric step pads (and kept where it was).
        crop_size: ``(H, W)`` of every output when a step crops to a fixed size, else ``None``
            (output sizes vary with the input's); the data check reads it.

    ``forward`` takes a sample or batch dict and returns a new dict with the same keys:
    ``image`` float ``(C, H, W)`` or ``(N, C, H, W)`` clipped to [0, 1], ``mask`` int64
    ``(H, W)`` or ``(N, H, W)``; other keys (``name``) pass through.
    """

    def __init__(self, *steps: nn.Module, ignore_index: int = 255, crop_size: tuple[int, int] | None = None) -> None:
        super().__init__()
        K = _kornia()
        self.ignore_index = ignore_index
        self.crop_size = crop_size
        from kornia.constants import DataKey, Resample

        # kornia's default mask args leave align_corners=None, which grid_sample warns about;
        # False is what that None resolves to, so the result is unchanged.
        mask_args = {DataKey.MASK: {"resample": Resample.NEAREST, "align_corners": False}}
        self.steps = K.AugmentationSequential(*steps, data_keys=["input", "mask"], extra_args=mask_args)

    def forward(self, sample: dict[str, Any]) -> dict[str, Any]:
        image, mask = sample["image"], sample["mask"]
        batched = image.ndim == 4
        if not batched:
            image, mask = image[None], mask[None]
        shifted = (mask.to(torch.float32) + 1)[:, None]  # 0 is free for "padded by the warp"
        image, shifted = self.steps(image, shifted)
        shifted = shifted[:, 0].round().long()
        out_mask = torch.where(shifted == 0, torch.full_like(shifted, self.ignore_index), shifted - 1)
        image = image.clamp(0.0, 1.0)
        if not batched:
            image, out_mask = image[0], out_mask[0]
        return {**sample, "image": image, "mask": out_mask}

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}"


def build_augmentation(
    preset: Preset = "light",
    *,
    ignore_index: int = 255,
    crop_size: int | Sequence[int] | None = None,
    in_channels: int = 3,
) -> Augmentation:
    """A ready augmentation for a kind of data.

    - ``light``: flips, 90-degree rotations, mild brightness/contrast. Safe for any top-down image.
    - ``medical``: ``light`` plus affine (rotation, scale, shear), elastic deformation (U-Net
      paper's key augmentation), gamma and Gaussian noise. Microscopy, EM, endoscopy.
    - ``natural``: horizontal flip only (scenes have an up), random scale-and-crop, colour
      jitter, light noise. Street scenes, photos.

    ``crop_size`` (int or ``(H, W)``) first takes a random crop of that size, padding with
    ``ignore_index`` when the image is smaller (``natural`` uses a random resized crop instead).
    ``in_channels`` adds saturation jitter to ``natural`` for RGB images.
    """
    if preset not in PRESETS:
        raise unknown_choice("augment preset", preset, PRESETS)
    size = options.size("augment crop_size", crop_size)
    K = _kornia()
    steps: list[nn.Module] = []
    if size is not None and preset != "natural":
        steps.append(K.RandomCrop(size, pad_if_needed=True, fill=0.0))
    if preset in ("light", "medical"):
        steps += [
            K.RandomHorizontalFlip(p=0.5),
            K.RandomVerticalFlip(p=0.5),
            K.RandomRotation90(times=(0, 3), p=0.75),
        ]
    if preset == "medical":
        steps += [
            K.RandomAffine(degrees=20.0, translate=(0.05, 0.05), scale=(0.85, 1.15), shear=8.0, p=0.5),
            K.RandomElasticTransform(kernel_size=(63, 63), sigma=(16.0, 16.0), alpha=(3.0, 3.0), p=0.5),
            K.RandomGamma(gamma=(0.7, 1.4), p=0.5),
            K.RandomBrightness(brightness=(0.85, 1.15), p=0.5),
            K.RandomContrast(contrast=(0.75, 1.25), p=0.5),
            K.RandomGaussianNoise(std=0.03, p=0.3),
        ]
    elif preset == "light":
        steps += [K.RandomBrightness(brightness=(0.9, 1.1), p=0.5), K.RandomContrast(contrast=(0.9, 1.1), p=0.5)]
    else:  # natural
        if size is not None:
            steps.append(K.RandomResizedCrop(size, scale=(0.3, 1.0), ratio=(0.75, 1.33)))
        else:
            steps.append(K.RandomAffine(degrees=5.0, translate=(0.1, 0.1), scale=(0.75, 1.5), p=0.8))
        steps += [
            K.RandomHorizontalFlip(p=0.5),
            K.ColorJiggle(brightness=0.2, contrast=0.2, saturation=0.2 if in_channels == 3 else 0.0, p=0.8),
            K.RandomGaussianNoise(std=0.02, p=0.2),
        ]
    return Augmentation(*steps, ignore_index=ignore_index, crop_size=size)
