"""Case-level evidence of a comparison: per-case scores averaged over seeds and the statistics on them.

The unit of evidence is the CASE (an evaluated image), as challengeR and Metrics Reloaded
recommend: every variant's score on a case is averaged over its seeds (with K folds each case
comes from the one run per seed whose fold held it out), cases are matched by name across
variants, and undefined scores are resolved the same way for every variant: each run resolves its
own cases (``compare.run``: both masks empty is perfect, exactly one empty has the image's diagonal
as HD95), and results of older versions still holding NaN are resolved by
:func:`unetfamily.compare.stats.case_matrix` (an overlap score of an empty prediction of an empty
reference is perfect, an HD95 with exactly one empty mask, or any infinite score, is the worst
finite score seen). A variant with no finite per-case score is left out, never ranked.

:func:`case_scores` builds that (V, C) matrix with the seed spread and the per-fold means;
:func:`case_evidence` adds the Holm-adjusted pairwise Wilcoxon tests and the bootstrap rank
distribution (:mod:`unetfamily.compare.stats`). Scores stay in the runner's units (fractions,
HD95 in pixels).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from unetfamily.compare.results import CompareResults, lower_is_better
from unetfamily.compare.stats import BootstrapRanks, PairTest, bootstrap_ranks, case_matrix, paired_tests
from unetfamily.engine.score_order import order_key

log = logging.getLogger(__name__)

__all__ = ["ALPHA", "BOOTSTRAP_SAMPLES", "CaseScores", "CaseEvidence", "case_scores", "case_evidence"]

ALPHA = 0.05  # family-wise error rate of the Holm-adjusted pairwise tests
BOOTSTRAP_SAMPLES = 1000


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


@dataclass(frozen=True)
class CaseScores:
    """The (V, C) per-case scores of V variants on C cases, with their seed spread and per-fold means."""

    metric: str
    higher_is_better: bool
    variants: list[str]  # variant ids, the rows, in the order asked (variants without case scores left out)
    cases: list[str]  # case names, the columns (sorted)
    scores: np.ndarray  # (V, C) score per case averaged over seeds, undefined scores resolved
    seeds: dict[str, list[int]]  # variant id -> the seeds that scored its cases
    seed_means: dict[str, np.ndarray]  # variant id -> (S,) mean over the cases of each seed's runs
    fold_means: dict[str, dict[int, float]]  # variant id -> fold -> mean over that fold's cases (mean over seeds)
    dropped: list[str] = field(default_factory=list)  # cases missing for some variant
    excluded: list[str] = field(default_factory=list)  # variants without any finite per-case score for ``metric``

    @property
    def n_cases(self) -> int:
        return len(self.cases)

    @property
    def folds(self) -> list[int]:
        """Every fold some variant's cases came from, sorted."""
        return sorted({f for per_fold in self.fold_means.values() for f in per_fold})

    def mean(self, vid: str) -> float:
        """Mean over the cases of the variant's (seed-averaged) scores; NaN for an unknown variant or no cases."""
        if vid not in self.variants or not self.n_cases:
            return math.nan
        return float(self.scores[self.variants.index(vid)].mean())

    def seed_std(self, vid: str) -> float:
        """Sample std over seeds of the variant's mean score (NaN with fewer than two seeds)."""
        values = self.seed_means.get(vid, np.array([]))
        values = values[np.isfinite(values)]
        return float(values.std(ddof=1)) if values.size >= 2 else math.nan

    def seeds_against(self, a: str, b: str) -> list[tuple[int, float, float]]:
        """(seed, mean of ``a``, mean of ``b``) for each seed both scored in which ``b`` does at least as well as ``a``.

        The case-level tests average each case over the seeds, so they cannot see seeds that rank two
        models the other way; this lists them.
        """
        mine = dict(zip(self.seeds.get(a, []), self.seed_means.get(a, []), strict=True))
        theirs = dict(zip(self.seeds.get(b, []), self.seed_means.get(b, []), strict=True))
        out = []
        for seed in sorted(set(mine) & set(theirs)):
            x, y = float(mine[seed]), float(theirs[seed])
            if math.isfinite(x) and math.isfinite(y) and (y >= x if self.higher_is_better else y <= x):
                out.append((seed, x, y))
        return out

    def order(self) -> list[str]:
        """The variants best first by mean case score (input order breaks ties; a NaN mean ranks last)."""
        return sorted(self.variants, key=lambda v: order_key(self.mean(v), not self.higher_is_better))


@dataclass(frozen=True)
class CaseEvidence(CaseScores):
    """:class:`CaseScores` plus every pairwise test and the bootstrap rank distribution."""

    pairs: list[PairTest] = field(default_factory=list)  # Wilcoxon signed-rank, Holm-adjusted over all pairs
    ranks: BootstrapRanks | None = None  # None without cases

    def pair(self, a: str, b: str) -> PairTest | None:
        """The test of ``a`` against ``b`` oriented so that ``mean_diff`` is a - b and ``wins`` counts a's wins."""
        for t in self.pairs:
            if (t.a, t.b) == (a, b):
                return t
            if (t.a, t.b) == (b, a):
                return PairTest(a, b, -t.mean_diff, -t.median_diff, t.losses, t.wins, t.statistic, t.p, t.p_adj)
        return None

    def p_first(self, vid: str) -> float:
        """Probability that ``vid`` ranks first over the bootstrap samples (NaN without ranks)."""
        return float(self.ranks.p_first[self.variants.index(vid)]) if self.ranks and vid in self.variants else math.nan

    def rank_quantile(self, vid: str, q: float) -> int | None:
        """The smallest rank r with P(rank <= r) >= q: ``q=0.5`` is the median rank; None without ranks."""
        if self.ranks is None or vid not in self.variants:
            return None
        cumulative = np.cumsum(self.ranks.rank_probs[self.variants.index(vid)])
        return int(np.searchsorted(cumulative, q - 1e-12) + 1)


def _collect(results: CompareResults, vid: str, metric: str) -> dict[int, dict[str, tuple[float, int]]]:
    """seed -> case name -> (score, fold) of the variant's runs; records without ``metric`` are not cases."""
    table: dict[int, dict[str, tuple[float, int]]] = {}
    for run in results.runs_of(vid):
        cases = table.setdefault(run.seed, {})
        for record in run.per_image:
            if record.get("name") is not None and metric in record:
                cases[str(record["name"])] = (_float(record[metric]), int(run.fold))
    return {seed: cases for seed, cases in sorted(table.items()) if cases}


def _any_finite(table: dict[int, dict[str, tuple[float, int]]]) -> bool:
    """Whether any case of any seed has a finite score."""
    return any(math.isfinite(score) for cases in table.values() for score, _ in cases.values())


def _common_cases(tables: dict[str, dict[int, dict[str, tuple[float, int]]]]) -> tuple[list[str], list[str]]:
    """(cases every variant scored in some seed, the other cases); a warning names what is dropped."""
    per_variant = {vid: set().union(*(cases.keys() for cases in seeds.values())) for vid, seeds in tables.items()}
    every = set().union(*per_variant.values()) if per_variant else set()
    common = set.intersection(*per_variant.values()) if per_variant else set()
    dropped = sorted(every - common)
    if dropped:
        missing = {vid: len(every - names) for vid, names in per_variant.items() if every - names}
        log.warning("%d case(s) left out of the case-level statistics because some variants have no score for them "
                    "(cases missing per variant: %s), e.g. %s", len(dropped), missing, ", ".join(dropped[:3]))
    return sorted(common), dropped


def case_scores(results: CompareResults, variant_ids: Sequence[str], metric: str) -> CaseScores:
    """Per-case ``metric`` of ``variant_ids`` averaged over seeds: a (V, C) matrix (see the module docstring).

    Variants without any finite per-case score for ``metric`` are left out (``excluded``: a model
    whose every score is NaN has no number to rank, and its NaNs must not be read as perfect
    empty cases) and cases that some variant lacks are dropped (``dropped``), each with a logged warning.
    """
    higher = not lower_is_better(metric)
    tables = {vid: t for vid in dict.fromkeys(variant_ids) if (t := _collect(results, vid, metric)) and _any_finite(t)}
    excluded = [vid for vid in dict.fromkeys(variant_ids) if vid not in tables]
    if excluded:  # no scores, or none finite: nothing to resolve an undefined score against, never a perfect one
        log.warning("no finite per-case %s scores for %s: left out of the case-level statistics", metric,
                    ", ".join(excluded))
    cases, dropped = _common_cases(tables)
    rows = [(vid, seed) for vid, seeds in tables.items() for seed in seeds]
    raw = np.full((len(rows), len(cases)), math.nan)
    present = np.zeros(raw.shape, dtype=bool)
    fold = np.full(raw.shape, -1)
    for r, (vid, seed) in enumerate(rows):
        for c, name in enumerate(cases):
            if name in tables[vid][seed]:
                raw[r, c], fold[r, c] = tables[vid][seed][name]
                present[r, c] = True
    # A case with no defined score anywhere carries no information (stats.case_matrix drops such
    # columns); dropping them here first keeps the names aligned with the columns.
    keep = ~np.isnan(raw).all(axis=0)
    unscored = [c for c, k in zip(cases, keep, strict=True) if not k]
    if unscored:  # no valid pixel (e.g. an all-ignore mask): the same for every model
        log.warning("%d case(s) have no %s score for any model (no pixel to score): left out, e.g. %s",
                    len(unscored), metric, ", ".join(unscored[:3]))
        dropped = sorted([*dropped, *unscored])
    resolved = case_matrix(raw[:, keep], empty_is_perfect=higher, higher_is_better=higher) if rows else raw
    present, fold, cases = present[:, keep], fold[:, keep], [c for c, k in zip(cases, keep, strict=True) if k]
    variants = list(tables)
    matrix = np.zeros((len(variants), len(cases)))
    seed_means: dict[str, np.ndarray] = {}
    fold_means: dict[str, dict[int, float]] = {}
    for i, vid in enumerate(variants):
        idx = [r for r, (v, _) in enumerate(rows) if v == vid]
        weight = present[idx].astype(float)
        matrix[i] = (resolved[idx] * weight).sum(axis=0) / np.maximum(weight.sum(axis=0), 1.0)
        with np.errstate(invalid="ignore"):
            seed_means[vid] = (resolved[idx] * weight).sum(axis=1) / weight.sum(axis=1)
        fold_means[vid] = _fold_means(resolved[idx], present[idx], fold[idx])
    return CaseScores(metric, higher, variants, cases, matrix, {v: list(tables[v]) for v in variants}, seed_means,
                      fold_means, dropped, excluded)


def _fold_means(resolved: np.ndarray, present: np.ndarray, fold: np.ndarray) -> dict[int, float]:
    """fold -> mean over seeds (rows) of the mean over that fold's cases in the seed."""
    out = {}
    for f in sorted(set(fold[present].tolist())):
        per_seed = [resolved[r][present[r] & (fold[r] == f)] for r in range(resolved.shape[0])]
        means = [float(x.mean()) for x in per_seed if x.size]
        out[int(f)] = float(np.mean(means))
    return out


def case_evidence(results: CompareResults, variant_ids: Sequence[str], metric: str, seed: int = 0,
                  samples: int = BOOTSTRAP_SAMPLES) -> CaseEvidence:
    """:func:`case_scores` plus Holm-adjusted pairwise Wilcoxon tests and ``samples`` seeded bootstrap resamples.

    ``ranks`` is None when no case is left; ``pairs`` is empty with fewer than two variants.
    """
    table = case_scores(results, variant_ids, metric)
    base = {f.name: getattr(table, f.name) for f in fields(CaseScores)}
    if not table.variants:
        return CaseEvidence(**base)
    pairs = paired_tests(table.variants, table.scores, table.higher_is_better) if table.n_cases else []
    ranks = (bootstrap_ranks(table.variants, table.scores, samples=samples, seed=seed,
                             higher_is_better=table.higher_is_better) if table.n_cases else None)
    return CaseEvidence(**base, pairs=pairs, ranks=ranks)
