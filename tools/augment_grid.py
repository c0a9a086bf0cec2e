"""Write one PNG grid per augmentation preset to check by eye that masks stay on their objects.

    python tools/augment_grid.py                                   # synthetic, 4 classes
    python tools/augment_grid.py --config configs/data/kvasir_seg.yaml --out reports/augment
    python tools/augment_grid.py --config camvid --presets natural --crop 352 480

Each row is one sample: the original image and its overlay, then ``--draws`` augmented pairs.
Overlays (:func:`unetfamily.overlay.overlay`) tint each class with its colour and grey out
ignored pixels, so padding introduced by a warp shows up at once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from unetfamily.data import SegmentationDataset, build_augmentation, build_dataset
from unetfamily.data.augment import PRESETS
from unetfamily.files import atomic_write
from unetfamily.overlay import overlay

GAP = 4  # white pixels between image/overlay pairs and between rows


def to_rgb(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W, 3) uint8."""
    return overlay(image.numpy(), np.zeros(image.shape[-2:], np.int64))  # nothing to tint: the image as RGB


def fit(cell: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``cell`` (H, W, 3) resized to ``size`` (H, W) by nearest neighbour, so masks keep their classes."""
    if cell.shape[:2] == size:
        return cell
    return np.asarray(Image.fromarray(cell).resize(size[::-1], Image.NEAREST))


def row_for(sample: dict, augmented: list[dict], ignore_index: int, background: bool = True) -> np.ndarray:
    """(H, W', 3): the sample and its augmentations, each as image then overlay (class 0 tinted unless background)."""
    cells = []
    for s in [sample, *augmented]:
        cells += [to_rgb(s["image"]), overlay(s["image"].numpy(), s["mask"].numpy(), 0.55, ignore_index, background)]
    size = cells[0].shape[:2]
    gap = np.full((size[0], GAP, 3), 255, np.uint8)
    row = []
    for k, cell in enumerate(cells):
        row += [fit(cell, size)] + ([gap] if k % 2 == 1 else [])
    return np.concatenate(row, axis=1)


def grid_for(dataset: SegmentationDataset, preset: str, indices: list[int], draws: int, crop, seed: int) -> np.ndarray:
    """(H, W, 3) uint8: one row per sample index, ``draws`` augmentations each."""
    info = dataset.info
    aug = build_augmentation(preset, ignore_index=info.ignore_index, crop_size=crop, in_channels=info.in_channels)
    torch.manual_seed(seed)
    rows = []
    for i in indices:
        sample = dataset[i]
        rows.append(row_for(sample, [aug(sample) for _ in range(draws)], info.ignore_index, info.has_background))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, GAP), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", default="configs/data/synthetic_multiclass.yaml", help="YAML config or dataset type")
    parser.add_argument("--split", default="train", help="split to draw the samples from")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS, help="one grid per preset")
    parser.add_argument("--samples", type=int, default=4, help="rows per grid")
    parser.add_argument("--draws", type=int, default=3, help="augmented pairs per row")
    parser.add_argument("--resize", type=int, nargs="+", help="resize samples first (H [W]), e.g. for large photos")
    parser.add_argument("--crop", type=int, nargs="+", help="augmentation crop_size (H [W])")
    parser.add_argument("--seed", type=int, default=0, help="torch seed of the augmentations")
    parser.add_argument("--out", type=Path, default=Path("reports/augment"), help="output folder")
    args = parser.parse_args()

    overrides = {"augment": None}
    if args.resize:
        overrides["resize"] = args.resize if len(args.resize) == 2 else args.resize[0]
    dataset = build_dataset(args.config, args.split, **overrides)
    crop = None if not args.crop else (args.crop[0] if len(args.crop) == 1 else tuple(args.crop))
    indices = list(range(min(args.samples, len(dataset))))
    name = Path(args.config).stem
    for preset in args.presets:
        grid = Image.fromarray(grid_for(dataset, preset, indices, args.draws, crop, args.seed))
        path = atomic_write(args.out / f"augment_{name}_{preset}.png", lambda f, grid=grid: grid.save(f, format="PNG"))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
