"""Write one PNG grid per augmentation preset to check by eye that masks stay on their objects.

    python tools/augment_grid.py                                   # synthetic, 4 classes
    python tools/augment_grid.py --config configs/data/kvasir_seg.yaml --out reports/augment
    python tools/augment_grid.py --config camvid --presets natural --crop 352 480

Each row is one sample: the original image and its overlay, then ``--draws`` augmented pairs.
Overlays blend each class's colour over the image; ignored pixels are magenta, so padding
introduced by a warp shows up at once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from unetfamily.data import build_augmentation, build_dataset, list_datasets
from unetfamily.data.augment import PRESETS

IGNORE_COLOUR = np.array([255, 0, 255], np.uint8)


def palette(n: int) -> np.ndarray:
    """Distinct colours per class (class 0 transparent in overlays)."""
    rng = np.random.default_rng(3)
    base = np.array([[0, 0, 0], [230, 60, 60], [60, 200, 60], [60, 120, 255], [255, 200, 0], [0, 220, 220]], np.uint8)
    extra = rng.integers(40, 256, (max(0, n - len(base)), 3), dtype=np.uint8)
    return np.concatenate([base, extra])[:n]


def to_rgb(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W, 3) uint8."""
    arr = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    return np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr[..., :3]


def overlay(image: torch.Tensor, mask: torch.Tensor, colours: np.ndarray, ignore_index: int) -> np.ndarray:
    rgb = to_rgb(image).astype(np.float32)
    m = mask.numpy()
    ignored = m == ignore_index
    cls = np.where(ignored, 0, m)
    tint = colours[cls].astype(np.float32)
    out = np.where((cls > 0)[..., None], 0.45 * rgb + 0.55 * tint, rgb)
    out[ignored] = IGNORE_COLOUR
    return out.astype(np.uint8)


def fit(cell: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if cell.shape[:2] == size:
        return cell
    return np.asarray(Image.fromarray(cell).resize(size[::-1], Image.NEAREST))


def grid_for(dataset, preset: str, indices: list[int], draws: int, crop, seed: int) -> np.ndarray:
    info = dataset.info
    aug = build_augmentation(preset, ignore_index=info.ignore_index, crop_size=crop, in_channels=info.in_channels)
    colours = palette(max(info.num_classes, 2))
    torch.manual_seed(seed)
    rows = []
    for i in indices:
        sample = dataset[i]
        cells = [to_rgb(sample["image"]), overlay(sample["image"], sample["mask"], colours, info.ignore_index)]
        for _ in range(draws):
            out = aug(sample)
            cells += [to_rgb(out["image"]), overlay(out["image"], out["mask"], colours, info.ignore_index)]
        size = cells[0].shape[:2]
        gap = np.full((size[0], 4, 3), 255, np.uint8)
        row = []
        for k, cell in enumerate(cells):
            row += [fit(cell, size)] + ([gap] if k % 2 == 1 else [])
        rows.append(np.concatenate(row, axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", default="configs/data/synthetic_multiclass.yaml", help="YAML config or dataset type"
    )
    parser.add_argument("--split", default="train")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    parser.add_argument("--samples", type=int, default=4, help="rows per grid")
    parser.add_argument("--draws", type=int, default=3, help="augmented pairs per row")
    parser.add_argument("--resize", type=int, nargs="+", help="resize samples first (H [W]), e.g. for large photos")
    parser.add_argument("--crop", type=int, nargs="+", help="augmentation crop_size (H [W])")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("reports/augment"), help="output folder")
    args = parser.parse_args()

    config = {"type": args.config} if args.config in list_datasets() else args.config
    overrides = {"augment": None}
    if args.resize:
        overrides["resize"] = args.resize if len(args.resize) == 2 else args.resize[0]
    dataset = build_dataset(config, args.split, **overrides)
    crop = None if not args.crop else (args.crop[0] if len(args.crop) == 1 else tuple(args.crop))
    indices = list(range(min(args.samples, len(dataset))))
    args.out.mkdir(parents=True, exist_ok=True)
    name = Path(args.config).stem
    for preset in args.presets:
        path = args.out / f"augment_{name}_{preset}.png"
        Image.fromarray(grid_for(dataset, preset, indices, args.draws, crop, args.seed)).save(path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
