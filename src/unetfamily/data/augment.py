"""Joint image + mask augmentation on top of kornia (the ``augment`` extra).

kornia's :class:`~kornia.augmentation.AugmentationSequential` with ``data_keys=["input", "mask"]``
draws one set of parameters per sample and applies it to both tensors: geometric steps warp the
mask with nearest-neighbour resampling (its default ``extra_args``), intensity steps skip the
mask. Padding fills masks with 0, which would silently label new border pixels as class 0, so
:class:`Augmentation` shifts the mask by +1 before the warp and maps the 0 fill to
``ignore_index`` afterwards. The same module works on one sample (``(C, H, W)`` / ``(H, W)``, in
DataLoader workers) and on a collated batch (``(N, C, H, W)`` / ``(N, H, W)``, on the GPU).

:class:`ForegroundCrop` (nnU-Net's foreground oversampling) is a plain module run before the
kornia steps. Everything here draws from torch's global RNG; :func:`~unetfamily.data.make_loader`
seeds it per sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unetfamily.data import options
from unetfamily.data.errors import DataConfigError, unknown_choice
from unetfamily.errors import require

__all__ = ["PRESETS", "Augmentation", "ForegroundCrop", "build_augmentation"]

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
        crop: a module run on the sample dict before the kornia steps (e.g. :class:`ForegroundCrop`).

    ``forward`` takes a sample or batch dict and returns a new dict with the same keys:
    ``image`` float ``(C, H, W)`` or ``(N, C, H, W)`` clipped to [0, 1], ``mask`` int64
    ``(H, W)`` or ``(N, H, W)``; other keys (``name``) pass through.
    """

    def __init__(
        self, *steps: nn.Module, ignore_index: int = 255, crop_size: tuple[int, int] | None = None,
        crop: nn.Module | None = None,
    ) -> None:
        super().__init__()
        K = _kornia()
        self.ignore_index = ignore_index
        self.crop_size = crop_size
        self.crop = crop
        from kornia.constants import DataKey, Resample

        # kornia's default mask args leave align_corners=None, which grid_sample warns about;
        # False is what that None resolves to, so the result is unchanged.
        mask_args = {DataKey.MASK: {"resample": Resample.NEAREST, "align_corners": False}}
        self.steps = K.AugmentationSequential(*steps, data_keys=["input", "mask"], extra_args=mask_args)

    def forward(self, sample: dict[str, Any]) -> dict[str, Any]:
        if self.crop is not None:
            sample = self.crop(sample)
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


def _randint(n: int) -> int:
    """A uniform integer in ``[0, n)`` from torch's global RNG."""
    return int(torch.randint(n, (1,)).item())


class ForegroundCrop(nn.Module):
    """A random ``size`` window that, with probability ``foreground``, holds a foreground pixel.

    nnU-Net's foreground oversampling: a forced window picks one class uniformly among the
    foreground classes in the sample (mask values other than ``ignore_index``, and other than 0
    when class 0 is a ``background``; a content class 0, CamVid's ``sky``, is a candidate like
    every class), so a rare class is chosen as often as a common one, then a uniform pixel of that
    class, then a uniform window of ``size`` holding it (inside the image). Other windows, and every
    window of a sample without foreground, are uniform. An image smaller than ``size`` is first
    padded, evenly on both sides (image 0, mask ``ignore_index``).

    ``forward`` takes a sample dict (image ``(C, H, W)``, mask ``(H, W)``) or a batch
    (``(N, C, H, W)`` / ``(N, H, W)``, one draw per sample) and returns it with image ``(C, h, w)``
    (or ``(N, C, h, w)``) and mask ``(h, w)`` (or ``(N, h, w)``), ``(h, w) = size``. Randomness
    comes from torch's global RNG only.
    """

    def __init__(self, size: int | Sequence[int], foreground: float = 0.0, ignore_index: int = 255,
                 background: bool = True) -> None:
        super().__init__()
        self.size = options.size("augment.crop_size", size)
        self.foreground = options.number("augment.foreground", foreground, lo=0.0, hi=1.0)
        self.ignore_index = ignore_index
        self.background = background

    def forward(self, sample: dict[str, Any]) -> dict[str, Any]:
        image, mask = sample["image"], sample["mask"]
        if image.ndim == 4:
            pairs = [self._crop(i, m) for i, m in zip(image, mask)]
            image, mask = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
        else:
            image, mask = self._crop(image, mask)
        return {**sample, "image": image, "mask": mask}

    def _crop(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """One sample's window: image ``(C, H, W)``, mask ``(H, W)`` -> ``(C, h, w)``, ``(h, w)``."""
        image, mask = self._pad(image, mask)
        pixel = self._foreground_pixel(mask) if float(torch.rand(())) < self.foreground else None
        (height, width), (h, w) = mask.shape, self.size
        top = _window_start(height, h, None if pixel is None else pixel[0])
        left = _window_start(width, w, None if pixel is None else pixel[1])
        return image[:, top:top + h, left:left + w], mask[top:top + h, left:left + w]

    def _pad(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        short_h, short_w = (max(0, s - have) for s, have in zip(self.size, mask.shape))
        if not short_h and not short_w:
            return image, mask
        pad = (short_w // 2, short_w - short_w // 2, short_h // 2, short_h - short_h // 2)
        return F.pad(image, pad, value=0.0), F.pad(mask, pad, value=self.ignore_index)

    def _foreground_pixel(self, mask: Tensor) -> tuple[int, int] | None:
        """(row, col) of a pixel of a uniformly chosen foreground class of ``mask`` (class 0 too when it is content,
        not a ``background``); None without one."""
        labels = torch.unique(mask)
        keep = labels != self.ignore_index
        if self.background:
            keep &= labels != 0
        labels = labels[keep]
        if labels.numel() == 0:
            return None
        chosen = labels[_randint(labels.numel())]
        where = (mask == chosen).nonzero()
        row, col = where[_randint(where.shape[0])].tolist()
        return row, col

    def extra_repr(self) -> str:
        return (f"size={self.size}, foreground={self.foreground:g}, ignore_index={self.ignore_index}"
                + ("" if self.background else ", background=False"))


def _window_start(length: int, size: int, pixel: int | None) -> int:
    """Uniform start of a ``size`` window in ``[0, length)``, holding ``pixel`` when given."""
    lo, hi = (0, length - size) if pixel is None else (max(0, pixel - size + 1), min(pixel, length - size))
    return lo + _randint(hi - lo + 1)


def build_augmentation(
    preset: Preset = "light",
    *,
    ignore_index: int = 255,
    crop_size: int | Sequence[int] | None = None,
    in_channels: int = 3,
    foreground: float = 0.0,
    background: bool = True,
) -> Augmentation:
    """A ready augmentation for a kind of data.

    - ``light``: flips, 90-degree rotations, mild brightness/contrast. Safe for any top-down image.
    - ``medical``: ``light`` plus affine (rotation, scale, shear), elastic deformation (U-Net
      paper's key augmentation), gamma and Gaussian noise. Microscopy, EM, endoscopy.
    - ``natural``: horizontal flip only (scenes have an up), random scale-and-crop, colour
      jitter, light noise. Street scenes, photos.

    ``crop_size`` (int or ``(H, W)``) first takes a random crop of that size, padding with
    ``ignore_index`` when the image is smaller (``natural`` uses a random resized crop instead).
    ``foreground`` in [0, 1] (needs ``crop_size``; 0: the crops above) makes that first crop a
    :class:`ForegroundCrop`: with this probability the window holds a foreground pixel (of class 0 too
    when ``background`` is False: class 0 is content, the data's ``has_background``). ``natural``
    then crops at ``crop_size`` and replaces its random resized crop by a random affine scale.
    ``in_channels`` adds saturation jitter to ``natural`` for RGB images.
    """
    if preset not in PRESETS:
        raise unknown_choice("augment preset", preset, PRESETS)
    size = options.size("augment crop_size", crop_size)
    foreground = options.number("augment.foreground", foreground, lo=0.0, hi=1.0)
    if foreground > 0 and size is None:
        raise DataConfigError(f"augment.foreground={foreground:g} needs augment.crop_size: oversampling foreground "
                              "chooses where to crop; give crop_size or set foreground to 0")
    crop = ForegroundCrop(size, foreground, ignore_index, background) if foreground > 0 else None
    K = _kornia()
    steps: list[nn.Module] = []
    if size is not None and preset != "natural" and crop is None:
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
    else:
        steps += _natural_steps(K, size if crop is None else None, in_channels)
    return Augmentation(*steps, ignore_index=ignore_index, crop_size=size, crop=crop)


def _natural_steps(K: Any, resized_crop: tuple[int, int] | None, in_channels: int) -> list[nn.Module]:
    """The ``natural`` preset: a random resized crop to ``resized_crop`` (else an affine scale), flip, colour."""
    if resized_crop is not None:
        first = K.RandomResizedCrop(resized_crop, scale=(0.3, 1.0), ratio=(0.75, 1.33))
    else:
        first = K.RandomAffine(degrees=5.0, translate=(0.1, 0.1), scale=(0.75, 1.5), p=0.8)
    return [
        first,
        K.RandomHorizontalFlip(p=0.5),
        K.ColorJiggle(brightness=0.2, contrast=0.2, saturation=0.2 if in_channels == 3 else 0.0, p=0.8),
        K.RandomGaussianNoise(std=0.02, p=0.2),
    ]
