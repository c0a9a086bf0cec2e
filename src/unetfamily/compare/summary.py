"""Per-variant summaries over seeds: the numbers every table, figure and sentence of the report uses.

:func:`summarize` runs once per report; its list is ranked by the primary metric
(:func:`unetfamily.compare.results.primary_metric`), best first. Mean over seeds ignores NaN
seeds; std is the sample std (ddof=1) and NaN with fewer than 2 finite seeds.
"""
from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from unetfamily.compare.results import CompareResults, RunResult, VariantResult

log = logging.getLogger(__name__)

__all__ = ["METRICS", "METRIC_LABELS", "COSTS", "VariantSummary", "as_float", "finite", "finite_mean", "summarize"]

METRICS = ("dice", "iou", "miou", "pixel_accuracy", "hd95")
METRIC_LABELS = {"dice": "Dice", "iou": "IoU", "miou": "mIoU", "pixel_accuracy": "pixel accuracy", "hd95": "HD95"}
COSTS = ("params", "macs", "latency_ms", "train_step_ms", "peak_memory_mb", "throughput")
LEVEL_KEYS = ("dice", "iou", "miou", "latency_ms", "macs")


def as_float(value: Any) -> float:
    """``value`` as a float; NaN for None, missing or non-numeric values."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """The finite values of ``values`` as a float array."""
    arr = np.asarray(values, dtype=float)
    return arr[np.isfinite(arr)]


def finite_mean(values: Sequence[float] | np.ndarray) -> float:
    """Mean of the finite values; NaN when there are none."""
    vals = finite(values)
    return float(vals.mean()) if vals.size else math.nan


@dataclass(eq=False)
class VariantSummary:
    """One variant's per-seed scores, costs and pruning levels, in the runner's units."""

    id: str
    label: str
    model: str
    family: str
    ablation: str | None
    seeds: list[int]
    scores: dict[str, np.ndarray]  # metric (or "class_iou:<i>") -> one value per run, NaN if missing
    costs: dict[str, float]  # COSTS + "train_seconds" (mean over runs)
    levels: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)  # L -> metric -> per run

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    def mean(self, key: str) -> float:
        return finite_mean(self.scores.get(key, ()))

    def std(self, key: str) -> float:
        vals = finite(self.scores.get(key, ()))
        return float(vals.std(ddof=1)) if vals.size >= 2 else math.nan

    def level_metric(self, metric: str) -> str:
        """``metric`` when the pruning levels report it, else ``"dice"``."""
        return metric if any(np.isfinite(lv[metric]).any() for lv in self.levels.values() if metric in lv) else "dice"

    def cost_key(self) -> tuple[float, float]:
        """Sort key for "cheapest": MACs, then latency; missing costs sort last."""
        macs, lat = self.costs.get("macs", math.nan), self.costs.get("latency_ms", math.nan)
        return (macs if math.isfinite(macs) else math.inf, lat if math.isfinite(lat) else math.inf)


def _class_scores(tests: list[dict[str, Any]], n_classes: int) -> dict[str, np.ndarray]:
    """``class_iou:<i>`` -> per-run IoU of class i (NaN where a run lacks it)."""
    lists = [t.get("per_class_iou") or [] for t in tests]
    k = max([n_classes] + [len(values) for values in lists])
    return {f"class_iou:{i}": np.array([as_float(values[i]) if i < len(values) else math.nan for values in lists])
            for i in range(k)}


def _levels(runs: list[RunResult]) -> dict[int, dict[str, np.ndarray]]:
    levels: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        for level, values in run.levels.items():
            for key in LEVEL_KEYS:
                levels[level][key].append(as_float(values.get(key)))
    return {level: {k: np.array(x) for k, x in d.items()} for level, d in sorted(levels.items())}


def _summary(variant: VariantResult, runs: list[RunResult], n_classes: int) -> VariantSummary:
    tests = [run.test for run in runs]
    scores = {m: np.array([as_float(t.get(m)) for t in tests]) for m in METRICS}
    scores.update(_class_scores(tests, n_classes))
    costs = {c: as_float(getattr(variant.costs, c)) for c in COSTS}
    costs["train_seconds"] = finite_mean([as_float(run.train_seconds) for run in runs])
    return VariantSummary(
        id=variant.id, label=variant.label, model=variant.model, family=variant.family, ablation=variant.ablation,
        seeds=[run.seed for run in runs], scores=scores, costs=costs, levels=_levels(runs),
    )


def summarize(results: CompareResults) -> list[VariantSummary]:
    """One :class:`VariantSummary` per variant, sorted by the primary metric (best first, NaN last)."""
    known = {v.id for v in results.variants}
    for run in results.runs:
        if run.variant not in known:
            log.warning("run of unknown variant %r ignored", run.variant)
    n_classes = len(results.protocol.classes)
    out = [_summary(v, results.runs_of(v.id), n_classes) for v in results.variants]
    metric = results.primary_metric
    return sorted(out, key=lambda s: -s.mean(metric) if math.isfinite(s.mean(metric)) else math.inf)
