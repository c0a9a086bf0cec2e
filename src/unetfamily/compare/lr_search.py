"""Equal tuning effort: each variant picks its learning rate from ``--lr-grid`` on an inner split.

Architectures differ in the learning rate they train best with; one rate for all favours the
variant it happens to suit. With a grid, each variant trains once per rate (first seed, a quarter
of the budget) on an inner training split and is scored on an inner validation split, both
carved (stratified, 80/20) from the training cases of the first fold, never from the cases the
comparison evaluates on. The rate with the best primary score wins (the smaller rate on a tie; a
NaN score never wins, and when no rate scores a number the smallest is kept, with a warning);
the report lists the choices.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import torch

from unetfamily.compare.config import CompareConfig
from unetfamily.compare.data import ComparisonData, Fold, eval_split, fold_config
from unetfamily.compare.identity import data_digest
from unetfamily.compare.plan import base_config, check_stale, execute_locked, plan_runs, scoring
from unetfamily.compare.results import lower_is_better
from unetfamily.engine.score_order import finite_score, order_key
from unetfamily.compare.run import train_and_evaluate
from unetfamily.compare.variants import Variant
from unetfamily.config import Config
from unetfamily.data import build_dataset, stratified_folds
from unetfamily.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["choose_learning_rates", "pick_rate", "SEARCH_BUDGET", "INNER_FOLDS"]

#: Fraction of each run's budget a search run trains for.
SEARCH_BUDGET = 0.25
#: The inner validation split is one of this many stratified parts of the training cases (20%).
INNER_FOLDS = 5


def _inner_fold(data: ComparisonData, batch_size: int) -> Fold:
    """Fold 0's training cases split 80/20 (stratified by foreground) into inner train and inner val; with fewer
    than :data:`INNER_FOLDS` cases, one case is the inner val. A ConfigError naming ``--lr-grid`` under 2 cases."""
    outer = data.folds[0].data
    digest = data_digest(build_dataset(outer, "train"))
    cases = len(digest["names"])
    if cases < 2:
        raise ConfigError(f"--lr-grid holds out some of the first fold's training cases to choose the rate, but it "
                          f"has {cases}; give --lr instead, or more cases")
    if cases < INNER_FOLDS:
        log.warning("--lr-grid: the first fold has %d training cases, so 1 of them chooses the rate", cases)
    assignment = stratified_folds(digest["names"], digest["foreground"], min(INNER_FOLDS, cases), seed=0)
    config = fold_config(outer, assignment, 0, ["train"])
    return Fold(0, config, eval_split("inner_val", config, "val", batch_size))


def _short_budget(base: Config) -> Config:
    t = base.train
    return dataclasses.replace(base, train=dataclasses.replace(
        t, epochs=max(1, math.ceil(t.epochs * SEARCH_BUDGET)),
        max_steps=None if t.max_steps is None else max(1, int(t.max_steps * SEARCH_BUDGET)),
        max_seconds=None if t.max_seconds is None else t.max_seconds * SEARCH_BUDGET))


def pick_rate(scores: dict[float, float], lower: bool = False) -> float:
    """The learning rate with the best score (the smaller on a tie; NaN never best; all NaN: the smallest)."""
    return min(scores, key=lambda lr: (order_key(scores[lr], lower), lr))


def choose_learning_rates(cfg: CompareConfig, data: ComparisonData, variants: list[Variant], out: Path,
                          device: torch.device, rerun: bool) -> dict[str, float]:
    """``{variant id: learning rate}`` chosen from ``cfg.lr_grid`` by the primary score on the inner split.

    Search runs live under ``out/lr_search/lr<rate>/`` and follow the same reuse, fingerprint and
    lock rules as the comparison's runs.
    """
    inner = dataclasses.replace(data, folds=[_inner_fold(data, cfg.batch_size)])
    metric, lower = cfg.primary, lower_is_better(cfg.primary)
    scores: dict[str, dict[float, float]] = {v.id: {} for v in variants}
    for lr in cfg.lr_grid or []:
        runs = plan_runs(inner, variants, [cfg.first_seed], out / "lr_search" / f"lr{lr:g}",
                         lambda fold: _short_budget(base_config(cfg, fold.data)), lambda v, lr=lr: lr,
                         {**scoring(cfg, data.info), "search": "lr"})
        check_stale(runs, out, rerun)
        for run, result in zip(runs, execute_locked(runs, lambda r: train_and_evaluate(r, device, cfg.nsd_tolerance))):
            value = finite_score(result.test.get(metric))
            scores[run.variant.id][lr] = math.nan if value is None else value
    chosen = {vid: pick_rate(by_lr, lower) for vid, by_lr in scores.items()}
    for vid, lr in chosen.items():
        tried = ", ".join(f"{k:g}: {v:.4f}" for k, v in scores[vid].items())
        if finite_score(scores[vid][lr]) is None:
            log.warning("no learning rate gave %s a finite %s on the inner split (%s); using the smallest, %g",
                        vid, metric, tried, lr)
        else:
            log.info("learning rate for %s: %g (%s on the inner split: %s)", vid, lr, metric, tried)
    return chosen
