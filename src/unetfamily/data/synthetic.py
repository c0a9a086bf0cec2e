"""SyntheticShapes: the built-in, download-free dataset the demo, ``compare`` and tests run on.

Each image is a textured, unevenly lit background with three kinds of objects:

- blobs (class 1): ellipses from 2 to 25 % of the image size, smooth and bright, some touching;
- polygons (class 2): star-shaped polygons with a striped texture;
- vessels (class 3): thin (1-3 px) curved dark lines that cross other objects.

``num_classes=2`` merges the three into one foreground class; ``num_classes=4`` keeps them apart.
Small objects, touching objects and thin structures are where FCN, U-Net, UNet++ and UNet3+
differ; the intensity contrast keeps the task learnable by a small U-Net in about a minute on a
CPU at 64-128 px.

Sample ``i`` depends only on ``(seed, split, i)`` (numpy ``SeedSequence``), so it is the same in
any order, process or worker. Generation is vectorised numpy: about a millisecond per 96 px sample.
"""

from __future__ import annotations

import zlib
from functools import lru_cache

import numpy as np

from unetfamily.data.base import DatasetInfo, SegmentationDataset, Transform
from unetfamily.data.errors import DataConfigError

__all__ = ["SyntheticShapes", "render_shapes"]

CLASSES = {2: ["background", "foreground"], 4: ["background", "blob", "polygon", "vessel"]}


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return yy, xx


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """A smooth random field in [-1, 1]: a ``cells`` x ``cells`` grid upsampled bilinearly."""
    coarse = rng.uniform(-1.0, 1.0, (cells + 1, cells + 1)).astype(np.float32)
    pos = np.linspace(0, cells, size, dtype=np.float32)
    lo = np.minimum(pos.astype(int), cells - 1)
    frac = pos - lo
    weights = np.zeros((size, cells + 1), np.float32)
    weights[np.arange(size), lo] = 1 - frac
    weights[np.arange(size), lo + 1] = frac
    return weights @ coarse @ weights.T


def _rotated(yy, xx, cy, cx, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates relative to ``(cy, cx)`` in a frame turned by ``t``: along (u) and across (v)."""
    u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
    v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
    return u, v


def _ellipse(rng, yy, xx, cy, cx, radius) -> np.ndarray:
    a, b = radius * rng.uniform(0.7, 1.0), radius * rng.uniform(0.5, 1.0)
    u, v = _rotated(yy, xx, cy, cx, rng.uniform(0, np.pi))
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def _polygon(rng, yy, xx, cy, cx, radius) -> np.ndarray:
    """A star-shaped polygon with 5-8 vertices, rasterised exactly (inside every edge's half-plane)."""
    k = int(rng.integers(5, 9))
    angles = np.sort(((np.arange(k) + rng.uniform(-0.3, 0.3, k)) * (2 * np.pi / k)) % (2 * np.pi))
    radii = radius * rng.uniform(0.55, 1.0, k)
    vx, vy = cx + radii * np.cos(angles), cy + radii * np.sin(angles)
    phi = np.arctan2(yy - cy, xx - cx) % (2 * np.pi)
    i = (np.searchsorted(angles, phi) - 1) % k  # edge from vertex i to i + 1 spans this angle
    j = (i + 1) % k
    ex, ey = vx[j] - vx[i], vy[j] - vy[i]
    side = ex * (yy - vy[i]) - ey * (xx - vx[i])
    centre = ex * (cy - vy[i]) - ey * (cx - vx[i])
    return side * centre >= 0


def _vessel(rng, yy, xx, size) -> np.ndarray:
    """A thin wavy line across the image: distance to y = f(x) in a rotated frame below a half-width."""
    t = rng.uniform(0, np.pi)
    cx, cy = rng.uniform(0.2, 0.8, 2) * size
    u, v = _rotated(yy, xx, cy, cx, t)
    amp = rng.uniform(0.04, 0.15, 2) * size
    freq = 2 * np.pi / (rng.uniform(0.4, 1.2, 2) * size)
    phase = rng.uniform(0, 2 * np.pi, 2)
    f = amp[0] * np.sin(freq[0] * u + phase[0]) + amp[1] * np.sin(freq[1] * u + phase[1])
    df = amp[0] * freq[0] * np.cos(freq[0] * u + phase[0]) + amp[1] * freq[1] * np.cos(freq[1] * u + phase[1])
    width = rng.uniform(0.6, 1.4) + 0.4 * np.sin(u / size * rng.uniform(2, 6))
    length = rng.uniform(0.4, 1.0) * size
    return (np.abs(v - f) / np.sqrt(1 + df**2) <= width) & (np.abs(u) <= length)


def render_shapes(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one sample: image ``(size, size)`` float32 in [0, 1], mask ``(size, size)`` uint8 in 0..3."""
    yy, xx = _grid(size)
    mask = np.zeros((size, size), np.uint8)
    # Blobs: a mix of small and large ellipses, the first two touching.
    n_blobs = int(rng.integers(2, 6))
    radii = (
        np.where(rng.random(n_blobs) < 0.5, rng.uniform(0.03, 0.07, n_blobs), rng.uniform(0.1, 0.22, n_blobs)) * size
    )
    centres = rng.uniform(0.1, 0.9, (n_blobs, 2)) * size
    if n_blobs >= 2:
        angle = rng.uniform(0, 2 * np.pi)
        centres[1] = centres[0] + 0.95 * (radii[0] + radii[1]) * np.array([np.sin(angle), np.cos(angle)])
    shading = np.zeros((size, size), np.float32)
    for (cy, cx), r in zip(centres, radii, strict=True):
        inside = _ellipse(rng, yy, xx, cy, cx, max(r, 1.5))
        mask[inside] = 1
        d2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / max(r, 1.5) ** 2
        shading = np.where(inside, 0.12 * np.clip(1 - d2, 0, 1), shading)
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(0.15, 0.85, 2) * size
        mask[_polygon(rng, yy, xx, cy, cx, rng.uniform(0.08, 0.2) * size)] = 2
    for _ in range(int(rng.integers(1, 4))):
        mask[_vessel(rng, yy, xx, size)] = 3

    # Intensities: class means overlap the background's range; texture and shape tell them apart.
    stripes = 0.08 * np.sin(
        (xx * np.cos(rng.uniform(0, np.pi)) + yy * np.sin(rng.uniform(0, np.pi))) * rng.uniform(0.8, 1.4)
    )
    background = 0.38 + 0.10 * _smooth_noise(rng, size, 4) + 0.05 * _smooth_noise(rng, size, 16)
    levels = np.array([0.0, 0.62, 0.55, 0.16], np.float32) + rng.uniform(-0.04, 0.04, 4).astype(np.float32)
    image = np.where(mask == 0, background, levels[mask])
    image = image + np.where(mask == 1, shading, 0) + np.where(mask == 2, stripes, 0)
    image = (image - 0.5) * (1 + 0.25 * _smooth_noise(rng, size, 2)) + 0.5  # uneven illumination
    blurred = image.copy()  # a 3x3 box blur softens edges, as a microscope's point-spread would
    blurred[1:-1, 1:-1] = (
        sum(image[1 + dy : size - 1 + dy, 1 + dx : size - 1 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9
    )
    image = blurred + rng.normal(0.0, 0.05, (size, size)).astype(np.float32)
    return np.clip(image, 0.0, 1.0).astype(np.float32), mask


class SyntheticShapes(SegmentationDataset):
    """Deterministic synthetic segmentation data (see the module docstring).

    Args:
        num_samples: dataset length.
        size: image height and width in pixels.
        num_classes: 2 (background / any object, one sigmoid output) or 4 (background, blob,
            polygon, vessel).
        seed: sample ``i`` is a function of ``(seed, split, i)`` only.
        in_channels: 1 (grayscale) or 3 (the same image in three channels, each with its own noise).
        split: a name mixed into the seed, so ``train``, ``val`` and ``test`` never share samples.
        cache: keep generated samples in memory (they are cheap to regenerate either way).
        transform: called on each sample dict.

    Samples: ``image`` (in_channels, size, size) float32, ``mask`` (size, size) int64.
    """

    def __init__(
        self,
        num_samples: int,
        size: int = 96,
        num_classes: int = 2,
        seed: int = 0,
        *,
        in_channels: int = 1,
        split: str = "train",
        cache: bool = True,
        transform: Transform | None = None,
    ) -> None:
        if num_classes not in CLASSES:
            raise DataConfigError(f"SyntheticShapes supports num_classes 2 or 4, not {num_classes}")
        if in_channels not in (1, 3):
            raise DataConfigError(f"SyntheticShapes supports in_channels 1 or 3, not {in_channels}")
        if size < 16 or num_samples < 1:
            raise DataConfigError(f"SyntheticShapes needs size >= 16 and num_samples >= 1; got {size}, {num_samples}")
        self.num_samples, self.size, self.seed, self.split = int(num_samples), int(size), int(seed), split
        self._split_key = zlib.crc32(split.encode())
        info = DatasetInfo(list(CLASSES[num_classes]), ignore_index=255, in_channels=in_channels)
        super().__init__(info, cache=cache, transform=transform)

    def __len__(self) -> int:
        return self.num_samples

    def sample_name(self, index: int) -> str:
        return f"synthetic_{self.split}_{index:05d}"

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, self._split_key, index])
        image, mask = render_shapes(rng, self.size)
        if self.info.num_classes == 2:
            mask = (mask > 0).astype(np.uint8)
        if self.info.in_channels == 3:
            tint = np.array([1.0, 0.9, 1.1], np.float32)
            image = np.clip(image[..., None] * tint + rng.normal(0, 0.02, (*image.shape, 3)), 0, 1)
        else:
            image = image[..., None]
        return image.astype(np.float32), mask
