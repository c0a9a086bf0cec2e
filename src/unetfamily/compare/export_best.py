"""``compare --export-best DIR``: the comparison's winner as a model folder others can load.

The winner is the variant the report ranks first (:func:`~unetfamily.compare.summary.summarize`
over the case-level scores, :mod:`unetfamily.compare.evidence`: the order of the report's tables
and of the ``best:`` line). Of its runs (one per seed, and per fold under cross-validation), the
one whose primary score on its own evaluation is best gives the weights: the FINAL weights of
that run (``checkpoints/last.safetensors``), which are the weights the comparison evaluated. The
model card's scores are results.json's: for each metric, the variant's mean over seeds (a
seed's score pooled over its folds as the report does) and that run's own score, each with the
split they were computed on; the card names the seed and fold.
"""
from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unetfamily.compare.evidence import case_scores
from unetfamily.compare.results import CompareResults, RunResult, VariantResult, lower_is_better
from unetfamily.compare.summary import METRICS, summarize
from unetfamily.engine.score_order import finite_score, order_key

__all__ = ["BestRun", "best_run", "run_folder", "export_best"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BestRun:
    """The winning variant and the run of it whose weights are exported."""

    variant: VariantResult
    run: RunResult
    folds: int = 1  # of the comparison: the run's fold is named only under cross-validation

    @property
    def label(self) -> str:
        """``"U-Net seed 1"`` (``"... fold 2"`` under cross-validation)."""
        return f"{self.variant.label} seed {self.run.seed}" + (f" fold {self.run.fold}" if self.folds > 1 else "")


def best_run(results: CompareResults) -> BestRun | None:
    """The report's first variant and its run with the best primary score; None when no score is finite."""
    metric = results.primary_metric
    ranked = summarize(results, case_scores(results, [v.id for v in results.variants], metric))
    if not ranked:
        return None
    first = ranked[0]
    if finite_score(first.case_mean) is None and finite_score(first.mean(metric)) is None:
        return None
    runs = [r for r in results.runs_of(first.id) if finite_score(_score(r, metric)) is not None]
    if not runs:
        return None
    run = min(runs, key=lambda r: order_key(_score(r, metric), lower_is_better(metric)))  # ties: the first
    variant = next(v for v in results.variants if v.id == first.id)
    return BestRun(variant, run, results.protocol.folds)


def _score(run: RunResult, metric: str) -> float:
    try:
        return float(run.test.get(metric))
    except (TypeError, ValueError):
        return math.nan


def run_folder(out: Path, results: CompareResults, run: RunResult) -> Path:
    """The folder ``compare`` trained ``run`` in (:func:`~unetfamily.compare.plan.plan_runs`' layout)."""
    folder = Path(out) / "runs" / run.variant / f"seed{run.seed}"
    return folder / f"fold{run.fold}" if results.protocol.folds > 1 else folder


def _seed_mean(runs: list[RunResult], metric: str) -> float:
    """The variant's mean over seeds of ``metric``: a seed's runs pooled by their case counts (one run: its score)."""
    by_seed: dict[int, list[RunResult]] = defaultdict(list)
    for run in runs:
        by_seed[run.seed].append(run)
    per_seed = []
    for seed in sorted(by_seed):
        values = [(_score(r, metric), max(1, len(r.per_image))) for r in by_seed[seed]]
        values = [(v, w) for v, w in values if math.isfinite(v)]
        if len(values) == 1:
            per_seed.append(values[0][0])
        elif values:
            per_seed.append(sum(v * w for v, w in values) / sum(w for _, w in values))
    return float(np.mean(per_seed)) if per_seed else math.nan


def _evaluation(results: CompareResults, best: BestRun) -> list[dict[str, Any]]:
    protocol = results.protocol
    runs = results.runs_of(best.variant.id)
    seeds = ", ".join(str(s) for s in sorted({r.seed for r in runs}))
    fold = f", fold {best.run.fold}" if protocol.folds > 1 else ""
    split = protocol.eval_split
    rows = []
    for metric in METRICS:
        if metric not in best.run.test:
            continue
        mean = _seed_mean(runs, metric)
        rows.append({"metric": metric, "value": None if math.isnan(mean) else mean, "split": split,
                     "dataset": protocol.data_name, "scope": f"{best.variant.label}, mean over seeds {seeds}"})
        value = _score(best.run, metric)
        rows.append({"metric": metric, "value": None if math.isnan(value) else value,
                     "split": split + (f" (fold {best.run.fold}'s cases)" if protocol.folds > 1 else ""),
                     "dataset": protocol.data_name, "scope": f"these weights (seed {best.run.seed}{fold})"})
    return rows


def _card(results: CompareResults, best: BestRun, checkpoint: Path, out: Path) -> dict[str, Any]:
    protocol, metric = results.protocol, results.primary_metric
    n, split = len(results.variants), protocol.eval_split
    folds = f", {protocol.folds}-fold cross-validation" if protocol.folds > 1 else ""
    where = "every case scored out of fold" if protocol.folds > 1 else f"the {split} split"
    card: dict[str, Any] = {
        "title": f"{best.variant.label} on {protocol.data_name}: the best of a unetfamily comparison",
        "summary": (f"{best.variant.label} ranked first of {n} model{'s' if n != 1 else ''} by the mean per-case "
                    f"{metric} on {where} of {protocol.data_name} ({protocol.cases} cases, {len(protocol.seeds)} "
                    f"seed{'s' if len(protocol.seeds) != 1 else ''}{folds}). These are the final weights of its run "
                    f"with seed {best.run.seed}" + (f", fold {best.run.fold}" if protocol.folds > 1 else "")
                    + f", the run of it that scored best on {metric}."),
        "source": f"comparison {out} (results.json), variant `{best.variant.id}`, checkpoint {checkpoint}",
        "evaluation": _evaluation(results, best),
        "evaluation_note": (f"Scores are fractions in [0, 1] (HD95 in pixels) as results.json holds them, on the "
                            f"{split} split as the comparison evaluated it: the final weights of every run, no model "
                            f"selection on those cases. The other models, the per-case statistics and the protocol "
                            f"are in the comparison's report ({out / 'report.html'})."),
        "classes": list(protocol.classes) or None,
        "limitations": [f"It was chosen as the best of {n} on the same cases its scores are computed on, so they are "
                        "an optimistic estimate for new data; confirm them on data the comparison did not see."],
    }
    if protocol.plan is None and best.variant.costs.macs is not None and protocol.input_size:
        card["macs"], card["input_size"] = int(best.variant.costs.macs), list(protocol.input_size)
    return card


def export_best(results: CompareResults, out: str | Path, dest: str | Path) -> BestRun | None:
    """Write the winner of ``results`` (a comparison in folder ``out``) as a model folder at ``dest``.

    Returns the exported :class:`BestRun`, or None (nothing written, a warning logged) when no
    variant has a finite score. The folder is written atomically (:func:`~unetfamily.engine.pretrained.export_pretrained`).
    """
    from unetfamily.engine.pretrained import export_pretrained

    best = best_run(results)
    if best is None:
        log.warning("no model has a finite %s score: no model folder written to %s", results.primary_metric, dest)
        return None
    checkpoint = run_folder(Path(out), results, best.run) / "checkpoints" / "last.safetensors"
    export_pretrained(checkpoint, dest, card=_card(results, best, checkpoint, Path(out)))
    log.info("best model %s written to %s", best.label, dest)
    return best
