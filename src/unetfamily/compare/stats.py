"""Case-level statistics for a comparison, as challengeR and Metrics Reloaded recommend.

The unit of evidence is the CASE (an evaluated image), not the seed: each variant's score per
case is averaged over its seeds, and every question is asked of those case scores.

- :func:`paired_tests`: every pair of variants, two-sided Wilcoxon signed-rank test on the
  paired case scores (scipy.stats.wilcoxon), p-values Holm-adjusted over all pairs so that the
  chance of any false "significant" among them stays below alpha.
- :func:`bootstrap_ranks`: cases resampled with replacement (seeded), the variants ranked by
  mean score in each resample: the rank distribution of each variant (a blob plot), the
  probability that it ranks first, and 95% percentile intervals of each mean.

A NaN score (a hand-edited or damaged results file; :func:`case_matrix` resolves the undefined
ones) is never taken for a number: a pair's test uses the cases both variants scored, a p-value
that cannot be computed counts as 1 (no evidence), and in the bootstrap a NaN mean ranks last.

Wiesenfarth et al., "Methods and open-source toolkit for analyzing and visualizing challenge
results", Sci Rep 2021; Maier-Hein et al., "Metrics reloaded", Nat Methods 2024.
"""
from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["PairTest", "BootstrapRanks", "case_matrix", "holm", "paired_tests", "bootstrap_ranks", "finite",
           "welch_t_test"]


def case_matrix(scores: np.ndarray, empty_is_perfect: bool, higher_is_better: bool = True) -> np.ndarray:
    """(V, C) case scores with undefined (NaN) entries resolved the same way for every variant.

    Overlap scores (Dice, IoU, NSD, clDice) are NaN only where prediction and reference are
    both empty, which is a perfect answer: with ``empty_is_perfect`` NaN becomes 1.0. Distance
    scores (HD95) are NaN where exactly one mask is empty, a failure: NaN becomes the worst
    finite value in the matrix. An infinite score (an HD95 with nothing to measure to, or a
    damaged file) is never averaged as a number: it becomes the worst finite value too. Cases
    that are NaN for every variant carry no information and are dropped.
    """
    m = np.array(scores, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"case scores must be (variants, cases), got shape {m.shape}")
    m = m[:, ~np.isnan(m).all(axis=0)]
    finite = m[np.isfinite(m)]
    worst = (finite.min() if higher_is_better else finite.max()) if finite.size else 0.0
    m = np.where(np.isinf(m), worst, m)
    return np.where(np.isnan(m), 1.0 if empty_is_perfect else worst, m)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down; monotone; capped at 1), in the input order; NaN counts as 1."""
    p = np.asarray(pvalues, dtype=np.float64)
    p = np.where(np.isnan(p), 1.0, p)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


@dataclass(frozen=True)
class PairTest:
    """Paired comparison of variants ``a`` and ``b`` over the same cases."""

    a: str
    b: str
    mean_diff: float      # mean over cases of a - b
    median_diff: float    # median over cases of a - b
    wins: int             # cases where a scores better than b (higher, or lower for HD95)
    losses: int
    statistic: float
    p: float              # two-sided Wilcoxon signed-rank
    p_adj: float          # Holm-adjusted over all pairs


#: Up to this many non-zero differences the signed-rank p is exact (also with ties); above, the
#: normal approximation (with tie correction) is accurate.
EXACT_MAX_CASES = 200


def _exact_signed_rank(nonzero: np.ndarray) -> tuple[float, float]:
    """Exact two-sided signed-rank test of the non-zero differences, ties given mid-ranks.

    Under the null every sign is equally likely; the distribution of the sum of the (doubled, so
    whole) ranks of the positive differences is built by convolution, one case at a time. This is
    the permutation test scipy runs for small tied samples, in milliseconds instead of seconds,
    and for any n up to :data:`EXACT_MAX_CASES`. Returns (W = the smaller rank sum, p).
    """
    from scipy import stats

    ranks2 = np.rint(2 * stats.rankdata(np.abs(nonzero))).astype(np.int64)  # mid-ranks are halves
    total = int(ranks2.sum())
    dist = np.zeros(total + 1)
    dist[0] = 1.0
    for r in ranks2:  # r >= 2: each case adds its rank to T+ with probability 1/2
        shifted = np.zeros_like(dist)
        shifted[r:] = dist[:-r]
        dist = 0.5 * (dist + shifted)
    t_plus = int(ranks2[nonzero > 0].sum())
    deviation = abs(2 * t_plus - total)  # |T+ - T-| in doubled units
    support = np.arange(total + 1)
    p = float(dist[np.abs(2 * support - total) >= deviation].sum())
    return min(t_plus, total - t_plus) / 2, min(1.0, p)


def _wilcoxon(diff: np.ndarray) -> tuple[float, float]:
    from scipy import stats

    if diff.size == 0 or not np.any(diff != 0):  # callers drop NaN differences
        return 0.0, 1.0  # identical on every case: no evidence of a difference
    nonzero = diff[diff != 0]  # zero_method="wilcox": cases scored alike carry no sign
    if nonzero.size <= EXACT_MAX_CASES:
        # scipy's normal approximation is far too confident on few cases (5 of 5 cases better: 0.034
        # against the exact 0.0625), and its exact test refuses ties or takes seconds per pair
        return _exact_signed_rank(nonzero)
    result = stats.wilcoxon(diff, zero_method="wilcox", alternative="two-sided", method="asymptotic")
    return float(result.statistic), float(result.pvalue)


def paired_tests(names: Sequence[str], scores: np.ndarray, higher_is_better: bool = True) -> list[PairTest]:
    """Wilcoxon signed-rank test of every pair of rows of ``scores`` (V, C), Holm-adjusted over all pairs."""
    m = np.asarray(scores, dtype=np.float64)
    if m.shape[0] != len(names):
        raise ValueError(f"{len(names)} names for {m.shape[0]} rows of scores")
    raw = []
    for i, j in itertools.combinations(range(len(names)), 2):
        diff = m[i] - m[j]
        diff = diff[~np.isnan(diff)]  # the cases both variants scored
        better = diff > 0 if higher_is_better else diff < 0
        worse = diff < 0 if higher_is_better else diff > 0
        stat, p = _wilcoxon(diff)
        raw.append((names[i], names[j], float(diff.mean()) if diff.size else math.nan,
                    float(np.median(diff)) if diff.size else math.nan, int(better.sum()), int(worse.sum()), stat, p))
    adjusted = holm([r[-1] for r in raw]) if raw else np.array([])
    return [PairTest(*r, p_adj=float(q)) for r, q in zip(raw, adjusted)]


@dataclass(frozen=True)
class BootstrapRanks:
    """Rank statistics of V variants over ``samples`` bootstrap resamples of the cases."""

    names: list[str]
    means: np.ndarray        # (V,) mean case score
    ci_low: np.ndarray       # (V,) 2.5th percentile of the resampled means
    ci_high: np.ndarray      # (V,) 97.5th percentile
    rank_probs: np.ndarray   # (V, V): [v, r] = P(variant v has rank r + 1); ties share the best rank
    p_first: np.ndarray      # (V,) P(ranked first); a tie for first splits the credit equally
    samples: int
    seed: int

    def first(self) -> str:
        """The variant most often ranked first."""
        return self.names[int(np.argmax(self.p_first))]


def bootstrap_ranks(names: Sequence[str], scores: np.ndarray, samples: int = 1000, seed: int = 0,
                    higher_is_better: bool = True) -> BootstrapRanks:
    """Resample the C cases of ``scores`` (V, C) with replacement ``samples`` times and rank the variants.

    The same resampled cases serve every variant (the scores stay paired), so the rank
    distribution shows how stable the ranking is under a different draw of cases.
    """
    from scipy import stats

    m = np.asarray(scores, dtype=np.float64)
    v, c = m.shape
    if c == 0:
        raise ValueError("no cases to bootstrap")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, c, size=(samples, c))
    means = m[:, idx].mean(axis=-1)  # (V, samples)
    keyed = np.where(np.isfinite(means), -means if higher_is_better else means, np.inf)  # NaN ranks last
    ranks = stats.rankdata(keyed, axis=0, method="min").astype(int)
    rank_probs = np.stack([(ranks == r + 1).mean(axis=1) for r in range(v)], axis=1)
    firsts = ranks == 1
    p_first = (firsts / firsts.sum(axis=0, keepdims=True)).mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5], axis=1)
    return BootstrapRanks(list(names), m.mean(axis=1), low, high, rank_probs, p_first, samples, seed)


def finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """The finite values of ``values`` as a float array."""
    arr = np.asarray(values, dtype=float)
    return arr[np.isfinite(arr)]


def welch_t_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """Welch's unequal-variance t-test: ``(t, df, two-sided p)`` for mean(a) - mean(b).

    NaNs are dropped; each side needs >= 2 values. Zero variance on both sides gives p = 1 for
    equal means and p = 0 otherwise (scipy returns NaN there). ``df`` is the Welch-Satterthwaite
    degrees of freedom; t and p are scipy's ``ttest_ind(equal_var=False)``.
    """
    x, y = finite(a), finite(b)
    if x.size < 2 or y.size < 2:
        raise ValueError(f"Welch's t-test needs >= 2 finite values per side, got {x.size} and {y.size}")
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    diff = float(x.mean() - y.mean())
    if va + vb == 0.0:
        return (math.copysign(math.inf, diff) if diff else 0.0), math.nan, float(diff == 0.0)
    from scipy import stats

    with warnings.catch_warnings():
        # Seeds with equal scores on one side (a collapsed model) are common here and their zero
        # variance is exact; scipy warns about "nearly identical" data for them.
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        test = stats.ttest_ind(x, y, equal_var=False)
    df = (va + vb) ** 2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))
    return float(test.statistic), float(df), float(test.pvalue)
