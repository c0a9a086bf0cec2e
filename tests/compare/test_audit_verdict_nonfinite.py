"""Audit of the verdict on non-finite case scores: a model with no finite score is never "best",
and an infinite score is never averaged as a number (no "inf points worse", no win counts over it)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tests.compare.conftest import case_results
from unetfamily.compare.evidence import case_evidence
from unetfamily.compare.report import write_report
from unetfamily.compare.summary import summarize
from unetfamily.compare.verdict import verdict

NAN, INF = math.nan, math.inf


def _run(scores: dict, metric: str = "dice") -> tuple[list[str], object, list]:
    results = case_results(scores, metric=metric)
    ev = case_evidence(results, [v.id for v in results.variants], metric)
    summaries = summarize(results, ev)
    return verdict(results, summaries, ev), ev, summaries


def _good(n: int = 20, lo: float = 0.5, hi: float = 0.9) -> np.ndarray:
    return np.random.default_rng(1).uniform(lo, hi, (2, n))


@pytest.mark.parametrize(("metric", "bad"), [("dice", NAN), ("hd95", NAN), ("hd95", INF), ("dice", INF)])
def test_a_model_without_a_finite_case_score_is_never_best(metric: str, bad: float) -> None:
    good = _good(lo=1, hi=10) if metric == "hd95" else _good()
    text, ev, summaries = _run({"unet": good, "fcn8s": np.full_like(good, bad)}, metric)
    joined = "\n".join(text)
    assert ev.variants == ["unet"] and ev.excluded == ["fcn8s"]
    assert [s.id for s in summaries] == ["unet", "fcn8s"]
    assert joined.startswith("On injected") and "**U-Net** has the" in joined
    assert "**FCN-8s**" not in joined and "FCN-8s has no finite per-case" in joined
    assert "inf" not in joined.replace("infinite", "")


def test_a_model_without_a_finite_case_score_is_listed_as_left_out_in_the_report(tmp_path: Path) -> None:
    good = _good()
    results = case_results({"unet": good, "fcn8s": np.full_like(good, NAN), "unet_plusplus": good - 0.05})
    write_report(results, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "models without a finite per-case score were left out: FCN-8s" in md
    rows = (tmp_path / "results.csv").read_text().splitlines()[1:]
    assert [r.split(",")[1] for r in rows] == ["unet", "unet_plusplus", "fcn8s"]
    assert rows[-1].split(",")[1] == "fcn8s" and ",1,1,1," not in rows[-1]  # no perfect case mean, P(first)


@pytest.mark.parametrize(("metric", "bad"), [("dice", INF), ("hd95", INF), ("hd95", -INF)])
def test_infinite_case_scores_count_as_the_worst_finite_score(metric: str, bad: float) -> None:
    good = _good(n=12, lo=1, hi=10) if metric == "hd95" else _good(n=12)
    other = good.copy()
    other[:, :4] = bad  # a third of the cases damaged
    text, ev, _ = _run({"unet": good, "fcn8s": other}, metric)
    assert np.isfinite(ev.scores).all()
    (t,) = ev.pairs
    assert math.isfinite(t.mean_diff) and (t.wins, t.losses) == (4, 0)  # the damaged cases are fcn8s's failures
    worst = good.max() if metric == "hd95" else good.min()
    assert ev.scores[1, :4] == pytest.approx([worst] * 4)
    assert "inf " not in "\n".join(text) and "better on 0 of" not in "\n".join(text)
