"""Case-level statistics: agreement with scipy, Holm's known values, bootstrap behaviour."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from unetfamily.compare.stats import bootstrap_ranks, case_matrix, holm, paired_tests


def test_holm_matches_the_textbook_example() -> None:
    # Holm (1979) step-down: sorted p * (m, m-1, ...), running maximum, capped at 1.
    p = [0.01, 0.04, 0.03, 0.005]
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])


def test_paired_tests_agree_with_scipy_wilcoxon() -> None:
    rng = np.random.default_rng(3)
    base = rng.uniform(0.5, 0.9, size=20)
    scores = np.stack([base + 0.05 + rng.normal(0, 0.02, 20), base, base + rng.normal(0, 0.02, 20)])
    tests = paired_tests(["a", "b", "c"], scores)
    assert [(t.a, t.b) for t in tests] == [("a", "b"), ("a", "c"), ("b", "c")]
    raw = [stats.wilcoxon(scores[i] - scores[j]).pvalue for i, j in ((0, 1), (0, 2), (1, 2))]
    assert [t.p for t in tests] == pytest.approx(raw, rel=1e-12)
    assert [t.p_adj for t in tests] == pytest.approx(holm(raw))
    assert tests[0].wins + tests[0].losses == 20 and tests[0].wins >= 19 and tests[0].p_adj < 0.001


def test_identical_variants_have_p_one_and_share_first_place() -> None:
    scores = np.tile(np.linspace(0.2, 0.9, 12), (2, 1))
    (t,) = paired_tests(["x", "y"], scores)
    assert t.p == 1.0 and t.p_adj == 1.0 and t.wins == t.losses == 0
    ranks = bootstrap_ranks(["x", "y"], scores, samples=200)
    assert ranks.p_first == pytest.approx([0.5, 0.5])


def test_a_better_variant_ranks_first_with_high_probability() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.4, 0.8, size=30)
    scores = np.stack([base, base + 0.03 + rng.normal(0, 0.01, 30), base + rng.normal(0, 0.01, 30)])
    r = bootstrap_ranks(["a", "better", "c"], scores, samples=1000, seed=1)
    assert r.first() == "better" and r.p_first[1] > 0.95
    assert r.rank_probs.sum(axis=1) == pytest.approx(np.ones(3))
    assert np.all(r.ci_low <= r.means) and np.all(r.means <= r.ci_high)
    # lower is better (HD95): the same data flipped ranks "a" or "c" first, never "better"
    assert bootstrap_ranks(["a", "better", "c"], scores, higher_is_better=False).p_first[1] < 0.05


def test_bootstrap_is_seeded() -> None:
    scores = np.random.default_rng(5).uniform(size=(3, 10))
    a, b = bootstrap_ranks(list("abc"), scores, seed=7), bootstrap_ranks(list("abc"), scores, seed=7)
    assert np.array_equal(a.rank_probs, b.rank_probs) and np.array_equal(a.ci_low, b.ci_low)


def test_case_matrix_resolves_undefined_scores() -> None:
    nan = np.nan
    m = np.array([[0.5, nan, nan, 0.2], [0.7, 0.3, nan, nan]])
    assert case_matrix(m, empty_is_perfect=True).tolist() == [[0.5, 1.0, 0.2], [0.7, 0.3, 1.0]]
    hd = np.array([[3.0, nan], [5.0, 2.0]])
    assert case_matrix(hd, empty_is_perfect=False, higher_is_better=False).tolist() == [[3.0, 5.0], [5.0, 2.0]]
