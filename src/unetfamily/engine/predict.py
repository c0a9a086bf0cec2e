"""Prediction: probabilities and class masks for images of any size, and their files.

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

import contextlib
import io
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unetfamily.engine.inference import BlendMode, sliding_window_strips, tile_starts
from unetfamily.engine.predict_inputs import (
    collect_inputs, output_files, output_stems, refuse_collisions, refuse_existing,
)
from unetfamily.errors import ConfigError
from unetfamily.files import WriteError, atomic_write, atomic_write_bytes
from unetfamily.models import UNetPlusPlus, final_output
from unetfamily.overlay import overlay

__all__ = ["Prediction", "Predictor", "PredictedFiles", "load_image", "output_files", "write_outputs",
           "collect_inputs", "output_stems", "predict_files"]

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

    Unusable options raise :class:`~unetfamily.errors.ConfigError` (a ValueError) naming them.
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
        _check_options(model, tile_size, overlap, batch_size, blend, threshold, level, mode)
        param = next(model.parameters(), None)
        self.device = torch.device(device) if device is not None else (param.device if param is not None else torch.device("cpu"))
        self.model = model.to(self.device).eval()
        self.num_classes: int = model.num_classes
        self.in_channels: int = model.in_channels
        self.tile_size, self.overlap, self.batch_size, self.blend = tile_size, overlap, batch_size, blend
        self.tta, self.threshold, self.level, self.mode, self.amp = tta, threshold, level, mode, amp
        self.classes: list[str] | None = None  # class names (background first), from a checkpoint
        self.background: bool = True  # class 0 is a background, not painted in overlays (a checkpoint's record)
        # The geometry the model's training images had: resized by a factor (a plan's data.scale) or to a fixed
        # (H, W) (data.resize). Images are resized alike, predicted, and the probabilities resized back, so
        # outputs keep the input's size. From a checkpoint's data config; 1.0 / None: as given.
        self.scale: float = 1.0
        self.resize: tuple[int, int] | None = None
        self.mask_dtype = torch.uint8 if max(self.num_classes, 2) <= 256 else torch.int32
        # Tiles enter the model in its weights' dtype (a bf16 or float64 model folder); outputs become float32.
        self.dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: torch.device | str = "cpu", **kwargs: object) -> "Predictor":
        """A predictor for the model in a checkpoint file, run folder or model folder (``save_pretrained``'s:
        ``config.json`` gives its classes and input geometry); ``kwargs`` as the constructor."""
        from unetfamily.data import data_geometry, options as data_options
        from unetfamily.engine.checkpoint import load_model
        from unetfamily.models import from_pretrained

        if Path(path).is_dir() and (Path(path) / "config.json").is_file() and not (Path(path) / "checkpoints").exists():
            model = from_pretrained(path, map_location=device)
            config, data = model.pretrained_config, model.pretrained_config  # classes, scale and resize at the top
        else:
            model, ckpt = load_model(path, device)
            config = {"classes": ckpt.extra.get("classes"), "background": ckpt.extra.get("background")}
            data = ckpt.config.get("data") if isinstance(ckpt.config, dict) else None
        predictor = cls(model, device=device, **kwargs)
        predictor.classes = config.get("classes")
        background = config.get("background")  # checkpoints from before the key: class 0 was a background
        predictor.background = background if isinstance(background, bool) else True
        geometry = data_geometry(data)  # a cross-validated run keeps data.resize in its cv_fold's base
        predictor.scale = float(geometry["scale"] or 1.0)
        predictor.resize = data_options.size("data.resize", geometry["resize"])
        return predictor

    def logits(self, x: Tensor) -> Tensor:
        """Final logits (B, K, h, w) float32 of ``x`` (B, C, h, w) float, on the model's device."""
        x = x.to(self.dtype)
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
        if self.scale != 1.0 or self.resize is not None:
            return self._predict_resampled(image, keep_probabilities)
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

    def _predict_resampled(self, image: Tensor, keep_probabilities: bool) -> Prediction:
        """Predict ``image`` (C, H, W) at the training geometry (``resize``, else ``scale`` x its size), as the
        training data was resized (bilinear, antialiased); probabilities resized back (bilinear) to (H, W)."""
        from unetfamily.data.base import scaled_size

        _, height, width = image.shape
        x = image.float() / 255 if image.dtype == torch.uint8 else image.float()
        size = self.resize if self.resize is not None else scaled_size((height, width), self.scale)
        small = F.interpolate(x[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
        geometry, (self.scale, self.resize) = (self.scale, self.resize), (1.0, None)
        try:
            at_scale = self.predict(small, keep_probabilities=True)
        finally:
            self.scale, self.resize = geometry
        probs = F.interpolate(at_scale.probabilities[None], size=(height, width), mode="bilinear",
                              align_corners=False)[0]
        return Prediction(probs if keep_probabilities else None, self.to_mask(probs))


def _check_options(model: nn.Module, tile_size: int | None, overlap: float, batch_size: int, blend: str,
                   threshold: float, level: int | None, mode: str | None) -> None:
    """Refuse unusable :class:`Predictor` options with a :class:`~unetfamily.errors.ConfigError` naming them."""
    if (level is not None or mode is not None) and not isinstance(model, UNetPlusPlus):
        raise ConfigError(f"level/mode (--level/--mode) select UNet++ heads; this model is a {type(model).__name__}. "
                          "Leave them unset.")
    if mode not in (None, "accurate", "fast"):
        raise ConfigError(f"mode={mode!r} is not valid; choose 'accurate' or 'fast'")
    if mode == "accurate" and level is not None:
        raise ConfigError("mode='accurate' averages every head; a level needs mode='fast' (or no mode)")
    if isinstance(model, UNetPlusPlus) and level is not None:
        try:
            model._check_level(level)  # fails now, naming the level, rather than on the first image
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
    if tile_size is not None and tile_size < 1:
        raise ConfigError(f"tile_size={tile_size} must be positive (or None to never tile)")
    if not 0 <= overlap < 1 or batch_size < 1:
        raise ConfigError(f"overlap={overlap} must be in [0, 1) and batch_size={batch_size} positive")
    if blend not in ("gaussian", "constant"):
        raise ConfigError(f"blend={blend!r} is not valid; choose 'gaussian' or 'constant'")
    if not 0 <= threshold <= 1:
        raise ConfigError(f"threshold={threshold} must be in [0, 1]")


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


def _npy_bytes(array: np.ndarray) -> bytes:
    """``array`` as a .npy file's bytes: numpy writing into a file reports a full disk without its errno."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    atomic_write(path, lambda f: Image.fromarray(array).save(f, format="PNG"))


def write_outputs(
    pred: Prediction,
    image: Tensor,
    out_dir: Path,
    stem: str,
    binary_255: bool = False,
    probabilities: Literal["npy", "png"] | None = None,
    with_overlay: bool = False,
    background: bool = True,
) -> list[Path]:
    """Write ``<stem>.png`` (mask) and, when asked, probabilities and ``<stem>_overlay.png``; returns the paths.

    Masks are 8-bit grayscale class indices (16-bit above 256 classes), or 0/255 with
    ``binary_255``. Probabilities: ``<stem>_prob.npy`` (K, H, W) float32, or 16-bit PNGs scaled
    to 0..65535: ``<stem>_prob.png`` for binary models, ``<stem>_prob_<k>.png`` per class otherwise.
    The overlay tints ``image`` (C, H, W) with the class colours of :mod:`unetfamily.overlay`, class 0 too
    unless it is a ``background``.
    All or none: when one file cannot be written, those already written for this image are deleted.
    """
    if probabilities is not None and pred.probabilities is None:
        raise ValueError("the prediction kept no probabilities; call predict(keep_probabilities=True)")
    mask = pred.mask.numpy()
    mask = (mask * 255).astype(np.uint8) if binary_255 else mask.astype(np.uint8 if mask.dtype == np.uint8 else np.uint16)
    probs = pred.probabilities.numpy() if probabilities is not None and pred.probabilities is not None else None
    paths = output_files(out_dir, stem, len(probs) if probs is not None else 1, probabilities, with_overlay)
    writers = [lambda path: _write_png(path, mask)]
    if probs is not None and probabilities == "npy":
        writers.append(lambda path: atomic_write_bytes(path, _npy_bytes(probs)))
    elif probs is not None:
        writers += [lambda path, p=p: _write_png(path, np.round(p * 65535).astype(np.uint16)) for p in probs]
    if with_overlay:
        writers.append(lambda path: _write_png(path, overlay(image.numpy(), pred.mask.numpy(), ignore_index=None,
                                                             background=background)))
    try:
        for path, write in zip(paths, writers, strict=True):
            write(path)
    except BaseException:
        for path in paths:  # none of this image's outputs rather than some, or a mix of new and old ones
            with contextlib.suppress(OSError):
                path.unlink()
        raise
    return paths


@dataclass
class PredictedFiles:
    """What :func:`predict_files` did: how many images it predicted, which failed and why, how long it took."""

    predicted: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (input, what went wrong)
    seconds: float = 0.0


def predict_files(
    predictor: Predictor,
    files: Sequence[Path],
    out_dir: Path,
    binary_255: bool = False,
    probabilities: Literal["npy", "png"] | None = None,
    with_overlay: bool = False,
    overwrite: bool = False,
) -> PredictedFiles:
    """Predict every file into ``out_dir`` (see :func:`write_outputs`); an unreadable image is recorded and skipped.

    Refused before anything runs (:class:`~unetfamily.errors.ConfigError`): two inputs with the
    same stem, an output that would overwrite its input, and, unless ``overwrite``, any output
    file that already exists. A file that cannot be written (a full disk) stops the run with a
    :class:`~unetfamily.files.WriteError` naming it; the images predicted before it keep all their
    outputs, that image keeps none.
    """
    from unetfamily.data.errors import DataError

    if binary_255 and predictor.num_classes != 1:
        raise ConfigError(f"binary_255 needs a binary model (num_classes=1); this one has {predictor.num_classes} classes")
    stems = output_stems(files, out_dir)
    refuse_collisions(files, [output_files(out_dir, st, predictor.num_classes, probabilities, with_overlay)
                               for st in stems])
    if not overwrite:
        refuse_existing(out_dir, stems, predictor.num_classes, probabilities, with_overlay)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the output folder {out_dir}: {exc.strerror or exc}") from exc
    log.info("predicting %d image(s) (classes: %s)", len(files), predictor.classes)
    done = PredictedFiles()
    start = time.perf_counter()
    for path, stem in zip(files, stems):
        try:
            t0 = time.perf_counter()
            image = load_image(path, predictor.in_channels)
            pred = predictor.predict(image, keep_probabilities=probabilities is not None)
            write_outputs(pred, image, out_dir, stem, binary_255, probabilities, with_overlay, predictor.background)
            log.info("%s: %dx%d, %d tile(s), %.2fs", path, image.shape[1], image.shape[2],
                     predictor.num_tiles(*image.shape[1:]), time.perf_counter() - t0)
            done.predicted += 1
        except DataError as exc:
            done.failed.append((path, str(exc)))
        except WriteError:
            log.warning("stopped at %s: the %d image(s) before it are predicted into %s, it and the %d after it "
                        "are not", path, done.predicted, out_dir, len(files) - done.predicted - len(done.failed) - 1)
            raise
    done.seconds = time.perf_counter() - start
    return done
