"""One run of a comparison: train one variant with one seed (or resume it, or reuse it), then evaluate it.

A finished run writes ``runs/<variant>/seed<k>/result.json`` (atomically, strict JSON) and is
reused next time; a run stopped mid-training resumes from ``checkpoints/last.safetensors``. The
FINAL weights are evaluated on the comparison's evaluation split (built once, see
:mod:`unetfamily.compare.data`); a deep-supervised UNet++ is also evaluated pruned to each level.
"""
from __future__ import annotations

import dataclasses
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unetfamily.compare.data import EvalSplit
from unetfamily.compare.results import RunResult
from unetfamily.compare.variants import Variant
from unetfamily.config import Config, ModelConfig
from unetfamily.files import atomic_write_bytes, write_json

log = logging.getLogger(__name__)

__all__ = ["run_config", "train_and_evaluate", "save_npz"]

#: The scores of the evaluation split that a run's result keeps.
KEPT_SCORES = ("dice", "iou", "miou", "mdice", "pixel_accuracy", "precision", "recall", "hd95", "per_class_iou",
               "per_class_dice")


def run_config(base: Config, variant: Variant, seed: int, run_dir: Path) -> Config:
    """``base`` for one run: the variant's model, the seed and the run folder; everything else shared."""
    return dataclasses.replace(
        base, model=ModelConfig(name=variant.model, kwargs=dict(variant.kwargs)),
        train=dataclasses.replace(base.train, seed=seed), output_dir=str(run_dir),
    )


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """``arrays`` as one compressed ``.npz`` at ``path``, written atomically."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


class _PrunedLevel(nn.Module):
    """A deep-supervised UNet++ answered by its level-``level`` head only (the paper's pruned network)."""

    def __init__(self, model: nn.Module, level: int) -> None:
        super().__init__()
        self.net, self.level = model, level

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_level(x, self.level)


def _levels(model: nn.Module, split: EvalSplit) -> dict[int, dict[str, float]]:
    """Dice/IoU/mIoU, batch-1 latency and MACs of the trained UNet++ pruned to each level L = 1..depth."""
    from unetfamily.bench import count_flops, time_call
    from unetfamily.engine.evaluate import evaluate

    info, shape = split.info, (1, *split.image_shape)
    out = {}
    x = torch.randn(shape)
    for level in range(1, model.depth + 1):
        scores = evaluate(_PrunedLevel(model, level), split.loader, "cpu", info.num_classes, info.ignore_index)
        with torch.no_grad():
            latency = time_call(lambda: model.forward_level(x, level), torch.device("cpu"), repeats=10, stat="min")
        out[level] = {"dice": scores["dice"], "iou": scores["iou"], "miou": scores["miou"],
                      "latency_ms": latency * 1e3, "macs": count_flops(model.pruned(level), shape) // 2}
    return out


def _predictions(model: nn.Module, split: EvalSplit) -> np.ndarray:
    """(N, H, W) uint8 class labels of the evaluation images, in the split's order."""
    from unetfamily.metrics import logits_to_labels

    preds = []
    with torch.no_grad():
        for batch in split.loader:
            preds.append(logits_to_labels(model(batch["image"]), split.info.num_classes).to(torch.uint8).numpy())
    return np.concatenate(preds)


def _evaluate(model: nn.Module, split: EvalSplit) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(kept scores, per-image {name, dice, iou}) of ``model`` on the evaluation split."""
    from unetfamily.engine.evaluate import evaluate

    info = split.info
    scores = evaluate(model, split.loader, "cpu", info.num_classes, info.ignore_index, per_image=True,
                      hd95=info.num_classes == 2)
    per_image = [{k: r[k] for k in ("name", "dice", "iou") if k in r} for r in scores["per_image"]]
    return {k: scores[k] for k in KEPT_SCORES if k in scores}, per_image


def train_and_evaluate(base: Config, variant: Variant, seed: int, out: Path, split: EvalSplit,
                       save_predictions: bool) -> RunResult:
    """Train (or resume, or reuse) one (variant, seed) run under ``out`` and evaluate it on ``split``.

    With ``save_predictions`` the run's predictions are saved as ``artifacts/pred_<variant>.npz``
    for the report's figures. Raises KeyboardInterrupt when a signal stopped the training (its
    checkpoint is saved; running the comparison again resumes it).
    """
    from unetfamily.engine import train
    from unetfamily.engine.checkpoint import load_model

    run_dir = out / "runs" / variant.id / f"seed{seed}"
    done, last = run_dir / "result.json", run_dir / "checkpoints" / "last.safetensors"
    if done.is_file():
        log.info("skip %s seed %d: already finished (%s)", variant.id, seed, done)
        return RunResult.from_dict(json.loads(done.read_text()))
    resume = last.is_file()
    log.info("%s %s seed %d", "resume" if resume else "train", variant.id, seed)
    summary = train.fit(run_config(base, variant, seed, run_dir), resume=resume)
    if summary.interrupted:
        raise KeyboardInterrupt(f"compare interrupted during {variant.id} seed {seed}; run it again to continue")
    model, checkpoint = load_model(last)
    test, per_image = _evaluate(model, split)
    result = RunResult(
        variant=variant.id, seed=seed, train_seconds=summary.seconds,  # of this process only when resumed
        steps=checkpoint.step, history=summary.history or checkpoint.extra.get("history", []),
        test=test, per_image=per_image, levels=_levels(model, split) if variant.levels else {},
    )
    if save_predictions:
        save_npz(out / "artifacts" / f"pred_{variant.id}.npz", pred=_predictions(model, split),
                 names=np.array([r["name"] for r in per_image]))
    write_json(done, result.to_dict())
    return result
