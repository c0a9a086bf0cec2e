"""Evaluation: :func:`evaluate` over a loader and the ``unetfamily eval`` command.

Scores come from one confusion matrix accumulated over the whole split (and over all processes
under DDP), see :mod:`unetfamily.metrics`; per-image scores are for finding where a model fails.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

__all__ = ["evaluate", "add_parser"]


def _plain(value: torch.Tensor) -> Any:
    value = value.detach().cpu()
    if value.dim() == 0:
        return value.item()
    return value.tolist()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Any,
    device: torch.device | str,
    num_classes: int,
    ignore_index: int = 255,
    *,
    amp: str = "none",
    hd95: bool = False,
    per_image: bool = False,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """Scores of ``model`` on every batch of ``loader`` (``{"image": (N,C,H,W), "mask": (N,H,W)}``).

    ``num_classes`` counts the background (binary = 2). Returns plain Python values: the scalar
    scores (``dice``, ``iou``, ``miou``, ``pixel_accuracy``, ...), ``per_class_*`` lists, the
    ``confusion_matrix`` (rows = target) and, with ``per_image``, a list of per-image scores.
    The model is left in eval mode.
    """
    from unetfamily.metrics import SegmentationMetrics, per_image_scores  # torchmetrics: the 'train' extra

    device = torch.device(device)
    model.eval()
    metrics = SegmentationMetrics(num_classes, ignore_index=ignore_index, threshold=threshold, hd95=hd95).to(device)
    images_scores: list[dict[str, Any]] = []
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if amp == "bf16" else contextlib.nullcontext()
    for batch in loader:
        images = batch["image"].to(device)
        masks = batch["mask"].to(device)
        with autocast:
            output = model(images)
        output = output.float() if isinstance(output, torch.Tensor) else output
        metrics.update(output, masks)
        if per_image:
            scores = per_image_scores(output, masks, num_classes, ignore_index=ignore_index, threshold=threshold,
                                      with_hd95=hd95)
            for i, name in enumerate(batch.get("name", [str(len(images_scores) + j) for j in range(len(images))])):
                images_scores.append({"name": name, **{k: _plain(v[i]) for k, v in scores.items()}})
    result = {k: _plain(v) for k, v in metrics.compute().items()}
    if per_image:
        result["per_image"] = images_scores
    return result


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``unetfamily eval``."""
    p = subparsers.add_parser("eval", help="evaluate a checkpoint on a dataset split")
    p.add_argument("--checkpoint", required=True, help="run folder or .safetensors checkpoint")
    p.add_argument("--data", help="dataset config (YAML path or named dataset); default: the run's own data config")
    p.add_argument("--split", default="val")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--hd95", action="store_true", help="also compute HD95 (binary tasks)")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", help="JSON file to write (default: <run>/eval_<split>.json next to the checkpoint)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from unetfamily.data import build_dataset, make_loader
    from unetfamily.engine.checkpoint import atomic_write_bytes, load_model, resolve_checkpoint

    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    model, ckpt = load_model(args.checkpoint, device)
    data_cfg: Any = ckpt.config.get("data", {})
    if args.data:
        data_cfg = args.data if Path(args.data).exists() else {"type": args.data}
    dataset = build_dataset(data_cfg, args.split)
    loader = make_loader(dataset, args.batch_size, shuffle=False)
    result = evaluate(model, loader, device, dataset.info.num_classes, dataset.info.ignore_index,
                      hd95=args.hd95, per_image=True, threshold=args.threshold)
    result["classes"] = list(dataset.info.classes)
    result["split"], result["checkpoint"] = args.split, str(resolve_checkpoint(args.checkpoint))
    out = Path(args.out) if args.out else resolve_checkpoint(args.checkpoint).parent.parent / f"eval_{args.split}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, json.dumps(result, indent=2, allow_nan=True).encode())
    print(f"{'class':<20}{'IoU':>8}{'Dice':>8}")
    for name, iou, dice in zip(result["classes"], result["per_class_iou"], result["per_class_dice"]):
        print(f"{name:<20}{_f(iou):>8}{_f(dice):>8}")
    summary = ["dice", "iou", "miou", "pixel_accuracy"] + (["hd95"] if args.hd95 else [])
    print("  ".join(f"{k}={_f(result[k])}" for k in summary))
    print(f"wrote {out}")
    return 0


def _f(value: float) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"
