"""The verdict of the ``compare`` report: paragraphs saying which model to use and why, written
from the case-level evidence (:mod:`unetfamily.compare.evidence`).

Conventions (``docs/compare_report.md`` has the full list):

- Scores are fractions (0..1) as the runner writes them; sentences quote Dice/IoU/NSD/clDice in
  points (x 100) and HD95 in pixels (lower is better).
- The winner is the variant with the best mean per-case score; it is "separated" from another
  variant when their paired Wilcoxon signed-rank test, Holm-adjusted over all pairs, gives
  p_adj < ``ALPHA``; the bootstrap gives how often it ranks first.
- A cheaper model replaces the winner in the recommendation only when it cannot be separated
  from it AND is at most :func:`practical_margin` (2 points, or 2 px of HD95) behind.
- With one case or one variant nothing can be tested, and the verdict says so. Pruning levels
  have no per-case scores: they are compared over seeds (Welch's t-test, :func:`compare_scores`).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from unetfamily.compare.evidence import ALPHA, CaseEvidence, case_evidence
from unetfamily.compare.results import CompareResults, lower_is_better
from unetfamily.compare.stats import PairTest, welch_t_test
from unetfamily.compare.summary import METRIC_LABELS, VariantSummary, finite, finite_mean, scale, unit
from unetfamily.engine.score_order import finite_score
from unetfamily.text import literal

__all__ = ["ALPHA", "Comparison", "compare_scores", "format_p", "format_share", "p_adj_phrase", "practical_margin",
           "times", "verdict", "welch_t_test"]

SINGLE_SEED_TOLERANCE = 0.01  # 1 point: the near-tie heuristic for pruning levels trained with one seed
# A cheaper model is recommended in the winner's place only when it cannot be separated from it
# AND is at most this far behind: with few cases the test cannot call even large gaps, so "not
# significant" alone must not turn a 20-point loss into a recommendation.
PRACTICAL_MARGIN = 0.02  # 2 points
PRACTICAL_MARGIN_PX = 2.0  # the same for HD95, in pixels


def practical_margin(metric: str) -> float:
    """How far behind (runner's units) a cheaper model may be and still be recommended."""
    return PRACTICAL_MARGIN_PX if metric == "hd95" else PRACTICAL_MARGIN


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


def format_share(p: float) -> str:
    """A probability as a percentage: ``41%``, ``< 1%`` and ``> 99%`` near the ends (never a rounded 0 or 100)."""
    if not math.isfinite(p):
        return "\u2014"
    return "< 1%" if 0 < p < 0.005 else "> 99%" if 0.995 <= p < 1 else f"{p:.0%}"


def format_p(p: float | None) -> str:
    """A p-value for people: two significant digits, ``< 0.001`` below that, ``n/a`` for None."""
    return "n/a" if p is None or math.isnan(p) else "< 0.001" if p < 0.001 else f"{p:.2g}"


def _pts(x: float, signed: bool = False, metric: str = "dice") -> str:
    """``x`` (runner's units) in the report's: points for fractions, pixels for HD95."""
    v = scale(metric) * x
    return f"{v:+.2f}".replace("-", "\u2212") if signed else f"{v:.2f}"


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
    for key, factor, suffix in (("macs", 1e-9, "GMACs"), ("latency_ms", 1.0, "ms")):
        x, y = a.costs[key] * factor, b.costs[key] * factor
        if math.isfinite(x) and math.isfinite(y):
            parts.append(f"{x:.3g} vs {y:.3g} {suffix}")
    return ", ".join(parts) or "costs not measured"


def _cost_clause(s: VariantSummary, ref: VariantSummary) -> str:
    return (f"{times(s.costs['macs'], ref.costs['macs'], 'MACs')} and "
            f"{times(s.costs['latency_ms'], ref.costs['latency_ms'], 'latency')}")


def verdict(results: CompareResults, summaries: Sequence[VariantSummary],
            evidence: CaseEvidence | None = None) -> list[str]:
    """Paragraphs (Markdown with ``**bold**``) saying which model to use on this data and why.

    ``summaries`` is :func:`~unetfamily.compare.summary.summarize` of ``results`` (best first);
    ``evidence`` is :func:`~unetfamily.compare.evidence.case_evidence` of them on the primary
    metric (computed here when not given).
    """
    metric = results.primary_metric
    if evidence is None:
        evidence = case_evidence(results, [s.id for s in summaries], metric)
    tail = _ablations(summaries, evidence, metric) + _pruning(summaries, metric)
    if not evidence.n_cases:
        return _without_cases(results, summaries, metric) + tail
    by_id = {s.id: s for s in summaries}
    order = [by_id[v] for v in evidence.order() if v in by_id]
    win = order[0]  # NaN means rank last, so a NaN here means no variant has a number
    if finite_score(evidence.mean(win.id)) is None:
        return [f"No model has a finite mean {METRIC_LABELS.get(metric, metric)} per case: nothing to recommend. "
                "Check the training logs."] + tail
    out = [_opening(results, evidence, win, metric)]
    if len(order) == 1:
        out.append("It is the only model with per-case scores: there is nothing to compare it with, so nothing "
                   "can be tested.")
    elif evidence.n_cases == 1:
        out.append("With a single evaluated case nothing can be tested: one case cannot tell models apart. Evaluate "
                   "on more cases (a larger test split, or `--folds 5` to score every case out of fold).")
    else:
        out += _separation(evidence, order, metric) + _seed_doubt(evidence, order, metric)
        out += _recommendation(evidence, order, metric)
    if evidence.excluded:
        labels = {v.id: v.label for v in results.variants}
        who = _labels([labels.get(v, v) for v in evidence.excluded])
        out.append(f"{who} ha{'s' if len(evidence.excluded) == 1 else 've'} no finite per-case "
                   f"{METRIC_LABELS.get(metric, metric)} score: left out of this ranking and its tests, never "
                   "recommended.")
    if max(s.n_seeds for s in order) < 2:
        out.append("Every model was trained with a single seed, so the seed-to-seed spread is unknown: the tests "
                   "and P(first) resample these cases, not the training, and speak for these runs, not for a retrain "
                   "(on ISBI 2012, two single-seed runs of one command named different winners, each first in at "
                   "least 97% of bootstrap samples). Rerun with `--seeds 3` before trusting small gaps.")
    weakest = _weakest_class(results, win)
    return out + ([weakest] if weakest else []) + tail


def _where(results: CompareResults, n_cases: int) -> str:
    proto = results.protocol
    if proto.folds > 1:
        return f"{literal(proto.data_name)} ({proto.folds}-fold cross-validation, {n_cases} cases)"
    return f"{literal(proto.data_name)} ({proto.eval_split} split, {n_cases} case{'s' * (n_cases != 1)})"


def _opening(results: CompareResults, evidence: CaseEvidence, win: VariantSummary, metric: str) -> str:
    """The winner, its mean per-case score with the bootstrap interval, and its seed spread."""
    name = METRIC_LABELS.get(metric, metric)
    best = "lowest" if lower_is_better(metric) else "highest"
    ranks = evidence.ranks
    i = evidence.variants.index(win.id)
    labels = {v.id: v.label for v in results.variants}
    same = [labels.get(v, v) for v in evidence.variants if v != win.id and evidence.mean(v) == evidence.mean(win.id)]
    who = f"**{win.label}** has" if not same else f"{_labels([f'**{x}**' for x in [win.label, *same]])} share"
    text = (f"On {_where(results, evidence.n_cases)}, {who} the {best} mean {name} per case: "
            f"{_pts(evidence.mean(win.id), metric=metric)}")
    if ranks is not None and evidence.n_cases > 1:
        text += (f" (95% CI {_pts(ranks.ci_low[i], metric=metric)}\u2013{_pts(ranks.ci_high[i], metric=metric)} "
                 f"over {ranks.samples:,} bootstrap samples of the cases)")
    n = len(evidence.seeds[win.id])
    std = evidence.seed_std(win.id)
    spread = f", seed-to-seed std {_pts(std, metric=metric)} {unit(metric)}" if math.isfinite(std) else ""
    return text + f", averaged over {n} seed{'s' * (n != 1)}{spread}."


def _labels(names: Sequence[str]) -> str:
    """``A``, ``A and B``, ``A, B and C``."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _separation(evidence: CaseEvidence, order: Sequence[VariantSummary], metric: str) -> list[str]:
    """Whether the winner is separated from every other model, with its P(first) and the decisive p_adj."""
    win, others = order[0], order[1:]
    tests = {s.id: evidence.pair(win.id, s.id) for s in others}
    tied = [s for s in others if tests[s.id].p_adj >= ALPHA]
    beaten = [s for s in others if s not in tied]
    first = format_share(evidence.p_first(win.id))
    t2 = tests[others[0].id]
    if not tied:
        text = (f"**{win.label}** ranks first in {first} of bootstrap samples; {win.label} vs {others[0].label}: "
                f"{p_adj_phrase(t2.p_adj)} (better on {t2.wins} of {evidence.n_cases} cases).")
        if len(others) > 1:
            worst = max(tests[s.id].p_adj for s in others)
            text += f" Every other model is worse on these cases (p_adj {_bound(worst, len(others))})."
        return [text]
    text = (f"{_labels([s.label for s in [win, *tied]])} cannot be separated on this data (p_adj >= {ALPHA:g}; "
            f"{win.label} first in {first}).")
    if beaten:
        worst = max(tests[s.id].p_adj for s in beaten)
        names = _labels([s.label for s in beaten])
        text += f" {win.label} is better than {names} (p_adj {_bound(worst, len(beaten))})."
    out = [text]
    far = [s for s in tied if abs(tests[s.id].mean_diff) > practical_margin(metric)]
    if far:
        out.append(f"{_labels([s.label for s in far])} trail{'s' * (len(far) == 1)} by more than "
                   f"{_pts(practical_margin(metric), metric=metric)} {unit(metric)}; {evidence.n_cases} cases are too "
                   "few for the test to confirm such a gap, so more cases (a larger test split or `--folds`) would "
                   "likely show it is real.")
    return out


def _seed_doubt(evidence: CaseEvidence, order: Sequence[VariantSummary], metric: str) -> list[str]:
    """The models separated from the winner that some seed scores at least as high as the winner."""
    win, doubts = order[0], []
    for s in order[1:]:
        t, against = evidence.pair(win.id, s.id), evidence.seeds_against(win.id, s.id)
        if t is not None and t.p_adj < ALPHA and against:
            seed, a, b = against[0]
            doubts.append(f"with seed {seed}, {s.label} scores {_pts(b, metric=metric)} and {win.label} "
                          f"{_pts(a, metric=metric)}")
    if not doubts:
        return []
    return [f"Not every seed puts {win.label} ahead ({'; '.join(doubts)}): the tests average each case over the "
            f"seeds and cannot see this, so {win.label}'s lead may not survive a retrain; more seeds (`--seeds`) "
            "would tell."]


def p_adj_phrase(p: float) -> str:
    """``p_adj = 0.004`` or ``p_adj < 0.001``."""
    return f"p_adj {'<' if p < 0.001 else '='} {format_p(p).removeprefix('< ')}"


def _bound(p: float, n: int) -> str:
    """``p_adj`` of one test (``= 0.004``) or the largest of ``n`` (``<= 0.004``)."""
    return "< 0.001" if p < 0.001 else f"{'=' if n == 1 else '<='} {format_p(p)}"


def _recommendation(evidence: CaseEvidence, order: Sequence[VariantSummary], metric: str) -> list[str]:
    """The cheapest model inseparable from and near the winner (by MACs, then latency), and a costly loser if any."""
    win, margin, u = order[0], practical_margin(metric), unit(metric)
    tests = {s.id: evidence.pair(win.id, s.id) for s in order[1:]}
    near = [win] + [s for s in order[1:] if tests[s.id].p_adj >= ALPHA and abs(tests[s.id].mean_diff) <= margin]
    if not all(math.isfinite(min(s.cost_key())) for s in order):  # --no-costs: which is cheaper is unknown
        if len(near) == 1:
            return [f"No other model is both inseparable from it and within {_pts(margin, metric=metric)} {u} of it: "
                    f"use **{win.label}**."]
        return [f"{_labels([s.label for s in near[1:]])} cannot be separated from {win.label} and "
                f"{'is' if len(near) == 2 else 'are'} within {_pts(margin, metric=metric)} {u} of it; costs were not "
                "measured (--no-costs), so which of them is cheaper is not known: run the same command without "
                "--no-costs to choose by cost."]
    cheap = min(near, key=VariantSummary.cost_key)
    how = f"cannot be separated from {win.label} and is within {_pts(margin, metric=metric)} {u} of it"
    if cheap is not win:
        t = tests[cheap.id]
        out = [f"**{cheap.label}** {how} ({_pts(-t.mean_diff, True, metric)} {u}, {p_adj_phrase(t.p_adj)}) "
               f"at {_cost_clause(cheap, win)} ({_pair(cheap, win)}). Use **{cheap.label}** where compute matters; "
               f"{win.label} only if its {_pts(abs(t.mean_diff), metric=metric)}-{u[:-1] if u == 'points' else u} "
               "edge is worth the cost."]
    else:
        cheapest = min(order, key=VariantSummary.cost_key)
        text = (f"No cheaper model is both inseparable from it and within {_pts(margin, metric=metric)} {u} of it: "
                f"use **{win.label}**.")
        if cheapest is not win:
            text += (f" The cheapest, {cheapest.label}, is {_pts(abs(tests[cheapest.id].mean_diff), metric=metric)} "
                     f"{u} behind at {_cost_clause(cheapest, win)}.")
        out = [text]
    costly = max(order, key=VariantSummary.cost_key)
    if costly is not win and costly not in near and costly.cost_key() > win.cost_key():
        t = tests[costly.id]
        out.append(f"{costly.label} costs {times(costly.costs['macs'], win.costs['macs'], 'MACs')} of "
                   f"{win.label} and scores {_pts(abs(t.mean_diff), metric=metric)} {u} worse "
                   f"({p_adj_phrase(t.p_adj)}).")
    return out


def _without_cases(results: CompareResults, summaries: Sequence[VariantSummary], metric: str) -> list[str]:
    """No per-case scores: the seed-level winner, and a plain statement that nothing could be tested."""
    name = METRIC_LABELS.get(metric, metric)
    ranked = [s for s in summaries if math.isfinite(s.mean(metric))]
    if not ranked:
        return [f"No variant has a finite {name} score: nothing to recommend. Check the training logs."]
    win = ranked[0]
    spread = f" \u00b1 {_pts(win.std(metric), metric=metric)}" if math.isfinite(win.std(metric)) else ""
    return [f"On {literal(results.protocol.data_name)}, **{win.label}** has the "
            f"{'lowest' if lower_is_better(metric) else 'highest'} {name}: {_pts(win.mean(metric), metric=metric)}"
            f"{spread} over {win.n_seeds} seed{'s' * (win.n_seeds != 1)}.",
            f"The results hold no per-case {name} scores, so nothing can be tested: the ranking may be chance. "
            "Rerun the comparison with this version of unetfamily to get them."]


def _weakest_class(results: CompareResults, s: VariantSummary) -> str | None:
    """Multi-class only: the winner's weakest scored class by IoU (class 0 too when it is not a background)."""
    if results.protocol.task != "multiclass":
        return None
    classes, first = results.protocol.classes, 1 if results.protocol.background else 0
    ious = {i: s.mean(k) for k in s.scores if k.startswith("class_iou:") and (i := int(k.split(":")[1])) >= first}
    ious = {i: v for i, v in ious.items() if math.isfinite(v)}
    if len(ious) < 2:
        return None
    i = min(ious, key=ious.get)
    name = literal(classes[i]) if i < len(classes) else f"class {i}"
    return (f"Its weakest class is “{name}” at {_pts(ious[i])} IoU "
            f"(its {'foreground ' if first else ''}classes range {_pts(ious[i])}–{_pts(max(ious.values()))}).")


def _ablations(summaries: Sequence[VariantSummary], evidence: CaseEvidence, metric: str) -> list[str]:
    """One sentence per ablated variant against its base (same model, else same family, no ablation)."""
    out = []
    name = METRIC_LABELS.get(metric, metric)
    for s in summaries:
        bases = [b for b in summaries if not b.ablation and b.model == s.model] or \
                [b for b in summaries if not b.ablation and b.family == s.family]
        if not s.ablation or not bases:
            continue
        base = bases[0]
        t = evidence.pair(s.id, base.id)
        if t is None:
            diff = s.mean(metric) - base.mean(metric)
            if not math.isfinite(diff):
                continue
            what = (f"changes {name} by {_pts(diff, True, metric)} {unit(metric)} against {base.label} "
                    "(no per-case scores to test it)")
        elif t.p_adj >= ALPHA and abs(t.mean_diff) <= 1.0 / scale(metric):  # within 1 point (1 px of HD95)
            what = (f"is within {_pts(abs(t.mean_diff), metric=metric)} {name} {unit(metric)} of {base.label} "
                    f"({_test_phrase(t)})")
        else:
            what = (f"changes {name} by {_pts(t.mean_diff, True, metric)} {unit(metric)} against {base.label} "
                    f"({_test_phrase(t)})")
        rf = (f"; receptive field {s.receptive_field} vs {base.receptive_field} px"
              if s.receptive_field is not None and base.receptive_field is not None else "")
        out.append(f"Ablation \u201c{s.ablation}\u201d: {s.label} {what} at {_cost_clause(s, base)}{rf}.")
    return out


def _test_phrase(t: PairTest) -> str:
    verdict_ = "cannot be separated" if t.p_adj >= ALPHA else "a real difference"
    return f"{verdict_}: {p_adj_phrase(t.p_adj)}, better on {t.wins} and worse on {t.losses} cases"


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
