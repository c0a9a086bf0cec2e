"""The figures of the ``compare`` report, drawn with matplotlib's Agg canvas (no pyplot state).

Each ``*_png`` function returns PNG bytes, or ``None`` when its data is absent (the curves and cost
figures are drawn once and saved as PNG and as SVG with hover values for the web page, see
:mod:`unetfamily.compare.plots_svg`); :func:`make_plots` draws every figure the results allow. Scores are drawn in points (x 100), HD95 in pixels; the
qualitative figures use the seed-0 predictions saved by the runner (``artifacts``), matched to the
eval images by name, and tint classes with :func:`unetfamily.overlay.overlay` (class 0 too when it is
content, not a background: the protocol's ``background``). The case-level
figures (the significance map and the rank blob plot, after challengeR: Wiesenfarth et al., Sci
Rep 2021) are drawn from the report's :class:`~unetfamily.compare.evidence.CaseEvidence`.
"""
from __future__ import annotations

import io
import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unetfamily.compare.artifacts import first_seed_scores, load_artifacts
from unetfamily.compare.evidence import ALPHA, CaseEvidence
from unetfamily.compare.plots_grid import Cell, grid_png
from unetfamily.compare.plots_svg import Tips, hover_point, svg_text
from unetfamily.compare.results import CompareResults, lower_is_better
from unetfamily.compare.summary import METRIC_LABELS, VariantSummary, as_float, finite_mean, scale
from unetfamily.overlay import overlay

log = logging.getLogger(__name__)

__all__ = ["make_plots"]

BETTER, WORSE, SAME = "#4daf4a", "#e41a1c", "#d9d9d9"  # significance map: row better, row worse, not separable


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _log_axis(ax: Any) -> None:
    """Log x axis with plain tick labels at 1, 2, 3, 5 x 10^k."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.margins(x=0.12)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def curves_figure(results: CompareResults, summaries: Sequence[VariantSummary], colors: Mapping[str, str],
                  tips: Tips | None = None) -> Any:
    """Validation metric against step per variant: mean over seeds, shaded min..max; None without curves."""
    metric = results.primary_metric
    fig, drawn = _figure(7.5, 4.2), False
    ax = fig.subplots()
    for s in summaries:
        curves = []
        for run in results.runs_of(s.id):
            pts = [(as_float(h.get("step")), as_float(h.get(metric, h.get("dice")))) for h in run.history]
            pts = sorted((x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y))
            if pts:
                curves.append(np.array(pts))
        if not curves:
            continue
        grid = np.unique(np.concatenate([c[:, 0] for c in curves]))
        ys = np.full((len(curves), grid.size), np.nan)
        for i, c in enumerate(curves):
            inside = (grid >= c[0, 0]) & (grid <= c[-1, 0])
            ys[i, inside] = np.interp(grid[inside], c[:, 0], c[:, 1])
        with np.errstate(all="ignore"):
            mean = np.array([np.nan if np.isnan(col).all() else np.nanmean(col) for col in ys.T])
            lo, hi = np.nanmin(ys, axis=0), np.nanmax(ys, axis=0)
        ax.plot(grid, 100 * mean, color=colors[s.id], marker="o" if grid.size <= 15 else None, markersize=3,
                label=f"{s.label} ({len(curves)} seed{'s' * (len(curves) != 1)})")
        if len(curves) > 1:
            ax.fill_between(grid, 100 * lo, 100 * hi, color=colors[s.id], alpha=0.15, linewidth=0)
        for x, y, a, b in zip(grid, 100 * mean, 100 * lo, 100 * hi, strict=True):
            spread = f" (min {a:.2f}, max {b:.2f})" if len(curves) > 1 and np.isfinite(a) else ""
            if np.isfinite(y):
                hover_point(ax, x, y, f"{s.label}: step {x:g}, {y:.2f}%{spread}", tips)
        drawn = True
    if not drawn:
        return None
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("training step")
    ax.set_ylabel(f"validation {METRIC_LABELS.get(metric, metric)} (%)")
    ax.set_title(f"Validation {METRIC_LABELS.get(metric, metric)} during training (mean over seeds, min-max shaded)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def cost_figure(summaries: Sequence[VariantSummary], metric: str, colors: Mapping[str, str],
                tips: Tips | None = None) -> Any:
    """Metric against MACs and against latency (log x), labelled points, Pareto front dashed; None without costs."""
    panels = (("macs", 1e-9, "MACs per image (G, log)", "G MACs"),
              ("latency_ms", 1.0, "inference latency (ms, batch 1, log)", "ms"))
    k, sign = scale(metric), (-1.0 if lower_is_better(metric) else 1.0)
    fig, drawn = _figure(11, 4.4), False
    for ax, (key, factor, xlabel, xunit) in zip(fig.subplots(1, 2), panels, strict=True):
        pts = [(s.costs[key] * factor, s.mean(metric), s.std(metric), s.label, colors[s.id]) for s in summaries]
        pts = sorted(p for p in pts if math.isfinite(p[0]) and p[0] > 0 and math.isfinite(p[1]))
        for x, y, e, label, color in pts:
            ax.errorbar(x, k * y, yerr=k * e if math.isfinite(e) else None, fmt="o", capsize=3, color=color)
            ax.annotate(label, (x, k * y), textcoords="offset points", xytext=(5, 5), fontsize=8)
            spread = f" \u00b1 {k * e:.2f}" if math.isfinite(e) else ""
            hover_point(ax, x, k * y, f"{label}: {x:.3g} {xunit}, {METRIC_LABELS.get(metric, metric)} {k * y:.2f}{spread}",
                        tips)
        front, best = [], -math.inf
        for x, y, *_ in pts:
            if sign * y > best:
                front.append((x, k * y))
                best = sign * y
        if len(front) > 1:
            ax.plot(*zip(*front, strict=True), "--", color="grey", linewidth=1, label="Pareto front")
            ax.legend(fontsize=8, loc="lower right")
        _log_axis(ax)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"test {METRIC_LABELS.get(metric, metric)} ({'px' if metric == 'hd95' else '%'})")
        ax.grid(alpha=0.3, which="both")
        drawn = drawn or bool(pts)
    if not drawn:
        return None
    better = "down and left" if lower_is_better(metric) else "up and left"
    fig.suptitle(f"Accuracy against cost (mean \u00b1 std over seeds; {better} is better)")
    return fig


def pruning_png(summaries: Sequence[VariantSummary], metric: str, colors: Mapping[str, str]) -> bytes | None:
    """Per pruning level: score and latency of each variant that has levels (mean, error bar min-max)."""
    pruned = [s for s in summaries if s.levels]
    if not pruned:
        return None
    key = pruned[0].level_metric(metric)
    fig = _figure(10, 3.8)
    axes = fig.subplots(1, 2)
    for s in pruned:
        lvls = sorted(s.levels)
        for ax, k, factor in ((axes[0], s.level_metric(metric), 100.0), (axes[1], "latency_ms", 1.0)):
            vals = [np.asarray(s.levels[lv][k], dtype=float) * factor for lv in lvls]
            with np.errstate(all="ignore"):
                mean = np.array([np.nanmean(v) if np.isfinite(v).any() else np.nan for v in vals])
                err = np.array([[m - np.nanmin(v), np.nanmax(v) - m] if np.isfinite(v).any() else [0, 0]
                                for m, v in zip(mean, vals, strict=True)]).T.clip(min=0)
            ax.errorbar(lvls, mean, yerr=err, marker="o", capsize=3, label=s.label, color=colors[s.id])
    axes[0].set_ylabel(f"test {METRIC_LABELS.get(key, key)} (%)")
    axes[1].set_ylabel("latency (ms, batch 1)")
    for ax in axes:
        ax.set_xlabel("pruning level L (the model cut after head L)")
        ax.set_xticks(sorted({lv for s in pruned for lv in s.levels}))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("UNet++ pruning: one trained model cut to level L (mean over seeds, min-max bars)")
    return _png(fig)


def samples_png(samples: Mapping[str, np.ndarray], preds: Mapping[str, np.ndarray], labels: Mapping[str, str],
                scores: Mapping[str, Mapping[str, float]], k: int = 6, background: bool = True) -> bytes | None:
    """K eval images (hardest to easiest by mean per-image Dice): image, ground truth, every prediction (class 0
    tinted unless it is a ``background``)."""
    if not preds:
        return None
    names = [str(n) for n in samples["names"]]
    difficulty = np.array([finite_mean([scores[v].get(n, np.nan) for v in preds]) for n in names])
    order = np.argsort(np.where(np.isnan(difficulty), np.inf, difficulty), kind="stable")
    rows = order[np.unique(np.linspace(0, len(order) - 1, min(k, len(order))).round().astype(int))]
    grid = []
    for i in rows:
        img, gt = samples["images"][i], samples["masks"][i]
        grid.append([Cell(overlay(img, np.zeros_like(gt)), names[i][:24]),
                     Cell(overlay(img, gt, background=background), "ground truth")]
                    + [Cell(overlay(img, pred[i], background=background),
                            f"{labels[vid]}\nDice {100 * scores[vid].get(names[i], math.nan):.1f}", gt, background)
                       for vid, pred in preds.items()])
    return grid_png(grid, "Predictions on the same eval images (seed 0; white outline = ground truth)")


def failures_png(samples: Mapping[str, np.ndarray], preds: Mapping[str, np.ndarray], labels: Mapping[str, str],
                 scores: Mapping[str, Mapping[str, float]], worst: int = 3, background: bool = True) -> bytes | None:
    """Per variant its ``worst`` eval images by per-image Dice, prediction overlaid (class 0 too unless it is a
    ``background``), ground truth outlined."""
    ranked = {vid: sorted(((d, n) for n, d in scores[vid].items() if math.isfinite(d)))[:worst] for vid in preds}
    ranked = {vid: r for vid, r in ranked.items() if r}
    if not ranked:
        return None
    index = {str(n): i for i, n in enumerate(samples["names"])}
    grid = [[Cell(overlay(samples["images"][index[name]], preds[vid][index[name]], background=background),
                  f"{name[:20]}\nDice {100 * dice:.1f}", samples["masks"][index[name]], background)
             if name in index else None for dice, name in items]
            for vid, items in ranked.items()]
    return grid_png(grid, "Worst eval images per model (seed 0; white outline = ground truth)",
                    [labels[vid] for vid in ranked])


def per_image_png(scores: Mapping[str, Mapping[str, float]], labels: Mapping[str, str],
                  colors: Mapping[str, str], metric: str = "dice", what: str = "seed 0") -> bytes | None:
    """Box plot of a per-case score per variant with every case as a jittered dot."""
    data = {vid: np.array([d for d in s.values() if math.isfinite(d)]) * scale(metric) for vid, s in scores.items()}
    data = {vid: d for vid, d in data.items() if d.size}
    if not data:
        return None
    name = f"per-case {METRIC_LABELS.get(metric, metric)} ({'px' if metric == 'hd95' else '%'})"
    fig = _figure(max(5.0, 1.3 * len(data) + 2), 4.0)
    ax = fig.subplots()
    ax.boxplot(list(data.values()), showfliers=False, widths=0.5, medianprops={"color": "black"})
    rng = np.random.default_rng(0)
    for j, (vid, d) in enumerate(data.items(), start=1):
        ax.scatter(j + rng.uniform(-0.15, 0.15, d.size), d, s=10, alpha=0.7, color=colors[vid])
    ax.set_xticks(range(1, len(data) + 1), [labels[v] for v in data], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(name)
    ax.set_title(f"{name[0].upper()}{name[1:]} on the evaluated cases ({what})")
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)


def _p_text(p: float) -> str:
    return "<.001" if p < 0.001 else f"{p:.2g}"


def significance_png(evidence: CaseEvidence, labels: Mapping[str, str]) -> bytes | None:
    """Variant x variant map of Holm-adjusted Wilcoxon p (row vs column), coloured by significance and direction."""
    order = evidence.order()
    v = len(order)
    if v < 2 or evidence.ranks is None:
        return None
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Patch

    image = np.ones((v, v, 3))
    fig = _figure(1.2 + 0.75 * v, 0.9 + 0.6 * v)
    ax = fig.subplots()
    for (i, a), (j, b) in itertools.permutations(enumerate(order), 2):
        t = evidence.pair(a, b)
        if t is None:
            continue
        better = t.mean_diff > 0 if evidence.higher_is_better else t.mean_diff < 0
        color = SAME if t.p_adj >= ALPHA else BETTER if better else WORSE
        image[i, j] = to_rgb(color)
        ax.text(j, i, _p_text(t.p_adj), ha="center", va="center", fontsize=8)
    ax.imshow(image, interpolation="nearest")
    names = [labels.get(vid, vid) for vid in order]
    ax.set_xticks(range(v), names, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(v), names, fontsize=8)
    ax.set_xticks(np.arange(v + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(v + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=2)
    ax.tick_params(which="minor", length=0)
    ax.legend(handles=[Patch(color=BETTER, label="row better"), Patch(color=WORSE, label="row worse"),
                       Patch(color=SAME, label=f"p_adj \u2265 {ALPHA:g}")],
              fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Holm-adjusted Wilcoxon p, row vs column", fontsize=9)
    return _png(fig)


def ranks_png(evidence: CaseEvidence, labels: Mapping[str, str], colors: Mapping[str, str]) -> bytes | None:
    """Blob plot: x = variant, y = rank, circle area = P(rank); median rank bar and its 95% interval."""
    ranks = evidence.ranks
    if ranks is None:
        return None
    order = evidence.order()
    v = len(order)
    fig = _figure(max(4.0, 1.1 * v + 1.5), 0.7 * v + 2.0)
    ax = fig.subplots()
    for x, vid in enumerate(order):
        probs = ranks.rank_probs[evidence.variants.index(vid)]
        shown = probs > 0
        ax.scatter(np.full(int(shown.sum()), x), np.arange(1, v + 1)[shown], s=900 * probs[shown],
                   color=colors.get(vid, "C0"), alpha=0.75, edgecolors="none")
        lo, med, hi = (evidence.rank_quantile(vid, q) for q in (0.025, 0.5, 0.975))
        ax.plot([x, x], [lo, hi], color="black", linewidth=1)
        ax.plot([x - 0.25, x + 0.25], [med, med], color="black", linewidth=2.5)
    ax.set_xticks(range(v), [labels.get(vid, vid) for vid in order], rotation=20, ha="right", fontsize=8)
    ax.set_yticks(range(1, v + 1))
    ax.set_ylim(v + 0.6, 0.4)  # rank 1 at the top
    ax.set_xlim(-0.6, v - 0.4)
    ax.set_ylabel("rank")
    ax.grid(alpha=0.3, axis="y")
    ax.set_title(f"Rank over {ranks.samples:,} bootstrap samples of {evidence.n_cases} cases "
                 "(area = probability, bar = median)", fontsize=9)
    return _png(fig)


def make_plots(results: CompareResults, summaries: Sequence[VariantSummary], report_dir: Path,
               evidence: CaseEvidence | None = None, loaded: tuple[Any, Any] | None = None) -> dict[str, bytes]:
    """Every figure the results allow, as ``{file name: PNG bytes}`` in report order, plus ``curves.svg`` and
    ``cost.svg`` (UTF-8 SVG with hover values) beside their PNGs.

    ``summaries`` is :func:`~unetfamily.compare.summary.summarize` of ``results`` (best first);
    ``evidence`` its :func:`~unetfamily.compare.evidence.case_evidence` on the primary metric; ``loaded``
    the artifacts when the caller has read them (:func:`~unetfamily.compare.artifacts.load_artifacts`).
    """
    try:
        import matplotlib
    except ImportError:
        log.warning("matplotlib is not installed: the report has no plots (pip install 'unetfamily[report]')")
        return {}
    # every text is drawn as written: names (cases, classes) are the user's, and matplotlib would read text
    # between two '$' as a formula (a case named '$\\x$' raised ValueError and lost the report)
    with matplotlib.rc_context({"text.parse_math": False}):
        return _draw(results, summaries, report_dir, evidence, loaded)


def _draw(results: CompareResults, summaries: Sequence[VariantSummary], report_dir: Path,
          evidence: CaseEvidence | None, loaded: tuple[Any, Any] | None) -> dict[str, bytes]:
    metric = results.primary_metric
    labels = {s.id: s.label for s in summaries}
    colors = {s.id: f"C{i % 10}" for i, s in enumerate(summaries)}  # one colour per variant in every figure
    figures: dict[str, bytes | None] = {}
    for name, draw in (("curves", lambda t: curves_figure(results, summaries, colors, t)),
                       ("cost", lambda t: cost_figure(summaries, metric, colors, t))):
        tips: Tips = []
        fig = draw(tips)
        if fig is not None:  # the web page's copy: SVG with hover values
            figures[f"{name}.png"], figures[f"{name}.svg"] = _png(fig), svg_text(fig, name, tips).encode()
    figures |= {
        "pruning.png": pruning_png(summaries, metric, colors),
    }
    if evidence is not None and evidence.ranks is not None:
        figures["ranks.png"] = ranks_png(evidence, labels, colors)
        figures["significance.png"] = significance_png(evidence, labels)
    scores = {s.id: first_seed_scores(results, s.id) for s in summaries}
    samples, preds = loaded if loaded is not None else load_artifacts(results, report_dir)
    if samples is not None:
        preds = {s.id: preds[s.id] for s in summaries if s.id in preds}
        background = results.protocol.background
        figures["samples.png"] = samples_png(samples, preds, labels, scores, background=background)
        figures["failures.png"] = failures_png(samples, preds, labels, scores, background=background)
    if evidence is not None and evidence.n_cases:
        rows = {vid: evidence.scores[evidence.variants.index(vid)].tolist() for vid in evidence.order()}
        cases = {vid: dict(zip(evidence.cases, row, strict=True)) for vid, row in rows.items()}
        figures["per_image.png"] = per_image_png(cases, labels, colors, metric, "mean over seeds")
    else:
        figures["per_image.png"] = per_image_png(scores, labels, colors)
    return {name: png for name, png in figures.items() if png is not None}
