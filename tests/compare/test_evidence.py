"""Case-level evidence: seed averaging, NaN resolution, folds, and the verdict written from it."""
from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from tests.compare.conftest import case_results
from unetfamily.compare.evidence import case_evidence, case_scores
from unetfamily.compare.results import CompareResults
from unetfamily.compare.summary import summarize
from unetfamily.compare.verdict import format_share, p_adj_phrase, verdict


def _verdict(results: CompareResults) -> str:
    evidence = case_evidence(results, [v.id for v in results.variants], results.primary_metric)
    return "\n".join(verdict(results, summarize(results, evidence), evidence))


def _base(n_cases: int = 40, seeds: int = 2, seed: int = 0) -> tuple[np.random.Generator, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng, np.tile(rng.uniform(0.55, 0.9, n_cases), (seeds, 1))


def test_seed_average_resolves_each_seed_before_averaging() -> None:
    # Case 0: both masks empty in seed 0 (NaN = perfect) and Dice 0.5 in seed 1 -> (1.0 + 0.5) / 2.
    # Case 1: NaN for every variant and seed: no information, dropped.
    a = [[math.nan, math.nan, 0.8], [0.5, math.nan, 0.6]]
    b = [[0.9, math.nan, 0.7], [0.7, math.nan, 0.7]]
    table = case_scores(case_results({"a": a, "b": b}), ["a", "b"], "dice")
    assert table.cases == ["case_000", "case_002"]
    assert table.scores == pytest.approx(np.array([[0.75, 0.7], [0.8, 0.7]]))
    assert table.seed_means["a"] == pytest.approx([0.9, 0.55])
    assert table.seed_std("a") == pytest.approx(np.std([0.9, 0.55], ddof=1))
    assert table.mean("a") == pytest.approx(0.725) and table.order() == ["b", "a"]


def test_hd95_is_lower_is_better_and_a_failed_case_counts_as_the_worst() -> None:
    # HD95 NaN = exactly one mask empty: the worst finite HD95 of the matrix (9.0), never a good score.
    good = [[1.0, 2.0, 1.5, math.nan]]
    bad = [[4.0, 5.5, 9.0, 3.0]]
    results = case_results({"bad": bad, "good": good}, metric="hd95")
    ev = case_evidence(results, ["bad", "good"], "hd95")
    assert not ev.higher_is_better
    assert ev.scores[ev.variants.index("good")] == pytest.approx([1.0, 2.0, 1.5, 9.0])
    assert ev.order() == ["good", "bad"]
    t = ev.pair("good", "bad")
    assert t.wins == 3 and t.losses == 1 and t.mean_diff == pytest.approx(3.375 - 5.375)
    assert ev.p_first("good") > ev.p_first("bad")
    text = _verdict(results)
    assert "**good** has the lowest mean HD95 per case: 3.38" in text


def test_better_by_construction_ranks_first_and_the_verdict_says_so() -> None:
    rng, base = _base()
    scores = {"unet": base + rng.normal(0, 0.01, base.shape),
              "unet_plusplus": base + 0.05 + rng.normal(0, 0.01, base.shape),
              "unet_3plus": base + rng.normal(0, 0.01, base.shape)}
    results = case_results(scores)
    ev = case_evidence(results, list(scores), "dice")
    assert ev.order()[0] == "unet_plusplus" and ev.ranks is not None
    assert ev.p_first("unet_plusplus") > 0.95 and ev.rank_quantile("unet_plusplus", 0.5) == 1
    assert ev.pair("unet_plusplus", "unet").p_adj < 0.001 and ev.pair("unet_plusplus", "unet_3plus").p_adj < 0.001
    runner_up = ev.order()[1]
    p_adj = ev.pair("unet_plusplus", runner_up).p_adj
    text = _verdict(results)
    pf = format_share(ev.p_first("unet_plusplus"))
    label = {"unet": "U-Net", "unet_3plus": "UNet3+"}[runner_up]
    assert f"**UNet++** ranks first in {pf} of bootstrap samples; UNet++ vs {label}: {p_adj_phrase(p_adj)}" in text
    assert "Every other model is worse on these cases" in text and "cannot be separated" not in text


def test_identical_variants_are_reported_as_inseparable() -> None:
    _, base = _base(30)
    results = case_results({"unet": base, "unet_3plus": base.copy()})
    ev = case_evidence(results, ["unet", "unet_3plus"], "dice")
    t = ev.pair("unet", "unet_3plus")
    assert t.p == 1.0 and t.p_adj == 1.0 and t.wins == t.losses == 0
    assert ev.p_first("unet") == pytest.approx(0.5) and ev.p_first("unet_3plus") == pytest.approx(0.5)
    text = _verdict(results)
    assert "U-Net and UNet3+ cannot be separated on this data (p_adj >= 0.05; U-Net first in 50%)" in text
    # U-Net wins the tie (input order) and is the cheaper: no cheaper model to recommend.
    assert "No cheaper model" in text and "use **U-Net**" in text


def test_cheaper_inseparable_model_is_recommended_and_a_large_untested_gap_is_not() -> None:
    base = np.tile(np.random.default_rng(5).uniform(0.4, 0.7, 12), (2, 1))
    jitter = np.linspace(-0.0011, 0.0011, 12)  # no tied differences (scipy would run a slow permutation test)
    small = np.where(np.arange(12) % 2 == 0, 0.03, -0.02) + jitter  # UNet++ leads by 0.5 points, half each way
    close = case_results({"unet_plusplus": base + small, "unet": base}, macs={"unet_plusplus": 3e9, "unet": 1e9})
    t = case_evidence(close, ["unet_plusplus", "unet"], "dice").pair("unet", "unet_plusplus")
    assert t.p_adj >= 0.05 and t.mean_diff == pytest.approx(-0.005)
    text = _verdict(close)
    assert "**UNet++** has the highest mean Dice per case" in text
    assert (f"**U-Net** cannot be separated from UNet++ and is within 2.00 points of it (\u22120.50 points, "
            f"{p_adj_phrase(t.p_adj)}) at 1/3 the MACs") in text
    assert "Use **U-Net** where compute matters" in text
    large = np.where(np.arange(12) % 2 == 0, 0.15, -0.05) + jitter  # a 5-point gap 12 cases cannot confirm
    gap = case_results({"unet": base + large, "unet_d2": base}, macs={"unet": 3e9, "unet_d2": 1e9})
    assert case_evidence(gap, ["unet", "unet_d2"], "dice").pair("unet", "unet_d2").p_adj >= 0.05
    text = _verdict(gap)
    assert "Use **U-Net depth 2**" not in text and "No cheaper model" in text
    assert "U-Net depth 2 trails by more than 2.00 points" in text and "would likely show it is real" in text


def test_per_fold_means_and_pooled() -> None:
    scores = np.array([[0.9, 0.5, 0.8, 0.4], [0.7, 0.5, 0.6, 0.2]])  # 2 seeds; folds: cases 0,2 and 1,3
    ev = case_evidence(case_results({"a": scores, "b": scores - 0.1}, folds=2), ["a", "b"], "dice")
    assert ev.folds == [0, 1]
    assert ev.fold_means["a"] == pytest.approx({0: 0.75, 1: 0.4})
    assert ev.mean("a") == pytest.approx(np.mean([0.8, 0.5, 0.7, 0.3]))


def test_missing_cases_are_dropped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    results = case_results({"a": [[0.9, 0.8, 0.7]], "b": [[0.6, 0.5, 0.4]]})
    results.runs[-1].per_image.pop()  # b has no score for case_002
    with caplog.at_level(logging.WARNING, logger="unetfamily.compare.evidence"):
        ev = case_evidence(results, ["a", "b"], "dice")
    assert ev.cases == ["case_000", "case_001"] and ev.dropped == ["case_002"]
    assert "case_002" in caplog.text and "left out of the case-level statistics" in caplog.text
    # A variant without any per-case score is left out, not scored as "both empty".
    for run in results.runs_of("b"):
        run.per_image = [{"name": p["name"]} for p in run.per_image]
    ev = case_evidence(results, ["a", "b"], "dice")
    assert ev.variants == ["a"] and ev.excluded == ["b"] and ev.n_cases == 3


def test_one_case_or_one_variant_says_nothing_can_be_tested() -> None:
    text = _verdict(case_results({"unet": [[0.9]], "unet_3plus": [[0.8]]}))
    assert "With a single evaluated case nothing can be tested" in text
    text = _verdict(case_results({"unet": [[0.9, 0.8, 0.7]]}))
    assert "nothing can be tested" in text and "only model" in text
    no_cases = case_results({"unet": [[0.9, 0.8]], "unet_3plus": [[0.8, 0.7]]})
    for run in no_cases.runs:
        run.per_image = []
    text = _verdict(no_cases)
    assert "no per-case Dice scores, so nothing can be tested" in text and "**U-Net** has the highest Dice" in text


def test_ablation_sentence_uses_the_case_level_test_and_the_receptive_field() -> None:
    rng, base = _base(20)
    results = case_results({"unet": base + 0.1 + rng.normal(0, 0.01, base.shape), "unet_d0": base},
                           ablation={"unet_d0": "depth 0"}, receptive_field={"unet": 140, "unet_d0": 9})
    ev = case_evidence(results, ["unet", "unet_d0"], "dice")
    t = ev.pair("unet_d0", "unet")
    text = _verdict(results)
    assert (f"Ablation \u201cdepth 0\u201d: U-Net depth 0 changes Dice by \u2212{100 * abs(t.mean_diff):.2f} points "
            f"against U-Net (a real difference: {p_adj_phrase(t.p_adj)}, better on 0 and worse on 20 cases)") in text
    assert "receptive field 9 vs 140 px" in text


def test_bootstrap_is_seeded() -> None:
    rng, base = _base(15)
    results = case_results({"a": base + rng.normal(0, 0.05, base.shape), "b": base})
    one, two = (case_evidence(results, ["a", "b"], "dice", seed=3) for _ in range(2))
    assert np.array_equal(one.ranks.rank_probs, two.ranks.rank_probs)
    assert np.array_equal(one.ranks.ci_low, two.ranks.ci_low)


def test_a_case_no_model_has_a_score_for_is_named_where_it_is_left_out(caplog: pytest.LogCaptureFixture) -> None:
    results = case_results({"unet": [[0.8, math.nan, 0.6]], "fcn8s": [[0.7, math.nan, 0.5]]})
    with caplog.at_level(logging.WARNING):
        scores = case_scores(results, ["unet", "fcn8s"], "dice")
    assert scores.cases == ["case_000", "case_002"] and scores.dropped == ["case_001"]
    assert "1 case(s) have no dice score for any model (no pixel to score): left out, e.g. case_001" in caplog.text


def test_tied_winners_share_the_opening_and_unmeasured_costs_recommend_no_cheaper_model() -> None:
    from unetfamily.compare.results import Costs

    rng, base = _base(seeds=1)
    results = case_results({"unet": base, "fcn8s": base.copy()}, macs={"unet": 2e9, "fcn8s": 1e9})
    text = _verdict(results)
    assert "**U-Net** and **FCN-8s** share the highest mean Dice per case" in text
    assert "**FCN-8s** cannot be separated from U-Net" in text  # measured costs: FCN-8s is the cheaper here
    for v in results.variants:
        v.costs = Costs()  # --no-costs
    text = _verdict(results)
    assert "costs were not measured (--no-costs), so which of them is cheaper is not known" in text
    assert "No cheaper model" not in text


def test_each_case_resolves_empty_masks_the_same_way_for_every_model() -> None:
    import torch

    from unetfamily.compare.run import _case
    from unetfamily.metrics import per_image_scores

    target = torch.zeros(3, 30, 40, dtype=torch.long)
    target[0, 5:10, 5:10] = 1  # an object the model misses
    target[2] = 255  # nothing to score
    logits = torch.full((3, 1, 30, 40), -5.0)  # the model finds nothing anywhere
    scores = per_image_scores(logits, target, 2, with_hd95=True, nsd_tolerance=2.0, with_cldice=True, describe=True)
    rows = [{"name": str(i), **{k: v[i].item() for k, v in scores.items() if v.dim() == 1}} for i in range(3)]
    missed, empty, ignored = (_case(r) for r in rows)
    assert missed["dice"] == 0.0 and missed["hd95"] == pytest.approx(50.0)  # the diagonal of 30 x 40
    assert empty == {"name": "1", "dice": 1.0, "iou": 1.0, "nsd": 1.0, "cldice": 1.0, "hd95": 0.0}
    assert all(math.isnan(ignored[k]) for k in ("dice", "iou", "nsd", "cldice", "hd95"))
