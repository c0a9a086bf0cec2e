"""``unetfamily predict``: masks (and probabilities, overlays) for image files with a trained checkpoint."""
from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path

from unetfamily.cli._common import (
    AT_LEAST_ONE, AT_LEAST_ZERO, EXIT_OK, EXIT_USAGE, FRACTION, PROBABILITY, check_options, command, err, out,
)
from unetfamily.errors import ConfigError

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``unetfamily predict``."""
    p = command(subparsers, "predict", run, help="predict masks for images with a trained checkpoint")
    p.add_argument("--checkpoint", required=True, help="checkpoint .safetensors file, run folder, or model folder "
                   "(save_pretrained / export --format pretrained)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")
    p.add_argument("--out", required=True, type=Path, help="output folder (created); refused when it already holds "
                   "a file this prediction would write, unless --overwrite")
    p.add_argument("--overwrite", action="store_true", help="replace output files that already exist in --out")
    p.add_argument("--tile-size", type=int, default=256, help="tile images larger than this; 0 = never tile")
    p.add_argument("--overlap", type=float, default=0.25, help="tile overlap fraction, in [0, 1)")
    p.add_argument("--blend", choices=["gaussian", "constant"], default="gaussian", help="tile weighting")
    p.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass")
    p.add_argument("--tta", action="store_true", help="average over h/v flips (4x the work)")
    p.add_argument("--threshold", type=float, help="binary models: foreground probability threshold, in (0, 1) "
                   "(none: 0.5); refused for multi-class models")
    p.add_argument("--level", type=int, help="UNet++: predict with the pruned depth-L sub-network")
    p.add_argument("--mode", choices=["accurate", "fast"], help="UNet++: average all heads, or one head (fast)")
    p.add_argument("--probabilities", nargs="?", const="npy", choices=["npy", "png"],
                   help="also write probabilities: <stem>_prob.npy (the flag alone) or 16-bit PNG")
    p.add_argument("--overlay", action="store_true", help="also write <stem>_overlay.png (image + class colours)")
    p.add_argument("--binary-255", action="store_true", help="binary models: write masks as 0/255 instead of 0/1")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (CUDA when available)")
    p.add_argument("--max-pixels", type=int, help="accept images up to this many pixels (Pillow refuses more than "
                   "~89M by default, its decompression-bomb guard); only for files you trust")


def run(args: argparse.Namespace) -> int:
    """Predict every input; an unreadable one is an ``error:`` line and exit 2, the others are still predicted."""
    from unetfamily.engine.device import resolve_device
    from unetfamily.engine.predict import Predictor, collect_inputs, predict_files

    check_options(args, tile_size=AT_LEAST_ZERO, overlap=FRACTION, batch_size=AT_LEAST_ONE, threshold=PROBABILITY,
                  level=AT_LEAST_ONE, max_pixels=AT_LEAST_ONE)
    _check_flag_combinations(args)
    device = resolve_device(args.device, "--device")
    files = collect_inputs(args.inputs)
    predictor = Predictor.from_checkpoint(
        args.checkpoint, device, tile_size=args.tile_size or None, overlap=args.overlap, batch_size=args.batch_size,
        blend=args.blend, tta=args.tta, threshold=0.5 if args.threshold is None else args.threshold, level=args.level,
        mode=args.mode, amp=args.bf16,
    )
    if predictor.num_classes > 1 and (args.threshold is not None or args.binary_255):
        flag = "--threshold" if args.threshold is not None else "--binary-255"
        raise ConfigError(f"{flag} applies to binary models; {args.checkpoint} predicts {predictor.num_classes} "
                          "classes (each pixel takes its most probable class). Leave it out.")
    with _pixel_limit(args.max_pixels):
        done = predict_files(predictor, files, args.out, args.binary_255, args.probabilities, args.overlay,
                             overwrite=args.overwrite)
    for _, message in done.failed:
        err(f"error: {message}")
    failed = f"; {len(done.failed)} failed (see the errors above)" if done.failed else ""
    out(f"predicted {done.predicted}/{len(files)} image(s) into {args.out} in {done.seconds:.1f}s{failed}")
    return EXIT_USAGE if done.failed else EXIT_OK


def _check_flag_combinations(args: argparse.Namespace) -> None:
    """Refuse flag pairs where one would silently have no effect."""
    if args.mode == "accurate" and args.level is not None:
        raise ConfigError("--mode accurate averages every UNet++ head; --level needs --mode fast (or no --mode)")


@contextlib.contextmanager
def _pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Pillow's decompression-bomb limit set to ``max_pixels`` (if given) for the duration, then restored."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    if max_pixels is not None:
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = limit
