"""Per-variant summaries over seeds: the numbers every table, figure and sentence of the report uses.

:func:`summarize` runs once per report; its list is ranked by the primary metric
(:func:`unetfamily.compare.results.primary_metric`), best first: by the mean per-case score
(:mod:`unetfamily.compare.evidence`, the number the verdict's tests are about), and variants
without per-case scores after them by their mean test score; a variant whose score is NaN
ranks last (:mod:`unetfamily.engine.score_order`: NaN is worse than any number). A seed's test
score is the mean of its runs' scores weighted by their number of cases (one run per fold).
Mean over seeds ignores NaN seeds; std is the sample std (ddof=1) and NaN with fewer than 2 finite seeds.
"""
from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from unetfamily.compare.evidence import CaseScores, case_scores
from unetfamily.compare.results import CompareResults, RunResult, VariantResult, lower_is_better
from unetfamily.compare.stats import finite
from unetfamily.engine.score_order import finite_score, order_key

log = logging.getLogger(__name__)

__all__ = ["METRICS", "METRIC_LABELS", "COSTS", "VariantSummary", "as_float", "finite", "finite_mean", "scale", "unit",
           "summarize"]

METRICS = ("dice", "iou", "miou", "nsd", "cldice", "pixel_accuracy", "hd95")
METRIC_LABELS = {"dice": "Dice", "iou": "IoU", "miou": "mIoU", "nsd": "NSD", "cldice": "clDice",
                 "pixel_accuracy": "pixel accuracy", "hd95": "HD95"}
COSTS = ("params", "macs", "latency_ms", "train_step_ms", "peak_memory_mb", "throughput")
LEVEL_KEYS = ("dice", "iou", "miou", "latency_ms", "macs")


def scale(metric: str) -> float:
    """Factor from the runner's units to the report's: 100 for fractions (percent, "points"), 1 for HD95 (pixels)."""
    return 1.0 if metric == "hd95" else 100.0


def unit(metric: str) -> str:
    """What a difference of ``metric`` is counted in, in the report: ``"points"`` (percent) or ``"px"``."""
    return "px" if metric == "hd95" else "points"


def as_float(value: Any) -> float:
    """``value`` as a float; NaN for None, missing or non-numeric values."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


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
    scores: dict[str, np.ndarray]  # metric (or "class_iou:<i>", "class_dice:<i>") -> one value per seed
    costs: dict[str, float]  # COSTS + "train_seconds" (mean over runs)
    levels: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)  # L -> metric -> per seed
    receptive_field: int | None = None  # pixels
    lr: float | None = None  # the learning rate its runs trained with
    case_mean: float = math.nan  # mean per-case primary score (the ranking number); NaN without case scores

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


def _by_seed(runs: list[RunResult]) -> dict[int, list[RunResult]]:
    """seed -> its runs (one per fold), seeds sorted."""
    out: dict[int, list[RunResult]] = defaultdict(list)
    for run in runs:
        out[run.seed].append(run)
    return dict(sorted(out.items()))


def _pooled(values: Sequence[float], runs: Sequence[RunResult]) -> float:
    """One seed's score from its fold runs' scores: mean weighted by each run's number of cases."""
    weights = np.array([max(1, len(run.per_image)) for run in runs], dtype=float)
    vals = np.asarray(values, dtype=float)
    ok = np.isfinite(vals)
    return float((vals[ok] * weights[ok]).sum() / weights[ok].sum()) if ok.any() else math.nan


def _class_value(run: RunResult, key: str, i: int) -> float:
    values = run.test.get(key) or []
    return as_float(values[i]) if i < len(values) else math.nan


def _class_scores(seeds: dict[int, list[RunResult]], n_classes: int) -> dict[str, np.ndarray]:
    """``class_iou:<i>`` and ``class_dice:<i>`` -> per-seed score of class i (NaN where the runs lack it)."""
    out = {}
    for key, name in (("per_class_iou", "class_iou"), ("per_class_dice", "class_dice")):
        k = max([n_classes] + [len(run.test.get(key) or []) for runs in seeds.values() for run in runs])
        for i in range(k):
            out[f"{name}:{i}"] = np.array([_pooled([_class_value(run, key, i) for run in runs], runs)
                                           for runs in seeds.values()])
    return out


def _levels(seeds: dict[int, list[RunResult]]) -> dict[int, dict[str, np.ndarray]]:
    """Pruning level -> metric -> per-seed value (fold runs pooled)."""
    found = sorted({level for runs in seeds.values() for run in runs for level in run.levels})
    out = {}
    for level in found:
        per_seed = [[run for run in runs if level in run.levels] for runs in seeds.values()]
        per_seed = [runs for runs in per_seed if runs]
        out[level] = {k: np.array([_pooled([as_float(run.levels[level].get(k)) for run in runs], runs)
                                   for runs in per_seed]) for k in LEVEL_KEYS}
    return out


def _summary(variant: VariantResult, runs: list[RunResult], n_classes: int) -> VariantSummary:
    seeds = _by_seed(runs)
    scores = {m: np.array([_pooled([as_float(run.test.get(m)) for run in rs], rs) for rs in seeds.values()])
              for m in METRICS}
    scores.update(_class_scores(seeds, n_classes))
    costs = {c: as_float(getattr(variant.costs, c)) for c in COSTS}
    costs["train_seconds"] = finite_mean([as_float(run.train_seconds) for run in runs])
    return VariantSummary(
        id=variant.id, label=variant.label, model=variant.model, family=variant.family, ablation=variant.ablation,
        seeds=list(seeds), scores=scores, costs=costs, levels=_levels(seeds),
        receptive_field=variant.receptive_field, lr=variant.lr,
    )


def summarize(results: CompareResults, cases: CaseScores | None = None) -> list[VariantSummary]:
    """One :class:`VariantSummary` per variant, ranked by the primary metric (best first, see the module docstring).

    ``cases`` is :func:`~unetfamily.compare.evidence.case_scores` (or ``case_evidence``) of every
    variant on the primary metric when the caller has it; else it is computed here.
    """
    known = {v.id for v in results.variants}
    for run in results.runs:
        if run.variant not in known:
            log.warning("run of unknown variant %r ignored", run.variant)
    n_classes = len(results.protocol.classes)
    out = [_summary(v, results.runs_of(v.id), n_classes) for v in results.variants]
    metric = results.primary_metric
    cases = cases if cases is not None else case_scores(results, [v.id for v in results.variants], metric)
    lower = lower_is_better(metric)
    for s in out:
        s.case_mean = cases.mean(s.id)

    def key(s: VariantSummary) -> tuple[int, tuple[int, float]]:
        if finite_score(s.case_mean) is not None:
            return 0, order_key(s.case_mean, lower)
        return 1, order_key(s.mean(metric), lower)  # a NaN mean sorts after every number

    return sorted(out, key=key)
