"""Prediction: probabilities and class masks for images of any size, and the ``predict`` command.

:class:`Predictor` wraps a model in eval mode. An image larger than ``tile_size`` is predicted
tile by tile (:mod:`unetfamily.engine.inference`, Gaussian-weighted blending of overlapping
tiles, batched), a smaller one whole. Options: flip test-time augmentation (identity, h-flip,
v-flip, both; each output un-flipped before averaging), UNet++ pruning level / inference mode,
binary threshold, bf16 autocast.

Tiles are blended as PROBABILITIES, not logits: a weighted mean of probabilities is itself a
probability (it stays in [0, 1] and multi-class rows still sum to 1), it is the same average
that flip TTA takes, and no single tile can dominate it. Logits are unbounded: the UNet3+ CGM
writes -1e4 into every pixel of a tile it judges empty, and averaged logits would let that one
tile erase its neighbours' foreground along the whole overlap; averaged probabilities make it
one vote weighted like any other.

Binary models (num_classes 1): probabilities (1, H, W) = sigmoid, mask = prob > threshold.
Multi-class: probabilities (K, H, W) = softmax, mask = argmax. Images are (C, H, W), float in
[0, 1] or uint8 (divided by 255 tile by tile, so a large image stays 1 byte per value).
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import torch
from torch import Tensor, nn

from unetfamily.engine.inference import BlendMode, sliding_window_strips, tile_starts
from unetfamily.models import UNetPlusPlus, final_output

__all__ = ["Prediction", "Predictor", "load_image", "overlay", "palette", "add_parser"]

log = logging.getLogger(__name__)

FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))  # identity, h-flip, v-flip, both


@dataclass
class Prediction:
    """One image's prediction, on the CPU.

    ``probabilities``: (K, H, W) float32 (K = 1 for binary models: the foreground probability),
    None when not kept. ``mask``: (H, W) class indices, uint8 (int32 above 256 classes).
    """

    probabilities: Tensor | None
    mask: Tensor


class Predictor:
    """Predict images of any size with a segmentation model.

    Args:
        model: a unetfamily model (``num_classes`` and ``in_channels`` attributes); put in eval mode.
        tile_size: images taller or wider than this are predicted in tiles of at most this size;
            None predicts every image whole.
        overlap: fraction shared by neighbouring tiles, in [0, 1).
        batch_size: tiles per forward pass.
        blend: tile weighting, "gaussian" (centre-weighted) or "constant".
        tta: average the probabilities over identity, h-flip, v-flip and both flips.
        threshold: binary models only: foreground where probability > threshold.
        level: UNet++ only: use the pruned depth-``level`` sub-network (needs deep supervision).
        mode: UNet++ only: "accurate" averages all heads, "fast" uses one head (``level``,
            default the deepest). None (default) uses the model's final output.
        amp: run the model under bf16 autocast (outputs are converted to float32).
        device: where the model runs (default: where its parameters are).
    """

    def __init__(
        self,
        model: nn.Module,
        tile_size: int | None = 256,
        overlap: float = 0.25,
        batch_size: int = 4,
        blend: BlendMode = "gaussian",
        tta: bool = False,
        threshold: float = 0.5,
        level: int | None = None,
        mode: Literal["accurate", "fast"] | None = None,
        amp: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        if (level is not None or mode is not None) and not isinstance(model, UNetPlusPlus):
            raise ValueError(
                f"level/mode select UNet++ heads; this model is a {type(model).__name__}. Leave them unset."
            )
        if mode not in (None, "accurate", "fast"):
            raise ValueError(f"mode={mode!r} is not valid; choose 'accurate' or 'fast'")
        if mode == "accurate" and level is not None:
            raise ValueError("mode='accurate' averages every head; a level needs mode='fast' (or no mode)")
        if isinstance(model, UNetPlusPlus) and level is not None:
            model._check_level(level)  # fails now, naming the level, rather than on the first image
        if tile_size is not None and tile_size < 1:
            raise ValueError(f"tile_size={tile_size} must be positive (or None to never tile)")
        if not 0 <= overlap < 1 or batch_size < 1:
            raise ValueError(f"overlap={overlap} must be in [0, 1) and batch_size={batch_size} positive")
        if blend not in ("gaussian", "constant"):
            raise ValueError(f"blend={blend!r} is not valid; choose 'gaussian' or 'constant'")
        if not 0 <= threshold <= 1:
            raise ValueError(f"threshold={threshold} must be in [0, 1]")
        param = next(model.parameters(), None)
        self.device = torch.device(device) if device is not None else (param.device if param is not None else torch.device("cpu"))
        self.model = model.to(self.device).eval()
        self.num_classes: int = model.num_classes
        self.in_channels: int = model.in_channels
        self.tile_size, self.overlap, self.batch_size, self.blend = tile_size, overlap, batch_size, blend
        self.tta, self.threshold, self.level, self.mode, self.amp = tta, threshold, level, mode, amp
        self.classes: list[str] | None = None  # class names (background first), from a checkpoint
        self.mask_dtype = torch.uint8 if max(self.num_classes, 2) <= 256 else torch.int32

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: torch.device | str = "cpu", **kwargs: object) -> "Predictor":
        """A predictor for the model in a checkpoint file or run folder; ``kwargs`` as the constructor."""
        from unetfamily.engine.checkpoint import load_model

        model, ckpt = load_model(path, device)
        predictor = cls(model, device=device, **kwargs)
        predictor.classes = ckpt.extra.get("classes")
        return predictor

    def logits(self, x: Tensor) -> Tensor:
        """Final logits (B, K, h, w) float32 of ``x`` (B, C, h, w) float, on the model's device."""
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.amp else contextlib.nullcontext()
        with autocast:
            if self.mode is not None:
                out = self.model.predict(x, mode=self.mode, level=self.level)
            elif self.level is not None:
                out = self.model.forward_level(x, self.level)
            else:
                out = final_output(self.model(x))
        return out.float()

    @torch.inference_mode()
    def probabilities(self, x: Tensor) -> Tensor:
        """Probabilities (B, K, h, w) float32 of tiles ``x`` (B, C, h, w), float in [0, 1] or uint8."""
        x = x.to(self.device)
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        flips = FLIPS if self.tta else FLIPS[:1]
        total = None
        for dims in flips:
            p = self._activate(self.logits(x.flip(dims) if dims else x))
            p = p.flip(dims) if dims else p
            total = p if total is None else total + p
        return total / len(flips)

    def _activate(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits) if self.num_classes == 1 else torch.softmax(logits, dim=1)

    def to_mask(self, probabilities: Tensor) -> Tensor:
        """Class indices (..., H, W) of probabilities (..., K, H, W): threshold (binary) or argmax."""
        if self.num_classes == 1:
            return (probabilities[..., 0, :, :] > self.threshold).to(self.mask_dtype)
        return probabilities.argmax(dim=-3).to(self.mask_dtype)

    def roi_size(self, height: int, width: int) -> tuple[int, int]:
        """The tile size used for an image of ``height`` x ``width`` (the image itself if untiled)."""
        if self.tile_size is None:
            return height, width
        return min(self.tile_size, height), min(self.tile_size, width)

    def num_tiles(self, height: int, width: int) -> int:
        """How many tiles (forward passes per flip) an image of ``height`` x ``width`` takes."""
        roi_h, roi_w = self.roi_size(height, width)
        return len(tile_starts(height, roi_h, self.overlap)) * len(tile_starts(width, roi_w, self.overlap))

    @torch.inference_mode()
    def predict(self, image: Tensor, keep_probabilities: bool = True) -> Prediction:
        """Predict one image (C, H, W), float in [0, 1] or uint8, any H and W.

        The output is built strip by strip; with ``keep_probabilities=False`` only the (H, W)
        mask is kept, so memory is the image, the mask and one tile row's accumulator.
        """
        if image.dim() != 3 or image.shape[0] != self.in_channels:
            raise ValueError(f"image must be ({self.in_channels}, H, W) for this model, got shape {tuple(image.shape)}")
        if not (image.dtype == torch.uint8 or image.is_floating_point()):
            raise ValueError(f"image dtype {image.dtype} is not supported; pass float in [0, 1] or uint8")
        _, height, width = image.shape
        mask = torch.empty(height, width, dtype=self.mask_dtype)
        probs = torch.empty(self.num_classes, height, width) if keep_probabilities else None
        strips = sliding_window_strips(
            self.probabilities, image[None], self.roi_size(height, width), self.overlap, self.batch_size,
            self.blend, sw_device=self.device, device="cpu",
        )
        for row, block in strips:
            rows = slice(row, row + block.shape[2])
            mask[rows] = self.to_mask(block[0])
            if probs is not None:
                probs[:, rows] = block[0]
        return Prediction(probs, mask)


# ----------------------------------------------------------------------------- files


def load_image(path: str | Path, in_channels: int) -> Tensor:
    """Read an image file as (in_channels, H, W): uint8 for 8-bit files, else float32 in [0, 1].

    Pillow (tifffile for TIFF) decodes it; gray <-> RGB is converted as Pillow's "L"/"RGB" would,
    alpha dropped. Raises :class:`unetfamily.data.errors.DataError` naming the file when it
    cannot be read or its channels cannot be made ``in_channels``.
    """
    from unetfamily.data.io import image_to_float, read_image, to_channels

    arr = to_channels(read_image(path), in_channels, path)
    if arr.dtype != np.uint8:
        arr = image_to_float(arr, path)
    if not arr.flags.writeable:
        arr = arr.copy()
    return torch.from_numpy(arr).permute(2, 0, 1)


def palette(num_colors: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map: (num_colors, 3) uint8; class 0 black, 1 (128, 0, 0), 2 (0, 128, 0), ..."""
    colors = np.zeros((num_colors, 3), dtype=np.uint8)
    for i in range(num_colors):
        c, rgb = i, [0, 0, 0]
        for bit in range(8):
            for ch in range(3):
                rgb[ch] |= ((c >> ch) & 1) << (7 - bit)
            c >>= 3
        colors[i] = rgb
    return colors


def overlay(image: Tensor, mask: Tensor) -> np.ndarray:
    """(H, W, 3) uint8: ``image`` (C, H, W) with every non-background pixel mixed 50/50 with its class colour."""
    img = image if image.dtype == torch.uint8 else (image.float().clamp(0, 1) * 255).round().to(torch.uint8)
    img = img[:3] if img.shape[0] >= 3 else img[:1].expand(3, -1, -1)
    rgb = img.permute(1, 2, 0).numpy()
    m = mask.numpy()
    colors = palette(max(int(m.max()) + 1, 2))[m]
    mixed = ((rgb.astype(np.uint16) + colors) // 2).astype(np.uint8)
    return np.where((m > 0)[..., None], mixed, rgb)


def _write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` through a hidden temporary file renamed over it: never a half-written output."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    _write_atomic(path, lambda f: Image.fromarray(array).save(f, format="PNG"))


def write_outputs(
    pred: Prediction,
    image: Tensor,
    out_dir: Path,
    stem: str,
    binary_255: bool = False,
    probabilities: Literal["npy", "png"] | None = None,
    with_overlay: bool = False,
) -> list[Path]:
    """Write ``<stem>.png`` (mask) and, when asked, probabilities and ``<stem>_overlay.png``; returns the paths.

    Masks are 8-bit grayscale class indices (16-bit above 256 classes), or 0/255 with
    ``binary_255``. Probabilities: ``<stem>_prob.npy`` (K, H, W) float32, or 16-bit PNGs scaled
    to 0..65535: ``<stem>_prob.png`` for binary models, ``<stem>_prob_<k>.png`` per class otherwise.
    """
    written = []
    mask = pred.mask.numpy()
    mask = (mask * 255).astype(np.uint8) if binary_255 else mask.astype(np.uint8 if mask.dtype == np.uint8 else np.uint16)
    written.append(out_dir / f"{stem}.png")
    _write_png(written[-1], mask)
    if probabilities is not None:
        if pred.probabilities is None:
            raise ValueError("the prediction kept no probabilities; call predict(keep_probabilities=True)")
        probs = pred.probabilities.numpy()
        if probabilities == "npy":
            written.append(out_dir / f"{stem}_prob.npy")
            _write_atomic(written[-1], lambda f: np.save(f, probs))
        else:
            for k, p in enumerate(probs):
                written.append(out_dir / (f"{stem}_prob.png" if len(probs) == 1 else f"{stem}_prob_{k}.png"))
                _write_png(written[-1], np.round(p * 65535).astype(np.uint16))
    if with_overlay:
        written.append(out_dir / f"{stem}_overlay.png")
        _write_png(written[-1], overlay(image, pred.mask))
    return written


def collect_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files from file and folder arguments (folders: their images, not recursive, natural order)."""
    from unetfamily.data.errors import DataError
    from unetfamily.data.formats import list_images

    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = list_images(item)
            if not found:
                raise DataError(f"{item}: folder holds no images (.png, .jpg, .jpeg, .tif, .tiff, .bmp)")
            files.extend(found)
        elif item.is_file():
            files.append(item)
        else:
            raise DataError(f"{item}: input not found; pass image files or folders of images")
    return files


# ----------------------------------------------------------------------------- command line


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``unetfamily predict``."""
    p = subparsers.add_parser("predict", help="predict masks for images with a trained checkpoint")
    p.add_argument("--checkpoint", required=True, help="checkpoint .safetensors file or run folder")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.add_argument("--tile-size", type=int, default=256, help="tile images larger than this; 0 = never tile (256)")
    p.add_argument("--overlap", type=float, default=0.25, help="tile overlap fraction (0.25)")
    p.add_argument("--blend", choices=["gaussian", "constant"], default="gaussian", help="tile weighting (gaussian)")
    p.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass (4)")
    p.add_argument("--tta", action="store_true", help="average over h/v flips (4x the work)")
    p.add_argument("--threshold", type=float, default=0.5, help="binary models: foreground probability threshold (0.5)")
    p.add_argument("--level", type=int, help="UNet++: predict with the pruned depth-L sub-network")
    p.add_argument("--mode", choices=["accurate", "fast"], help="UNet++: average all heads, or one head (fast)")
    p.add_argument("--probabilities", nargs="?", const="npy", choices=["npy", "png"],
                   help="also write probabilities: <stem>_prob.npy (default) or 16-bit PNG")
    p.add_argument("--overlay", action="store_true", help="also write <stem>_overlay.png (image + class colours)")
    p.add_argument("--binary-255", action="store_true", help="binary models: write masks as 0/255 instead of 0/1")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--max-pixels", type=int, help="accept images up to this many pixels (Pillow refuses more than "
                   "~89M by default, its decompression-bomb guard); only for files you trust")
    p.set_defaults(func=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    if args.max_pixels is not None:
        Image.MAX_IMAGE_PIXELS = args.max_pixels
    try:
        return _predict_files(args)
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _predict_files(args: argparse.Namespace) -> int:
    from unetfamily.data.errors import DataError
    from unetfamily.engine.checkpoint import CheckpointError

    try:
        if args.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"--device {args.device}: CUDA is not available here; use --device cpu")
        files = collect_inputs(args.inputs)
        predictor = Predictor.from_checkpoint(
            args.checkpoint, args.device, tile_size=args.tile_size or None, overlap=args.overlap,
            batch_size=args.batch_size, blend=args.blend, tta=args.tta, threshold=args.threshold,
            level=args.level, mode=args.mode, amp=args.bf16,
        )
        if args.binary_255 and predictor.num_classes != 1:
            raise ValueError(f"--binary-255 needs a binary model (num_classes=1); this one has {predictor.num_classes} classes")
        stems = _output_stems(files, args.out)
        args.out.mkdir(parents=True, exist_ok=True)
    except (CheckpointError, DataError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    log.info("predicting %d image(s) with %s (classes: %s)", len(files), args.checkpoint, predictor.classes)
    failed = 0
    start = time.perf_counter()
    for path, stem in zip(files, stems):
        try:
            t0 = time.perf_counter()
            image = load_image(path, predictor.in_channels)
            pred = predictor.predict(image, keep_probabilities=args.probabilities is not None)
            write_outputs(pred, image, args.out, stem, args.binary_255, args.probabilities, args.overlay)
            log.info("%s: %dx%d, %d tile(s), %.2fs", path, image.shape[1], image.shape[2],
                     predictor.num_tiles(*image.shape[1:]), time.perf_counter() - t0)
        except (DataError, OSError) as exc:
            failed += 1
            log.error("%s", exc)
    print(f"predicted {len(files) - failed}/{len(files)} image(s) into {args.out} in {time.perf_counter() - start:.1f}s"
          + (f"; {failed} failed (see the log)" if failed else ""))
    return 1 if failed else 0


def _output_stems(files: list[Path], out_dir: Path) -> list[str]:
    """Output stems, refusing two inputs that would write the same file or an output over an input."""
    seen: dict[str, Path] = {}
    for path in files:
        if path.stem in seen:
            raise ValueError(
                f"{seen[path.stem]} and {path} would both write {out_dir / (path.stem + '.png')}; "
                f"predict them into separate --out folders"
            )
        seen[path.stem] = path
        if (out_dir / f"{path.stem}.png").resolve() == path.resolve():
            raise ValueError(f"{path}: its mask would overwrite it; choose another --out folder")
    return list(seen)
