"""The verdict of the ``compare`` report: whether two variants differ beyond seed noise, and
paragraphs saying which model to use, written from the per-variant summaries.

Conventions (``docs/compare_report.md`` has the full list):

- Scores are fractions (0..1) as the runner writes them; sentences quote Dice/IoU/mIoU in points
  (x 100). HD95 is in pixels, lower is better.
- "Within noise" between two variants: Welch's t-test p >= ``ALPHA`` when both have >= 2 finite
  seeds; when only one side has, the single value lies inside the other's [min, max]; with one
  seed on both sides it cannot be told (``None``) and the verdict falls back to a stated
  heuristic (within ``SINGLE_SEED_TOLERANCE``).
- A cheaper model replaces the winner in the recommendation only when it is within noise AND
  at most ``PRACTICAL_MARGIN`` (2 points) behind.
- Variants are judged on the primary metric (:func:`unetfamily.compare.results.primary_metric`).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from unetfamily.compare.results import CompareResults
from unetfamily.compare.summary import METRIC_LABELS, VariantSummary, finite, finite_mean
from unetfamily.errors import require

__all__ = ["ALPHA", "Comparison", "compare_scores", "format_p", "times", "verdict", "welch_t_test"]

ALPHA = 0.05
SINGLE_SEED_TOLERANCE = 0.01  # 1 point: the near-tie heuristic used when no seed noise is known
# A cheaper model is recommended in the winner's place only when it is within noise AND at most
# this far behind: with 2-3 seeds the t-test cannot call even large gaps, so "not significant"
# alone must not turn a 20-point loss into a recommendation.
PRACTICAL_MARGIN = 0.02  # 2 points


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
    stats = require("scipy.stats", "train", "the significance test of the compare report")
    with warnings.catch_warnings():
        # Seeds with equal scores on one side (a collapsed model) are common here and their zero
        # variance is exact; scipy warns about "nearly identical" data for them.
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        test = stats.ttest_ind(x, y, equal_var=False)
    df = (va + vb) ** 2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))
    return float(test.statistic), float(df), float(test.pvalue)


@dataclass(frozen=True)
class Comparison:
    """``a`` against ``b`` on one metric: mean difference and whether it is within seed noise."""

    diff: float
    method: Literal["welch", "range", "single", "none"]
    p: float | None = None
    within_noise: bool | None = None

    def phrase(self) -> str:
        """How the difference relates to noise, e.g. ``within noise, Welch p = 0.41``."""
        if self.method == "welch":
            return f"{'within' if self.within_noise else 'beyond'} noise, Welch p = {format_p(self.p)}"
        if self.method == "range":
            return "within the seed range" if self.within_noise else "outside the seed range"
        return "one seed each, so noise unknown" if self.method == "single" else "no finite scores"


def compare_scores(a: Sequence[float], b: Sequence[float]) -> Comparison:
    """Compare per-seed values ``a`` with ``b`` (see the module docstring for the noise rule)."""
    x, y = finite(a), finite(b)
    if not x.size or not y.size:
        return Comparison(math.nan, "none")
    diff = float(x.mean() - y.mean())
    if x.size >= 2 and y.size >= 2:
        p = welch_t_test(x, y)[2]
        return Comparison(diff, "welch", p, p >= ALPHA)
    if x.size >= 2 or y.size >= 2:
        many, one = (x, y[0]) if x.size >= 2 else (y, x[0])
        return Comparison(diff, "range", None, bool(many.min() <= one <= many.max()))
    return Comparison(diff, "single")


def format_p(p: float | None) -> str:
    """A p-value for people: two significant digits, ``< 0.001`` below that, ``n/a`` for None."""
    return "n/a" if p is None or math.isnan(p) else "< 0.001" if p < 0.001 else f"{p:.2g}"


def _pts(x: float, signed: bool = False) -> str:
    return f"{100 * x:+.2f}".replace("-", "\u2212") if signed else f"{100 * x:.2f}"


def times(a: float, b: float, noun: str) -> str:
    """``a`` relative to ``b`` in words: "1/10 the MACs", "75% of the MACs", "3.2x the MACs"."""
    if not (math.isfinite(a) and math.isfinite(b)) or a <= 0 or b <= 0:
        return f"unknown {noun}"
    r = a / b
    if r <= 0.5:
        return f"1/{1 / r:.0f} the {noun}"
    if r < 0.995:
        return f"{r:.0%} of the {noun}"
    return f"the same {noun}" if r <= 1.005 else f"{r:.1f}\u00d7 the {noun}"


def _near(c: Comparison) -> bool:
    """Within noise (or, one seed each, within the single-seed tolerance) and within the practical margin."""
    noise = bool(c.within_noise) if c.within_noise is not None else abs(c.diff) <= SINGLE_SEED_TOLERANCE
    return noise and abs(c.diff) <= PRACTICAL_MARGIN


def _pair(a: VariantSummary, b: VariantSummary) -> str:
    """``2.1 vs 21 GMACs, 3.1 vs 7.8 ms`` (parts with a missing figure left out)."""
    parts = []
    for key, scale, unit in (("macs", 1e-9, "GMACs"), ("latency_ms", 1.0, "ms")):
        x, y = a.costs[key] * scale, b.costs[key] * scale
        if math.isfinite(x) and math.isfinite(y):
            parts.append(f"{x:.3g} vs {y:.3g} {unit}")
    return ", ".join(parts) or "costs not measured"


def _cost_clause(s: VariantSummary, ref: VariantSummary) -> str:
    return (f"{times(s.costs['macs'], ref.costs['macs'], 'MACs')} and "
            f"{times(s.costs['latency_ms'], ref.costs['latency_ms'], 'latency')}")


def verdict(results: CompareResults, summaries: Sequence[VariantSummary]) -> list[str]:
    """Paragraphs (Markdown with ``**bold**``) saying which model to use on this data and why.

    ``summaries`` is :func:`~unetfamily.compare.summary.summarize` of ``results`` (best first).
    """
    metric = results.primary_metric
    name = METRIC_LABELS[metric]
    ranked = [s for s in summaries if math.isfinite(s.mean(metric))]
    if not ranked:
        return [f"No variant has a finite {name} score: nothing to recommend. Check the training logs."]
    proto = results.protocol
    win = ranked[0]
    split = proto.eval_split
    n_eval = proto.splits.get(split)
    where = f"{proto.data_name} ({split} split" + (f", {n_eval} images)" if n_eval else ")")
    spread = f" \u00b1 {_pts(win.std(metric))}" if math.isfinite(win.std(metric)) else ""
    out = [f"On {where}, **{win.label}** has the highest {name}: {_pts(win.mean(metric))}{spread} "
           f"over {win.n_seeds} seed{'s' * (win.n_seeds != 1)}."]
    if len(ranked) == 1:
        out[0] += " It is the only model with a finite score."
        return out + _ablations(summaries, metric) + _pruning(summaries, metric)
    comps = {s.id: compare_scores(win.scores[metric], s.scores[metric]) for s in ranked[1:]}
    out += _lead(ranked, comps) + _recommendation(ranked, comps, metric)
    weakest = _weakest_class(results, win)
    return out + ([weakest] if weakest else []) + _ablations(summaries, metric) + _pruning(summaries, metric)


def _lead(ranked: Sequence[VariantSummary], comps: Mapping[str, Comparison]) -> list[str]:
    """The winner's lead over the runner-up, and which models are within noise of it."""
    second = ranked[1]
    c2 = comps[second.id]
    if c2.method == "single":
        return [f"It leads {second.label} by {_pts(c2.diff)} points, but a single seed cannot separate models: "
                "rerun with `--seeds 3` before trusting this ranking."]
    ties = [s.label for s in ranked[2:] if comps[s.id].within_noise]
    if ties:
        others = f" {'Also' if c2.within_noise else 'Yet'} within noise of it: {', '.join(ties)}."
    else:
        others = "" if len(ranked) == 2 else " The other models are beyond noise."
    out = [f"Its lead over the runner-up {second.label} is {_pts(c2.diff)} points: {c2.phrase()}.{others}"]
    far = [s for s in ranked[1:] if comps[s.id].within_noise and abs(comps[s.id].diff) > PRACTICAL_MARGIN]
    if far:
        out.append(f"{', '.join(s.label for s in far)} trail{'s' if len(far) == 1 else ''} by more than "
                   f"{_pts(PRACTICAL_MARGIN)} points; the seeds are too few for the t-test to confirm such a gap, "
                   "so more seeds would likely show it is real.")
    elif len(ranked) > 2 and all(comps[s.id].within_noise for s in ranked[1:]):
        out.append("Every model is within noise of the winner: the seeds disagree more than the models do, so "
                   "this ranking is weak evidence; a longer budget or more seeds would sharpen it.")
    return out


def _recommendation(ranked: Sequence[VariantSummary], comps: Mapping[str, Comparison], metric: str) -> list[str]:
    """The cheapest model within noise of the winner (by MACs, then latency), and a costly loser if any."""
    win = ranked[0]
    near = [win] + [s for s in ranked[1:] if _near(comps[s.id])]
    cheap = min(near, key=VariantSummary.cost_key)
    single = comps[(cheap if cheap is not win else ranked[1]).id].method == "single"
    how = ("within 1 point of it on this single seed" if single
           else f"within noise and within {_pts(PRACTICAL_MARGIN)} points of it")
    if cheap is not win:
        c = comps[cheap.id]
        out = [f"**{cheap.label}** is {how} ({_pts(-c.diff, True)} points) at {_cost_clause(cheap, win)} "
               f"({_pair(cheap, win)}). Use **{cheap.label}** where compute matters; {win.label} only if its "
               f"{_pts(c.diff)}-point edge is worth the cost."]
    else:
        cheapest = min(ranked, key=VariantSummary.cost_key)
        text = f"No cheaper model is {how}: use **{win.label}**."
        if cheapest is not win:
            text += (f" The cheapest, {cheapest.label}, is {_pts(win.mean(metric) - cheapest.mean(metric))} points "
                     f"behind at {_cost_clause(cheapest, win)}.")
        out = [text]
    costly = max(ranked, key=VariantSummary.cost_key)
    if costly is not win and costly not in near and costly.cost_key() > win.cost_key():
        out.append(f"{costly.label} costs {times(costly.costs['macs'], win.costs['macs'], 'MACs')} of "
                   f"{win.label} and scores {_pts(win.mean(metric) - costly.mean(metric))} points lower.")
    return out


def _weakest_class(results: CompareResults, s: VariantSummary) -> str | None:
    """Multi-class only: the winner's weakest foreground class by IoU."""
    if results.primary_metric != "miou":
        return None
    classes = results.protocol.classes
    ious = {i: s.mean(k) for k in s.scores if k.startswith("class_iou:") and (i := int(k.split(":")[1])) > 0}
    ious = {i: v for i, v in ious.items() if math.isfinite(v)}
    if len(ious) < 2:
        return None
    i = min(ious, key=ious.get)
    name = classes[i] if i < len(classes) else f"class {i}"
    return (f"Its weakest class is “{name}” at {_pts(ious[i])} IoU "
            f"(its foreground classes range {_pts(ious[i])}–{_pts(max(ious.values()))}).")


def _ablations(summaries: Sequence[VariantSummary], metric: str) -> list[str]:
    """One sentence per ablated variant against its base (same model, else same family, no ablation)."""
    out = []
    for s in summaries:
        if not s.ablation:
            continue
        bases = [b for b in summaries if not b.ablation and b.model == s.model] or \
                [b for b in summaries if not b.ablation and b.family == s.family]
        if not bases:
            continue
        base = bases[0]
        c = compare_scores(s.scores[metric], base.scores[metric])
        if c.method == "none":
            continue
        if _near(c) and c.method != "single" and abs(c.diff) <= SINGLE_SEED_TOLERANCE:
            what = f"is within {_pts(abs(c.diff))} {METRIC_LABELS[metric]} points of {base.label} ({c.phrase()})"
        else:
            what = f"changes {METRIC_LABELS[metric]} by {_pts(c.diff, True)} points against {base.label} ({c.phrase()})"
        out.append(f"Ablation \u201c{s.ablation}\u201d: {s.label} {what} at {_cost_clause(s, base)}.")
    return out


def _pruning(summaries: Sequence[VariantSummary], metric: str) -> list[str]:
    """For each variant with pruning levels: the smallest level that keeps the full level's score."""
    out = []
    for s in summaries:
        if len(s.levels) < 2:
            continue
        key = s.level_metric(metric)
        top, lower = max(s.levels), sorted(s.levels)[:-1]
        full = s.levels[top]
        comps = {lvl: compare_scores(s.levels[lvl][key], full[key]) for lvl in lower}
        ok = [lvl for lvl in lower if _near(comps[lvl]) or (comps[lvl].method == "single"
                                                            and comps[lvl].diff >= -SINGLE_SEED_TOLERANCE)]
        chosen = ok[0] if ok else lower[-1]
        lv = s.levels[chosen]
        score, full_score = finite_mean(lv[key]), finite_mean(full[key])
        if not (math.isfinite(score) and full_score > 0):
            continue
        keeps = (f"keeps {score / full_score:.1%} of its L{top} {METRIC_LABELS[key]}" if score < full_score else
                 f"scores at least as well as at L{top} on {METRIC_LABELS[key]}")
        out.append(f"Pruned to L{chosen}, {s.label} {keeps} "
                   f"({_pts(score)} vs {_pts(full_score)}, {comps[chosen].phrase()}) at "
                   f"{times(finite_mean(lv['latency_ms']), finite_mean(full['latency_ms']), 'latency')} and "
                   f"{times(finite_mean(lv['macs']), finite_mean(full['macs']), 'MACs')}"
                   + ("." if ok else f"; no level below L{top} comes within "
                      + ("1 point of it." if comps[chosen].method == "single" else "noise of it.")))
    return out
