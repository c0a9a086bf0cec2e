"""The "Case-level statistics" section of the ``compare`` report, written from a :class:`CaseEvidence`.

Three tables: per variant its mean per-case score with the 95% bootstrap interval, P(first),
median rank and seed-to-seed spread; every pair of variants with the mean difference, wins and
losses, the Wilcoxon p and its Holm adjustment; and, with more than one fold, the mean of every
fold next to the pooled mean. The significance map and the rank blob plot are shown with them.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

from unetfamily.compare.evidence import ALPHA, CaseEvidence
from unetfamily.compare.stats import BootstrapRanks
from unetfamily.compare.report_render import DASH, Block
from unetfamily.compare.results import CompareResults
from unetfamily.compare.summary import METRIC_LABELS, scale, unit
from unetfamily.compare.verdict import format_p, format_share
from unetfamily.text import literal

__all__ = ["CASE_PLOTS", "case_section"]

CASE_PLOTS = {
    "ranks.png": "Rank stability: for each model (x) the probability of each rank (y) over 1,000 bootstrap samples of "
                 "the cases (circle area); the black bar marks the median rank, the line its 95% interval.",
    "significance.png": "Significance map: Holm-adjusted Wilcoxon p of every pair (row against column); green = the "
                        "row model is better, red = worse (p_adj < 0.05), grey = cannot be separated.",
}


def _v(x: float, metric: str) -> str:
    return f"{scale(metric) * x:.2f}" if math.isfinite(x) else DASH


def _signed(x: float, metric: str) -> str:
    return f"{scale(metric) * x:+.2f}".replace("-", "\u2212") if math.isfinite(x) else DASH


def _variant_table(ev: CaseEvidence, ranks: BootstrapRanks, labels: Mapping[str, str], metric: str) -> Block:
    u = "%" if unit(metric) == "points" else "px"
    name = METRIC_LABELS.get(metric, metric)
    rows = []
    for rank, vid in enumerate(ev.order(), start=1):
        i = ev.variants.index(vid)
        ci = f" [{_v(ranks.ci_low[i], metric)}, {_v(ranks.ci_high[i], metric)}]"
        lo, med, hi = (ev.rank_quantile(vid, q) for q in (0.025, 0.5, 0.975))
        rows.append([str(rank), labels.get(vid, vid), _v(ev.mean(vid), metric) + ci, format_share(ev.p_first(vid)),
                     f"{med} [{lo}\u2013{hi}]" if lo != hi else str(med), _v(ev.seed_std(vid), metric),
                     str(len(ev.seeds[vid]))])
    header = ["#", "Model", f"Mean {name} per case ({u}) [95% CI]", "P(first)", "Median rank [95%]",
              f"Seed-to-seed std ({u})", "Seeds"]
    return ("table", header, rows)


def _pair_table(ev: CaseEvidence, labels: Mapping[str, str], metric: str) -> Block:
    rows = []
    for a, b in itertools.combinations(ev.order(), 2):
        t = ev.pair(a, b)
        if t is None:
            continue
        p_adj = format_p(t.p_adj)
        rows.append([labels.get(a, a), labels.get(b, b), _signed(t.mean_diff, metric), f"{t.wins} / {t.losses}",
                     format_p(t.p), f"**{p_adj}**" if t.p_adj < ALPHA else p_adj])
    name = METRIC_LABELS.get(metric, metric)
    header = ["A", "B", f"Mean \u0394 {name} A \u2212 B ({unit(metric)})", "A better / worse (cases)", "p", "p_adj"]
    return ("table", header, rows)


def _fold_table(ev: CaseEvidence, labels: Mapping[str, str], metric: str) -> list[Block]:
    folds = ev.folds
    if len(folds) < 2:
        return []
    rows = [[labels.get(v, v), *(_v(ev.fold_means[v].get(f, math.nan), metric) for f in folds),
             _v(ev.mean(v), metric)] for v in ev.order()]
    u = "%" if unit(metric) == "points" else "px"
    return [("table", ["Model", *(f"Fold {f}" for f in folds), "Pooled"], rows),
            ("p", f"Mean {METRIC_LABELS.get(metric, metric)} per case ({u}) of each fold's held-out cases "
                  "(mean over seeds) and of all cases pooled; a model that wins only on some folds is less "
                  "convincing than one that wins on all.")]


def _method_note(results: CompareResults, ev: CaseEvidence, samples: int, metric: str) -> str:
    name = METRIC_LABELS.get(metric, metric)
    folds = results.protocol.folds
    source = (f"every case scored once per seed by the one of the {folds} fold models that did not train on it"
              if folds > 1 else f"the {results.protocol.eval_split} split")
    empty = ("a case where exactly one of prediction and reference is empty counts as the worst HD95 seen"
             if metric == "hd95" else "a case where prediction and reference are both empty counts as perfect")
    return (f"The unit of evidence is the case: {ev.n_cases} cases ({source}); each model's per-case {name} is "
            f"averaged over its seeds, and {empty}. Mean with its 95% bootstrap interval over {samples:,} "
            "resamples of the cases; P(first) = share of those resamples in which the model has the best mean; "
            "median rank with its 95% interval. Seed-to-seed std = std over seeds of the model's mean score: how much "
            "retraining alone moves it.")


def case_section(results: CompareResults, ev: CaseEvidence | None, labels: Mapping[str, str],
                 plots: Mapping[str, bytes]) -> list[Block]:
    """The section's blocks; a short statement when the results hold no per-case scores."""
    metric = results.primary_metric
    head: list[Block] = [("h2", "Case-level statistics")]
    if ev is None or ev.ranks is None:
        return head + [("p", f"No per-case {METRIC_LABELS.get(metric, metric)} scores in these results: nothing can "
                             "be tested.")]
    blocks = head + [("p", _method_note(results, ev, ev.ranks.samples, metric)),
                     _variant_table(ev, ev.ranks, labels, metric)]
    if len(ev.variants) > 1:
        blocks += [("p", "Every pair of models: mean difference over the cases, on how many cases A is better or "
                         "worse, the two-sided Wilcoxon signed-rank p on the paired case scores, and p_adj, Holm-"
                         f"adjusted over all {len(ev.pairs)} pairs; p_adj < {ALPHA:g} (bold) = the two models can be "
                         "told apart on this data."), _pair_table(ev, labels, metric)]
    blocks += _fold_table(ev, labels, metric)
    if ev.dropped or ev.excluded:
        blocks.append(("p", _left_out(ev.dropped, ev.excluded, labels)))
    for name, caption in CASE_PLOTS.items():
        if name in plots:
            blocks += [("p", caption), ("img", name, plots[name])]
    return blocks


def _left_out(dropped: Sequence[str], excluded: Sequence[str], labels: Mapping[str, str]) -> str:
    parts = []
    if dropped:
        parts.append(f"{len(dropped)} case(s) some model (or every model: no pixel to score) has no score for were "
                     f"left out ({', '.join(literal(name) for name in dropped[:5])}"
                     + (", ..." if len(dropped) > 5 else "") + ")")
    if excluded:
        parts.append("models without a finite per-case score were left out: "
                     + ", ".join(labels.get(v, v) for v in excluded))
    return "Left out of these statistics: " + "; ".join(parts) + "."

