"""One run of a comparison: train one (variant, seed, fold) (or resume it, or reuse it), then evaluate it.

A run folder (``runs/<variant>/seed<k>[/fold<f>]``) holds ``fingerprint.json`` (written before
training: what decides the result, see :mod:`unetfamily.compare.identity`), the training run,
and ``result.json`` once evaluated (atomically, strict JSON). A run stopped mid-training resumes
from ``checkpoints/last.safetensors``. The FINAL weights are evaluated on the fold's held-out
cases on the device the run trained on; a deep-supervised UNet++ is also evaluated pruned to
each level.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unetfamily.compare.data import EvalSplit
from unetfamily.compare.identity import FINGERPRINT_FILE, StaleRunError, describe_difference, differing_fields
from unetfamily.compare.plan import PlannedRun, saved_fingerprint
from unetfamily.compare.results import RunResult
from unetfamily.config import Config
from unetfamily.compare.artifacts import save_cases
from unetfamily.files import write_json

log = logging.getLogger(__name__)

__all__ = ["train_and_evaluate", "PREDICTIONS"]

#: The scores of the evaluation split that a run's result keeps.
KEPT_SCORES = ("dice", "iou", "miou", "mdice", "pixel_accuracy", "precision", "recall", "hd95", "nsd", "cldice",
               "per_class_iou", "per_class_dice")
#: The per-case scores a run keeps for the case-level statistics.
CASE_SCORES = ("name", "dice", "iou", "nsd", "cldice", "hd95")
#: Where a run keeps its predictions of its evaluation cases (first seed only), for the report's figures.
PREDICTIONS = "predictions.npz"


class _PrunedLevel(nn.Module):
    """A deep-supervised UNet++ answered by its level-``level`` head only (the paper's pruned network)."""

    def __init__(self, model: nn.Module, level: int) -> None:
        super().__init__()
        self.net, self.level = model, level

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_level(x, self.level)


@dataclass(frozen=True)
class _Window:
    """How a run's validation saw its images (``train.val_window``, ``train.val_overlap``); evaluation does the same."""

    size: list[int] | None = None  # [H, W]; None: whole images
    overlap: float = 0.5

    @classmethod
    def of(cls, config: Config) -> _Window:
        return cls(config.train.val_window, config.train.val_overlap)

    def loader(self, split: EvalSplit) -> Any:
        """The split's batches: one image per batch with a window (images may differ in size), else as batched."""
        from unetfamily.data import make_loader

        return split.loader if self.size is None else make_loader(split.dataset, 1, shuffle=False)

    def evaluate_options(self, split: EvalSplit) -> dict[str, Any]:
        """:func:`~unetfamily.engine.evaluate.evaluate`'s window options (the split's batch size in windows)."""
        return {"window": self.size, "overlap": self.overlap, "window_batch": split.loader.batch_size}


def _levels(model: nn.Module, split: EvalSplit, device: torch.device,
            window: _Window = _Window()) -> dict[int, dict[str, float]]:
    """Dice/IoU/mIoU, batch-1 latency and MACs of the trained UNet++ pruned to each level L = 1..depth."""
    from unetfamily.bench import count_flops, time_call
    from unetfamily.engine.evaluate import evaluate

    info, shape = split.info, (1, *split.image_shape)
    out = {}
    x = torch.randn(shape, device=device)
    for level in range(1, model.depth + 1):
        scores = evaluate(_PrunedLevel(model, level), window.loader(split), device, info.num_classes,
                          info.ignore_index, include_background=not info.has_background,
                          **window.evaluate_options(split))
        with torch.no_grad():
            latency = time_call(lambda: model.forward_level(x, level), device, repeats=10, stat="min")
        out[level] = {"dice": scores["dice"], "iou": scores["iou"], "miou": scores["miou"],
                      "latency_ms": latency * 1e3, "macs": count_flops(model.pruned(level), shape) // 2}
    return out


def _predictions(model: nn.Module, split: EvalSplit, device: torch.device,
                 window: _Window = _Window()) -> list[np.ndarray]:
    """(H, W) uint8 class labels of every evaluation image, in the split's order (sizes may differ)."""
    from unetfamily.engine.evaluate import window_labels
    from unetfamily.metrics import logits_to_labels

    preds = []
    model.eval()
    with torch.no_grad():
        for batch in window.loader(split):
            images = batch["image"].to(device, non_blocking=True)
            if window.size is None:
                labels = logits_to_labels(model(images), split.info.num_classes)
            else:
                labels = window_labels(model, images, window.size, window.overlap,
                                       batch_size=split.loader.batch_size)
            preds.extend(labels.to(torch.uint8).cpu().numpy())
    return preds


def _evaluate(model: nn.Module, split: EvalSplit, device: torch.device, nsd_tolerance: float,
              window: _Window = _Window()) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(kept scores, per-case scores) of ``model`` on the evaluation split, on ``device``."""
    from unetfamily.engine.evaluate import evaluate

    info = split.info
    scores = evaluate(model, window.loader(split), device, info.num_classes, info.ignore_index, per_image=True,
                      hd95=info.num_classes == 2, nsd_tolerance=nsd_tolerance, cldice=True,
                      include_background=not info.has_background, **window.evaluate_options(split))
    per_image = [_case(r) for r in scores["per_image"]]
    kept = {k: scores[k] for k in KEPT_SCORES if k in scores}
    if "hd95" in kept:  # the mean over the cases as resolved, missed and hallucinated objects included
        values = [c["hd95"] for c in per_image if c.get("hd95") is not None and math.isfinite(c["hd95"])]
        kept["hd95"] = sum(values) / len(values) if values else math.nan
    return kept, per_image


def _case(row: dict[str, Any]) -> dict[str, Any]:
    """One case's CASE_SCORES from its per-image ``row``, the undefined scores of empty masks resolved as the
    report counts them (the same for every model): nothing to find and nothing found is perfect (overlap scores
    1, HD95 0); an object missed or hallucinated (exactly one mask empty) has the HD95 of the image's diagonal,
    the farthest two of its pixels lie apart. A case without a valid pixel keeps NaN (nothing to score)."""
    case = {k: row[k] for k in CASE_SCORES if k in row}
    if not row.get("valid", True):  # HD95 calls such a pair of (empty) masks 0: nothing is scored here
        return {k: v if k == "name" else math.nan for k, v in case.items()}
    target_empty, prediction_empty = row.get("target_empty"), row.get("prediction_empty")
    if target_empty and prediction_empty:
        case.update({k: 1.0 for k in ("dice", "iou", "nsd", "cldice") if k in case})
        case.update({"hd95": 0.0} if "hd95" in case else {})
    # HD95 measures class 1 alone: its own flags (a scored class 0 makes no image empty), where the row has them
    target_empty = row.get("hd95_target_empty", target_empty)
    prediction_empty = row.get("hd95_prediction_empty", prediction_empty)
    if "hd95" in case and target_empty is not None and target_empty != prediction_empty:
        case["hd95"] = float(row["image_diagonal"])
    return case


def _finished(done: Path) -> RunResult | None:
    """The result a finished run kept in ``done``; None when there is none, or it cannot be read (the run is then
    evaluated again from its last checkpoint, or trained again without one)."""
    if not done.is_file():
        return None
    try:
        return RunResult.from_dict(json.loads(done.read_text()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("%s cannot be read (%s): that run is evaluated again", done, exc)
        return None


def train_and_evaluate(run: PlannedRun, device: torch.device, nsd_tolerance: float) -> RunResult:
    """Train (or resume, or reuse) ``run`` and evaluate its final weights on its fold's cases, on ``device``.

    The caller holds the run folder's lock. A finished run is reused only when its saved
    fingerprint equals ``run.fingerprint``. Raises KeyboardInterrupt when a signal stopped the
    training (its checkpoint is saved; running the comparison again resumes it).
    """
    from unetfamily.engine import train
    from unetfamily.engine.checkpoint import load_model

    done, last = run.dir / "result.json", run.dir / "checkpoints" / "last.safetensors"
    saved = saved_fingerprint(run.dir)
    if saved is not None and differing_fields(saved, run.fingerprint):
        raise StaleRunError(f"{run.dir} was made under other settings by another compare on the same --out "
                            f"({describe_difference(run.label, differing_fields(saved, run.fingerprint), saved, run.fingerprint)}); "
                            "use a new --out")
    finished = _finished(done)
    if finished is not None:
        log.info("reuse %s: finished with the same settings (%s)", run.label, done)
        return finished
    resume = last.is_file()
    log.info("%s %s", "resume" if resume else "train", run.label)
    write_json(run.dir / FINGERPRINT_FILE, run.fingerprint)
    # compare owns its run folders: a run killed before its first checkpoint is started again
    summary = train.fit(run.config, resume=resume, overwrite=not resume)
    if summary.interrupted:
        raise KeyboardInterrupt(f"compare interrupted during {run.label}; run it again to continue")
    model, checkpoint = load_model(last, device)
    window = _Window.of(run.config)  # evaluated as it was validated: whole images or sliding windows
    test, per_image = _evaluate(model, run.fold.eval, device, nsd_tolerance, window)
    result = RunResult(
        variant=run.variant.id, seed=run.seed, fold=run.fold.index,
        train_seconds=summary.seconds,  # of this process only when resumed
        steps=checkpoint.step, history=summary.history or checkpoint.extra.get("history", []),
        test=test, per_image=per_image,
        levels=_levels(model, run.fold.eval, device, window) if run.variant.levels else {},
        threads=torch.get_num_threads(),
    )
    if run.save_predictions:
        save_cases(run.dir / PREDICTIONS, [r["name"] for r in per_image],
                   pred=_predictions(model, run.fold.eval, device, window))
    write_json(done, result.to_dict())
    return result
