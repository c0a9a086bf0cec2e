"""The seed-level tables of the ``compare`` report and ``results.csv``: scores, costs, classes, pruning.

Every function takes the ranked summaries (:func:`unetfamily.compare.summary.summarize`) and
returns report blocks (:mod:`unetfamily.compare.report_render`) or CSV bytes; scores are shown in
percent, HD95 in pixels, and the best value of each column is bold.
"""
from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from unetfamily.compare.evidence import CaseEvidence
from unetfamily.compare.report_render import DASH, Block
from unetfamily.compare.results import CompareResults
from unetfamily.compare.summary import METRIC_LABELS, VariantSummary, finite_mean
from unetfamily.engine.score_order import best_index, finite_score
from unetfamily.text import literal

__all__ = ["SCORE_COLUMNS", "COST_COLUMNS", "csv_bytes", "csv_columns", "class_table", "pruning_table",
           "results_table"]

SCORE_COLUMNS = ("dice", "iou", "miou", "nsd", "cldice", "pixel_accuracy", "hd95")
CASE_COLUMNS = ("case_mean", "case_ci_low", "case_ci_high", "p_first", "median_rank", "seed_std")
COST_COLUMNS = ("params", "macs", "train_seconds", "train_step_ms", "latency_ms", "peak_memory_mb", "throughput")


def _slug(name: str, i: int, seen: set[str]) -> str:
    slug = re.sub(r"[^0-9a-z]+", "_", str(name).lower()).strip("_") or f"class{i}"
    slug = slug if slug not in seen else f"{slug}_{i}"
    seen.add(slug)
    return slug


def _class_names(results: CompareResults, summaries: Sequence[VariantSummary]) -> list[str]:
    """The class names of a multi-class task (``class <i>`` where unnamed); empty for binary tasks."""
    if results.protocol.task != "multiclass":
        return []
    classes = results.protocol.classes
    k = max([len(classes)] + [sum(key.startswith("class_iou:") for key in s.scores) for s in summaries])
    return [str(classes[i]) if i < len(classes) else f"class {i}" for i in range(k)]


def _class_slugs(results: CompareResults, summaries: Sequence[VariantSummary]) -> list[str]:
    seen: set[str] = set()
    return [_slug(name, i, seen) for i, name in enumerate(_class_names(results, summaries))]


def csv_columns(results: CompareResults, summaries: Sequence[VariantSummary]) -> list[str]:
    """The header of ``results.csv`` (per-class columns for multi-class tasks); ``summaries = summarize(results)``."""
    slugs = _class_slugs(results, summaries)
    return (["rank", "id", "label", "model", "family", "ablation", "n_seeds"]
            + [f"{m}_{s}" for m in SCORE_COLUMNS for s in ("mean", "std")] + list(CASE_COLUMNS)
            + [f"{m}_{c}_{s}" for m in ("iou", "dice") for c in slugs for s in ("mean", "std")]
            + ["receptive_field", "lr"] + list(COST_COLUMNS))


def _num(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return ""
    return str(int(x)) if float(x).is_integer() and abs(x) >= 1e3 else f"{x:.6g}"


def _case_cells(evidence: CaseEvidence | None, vid: str) -> list[str]:
    if evidence is None or evidence.ranks is None or vid not in evidence.variants:
        return [""] * len(CASE_COLUMNS)
    i = evidence.variants.index(vid)
    return [_num(evidence.mean(vid)), _num(evidence.ranks.ci_low[i]), _num(evidence.ranks.ci_high[i]),
            _num(evidence.p_first(vid)), _num(evidence.rank_quantile(vid, 0.5)), _num(evidence.seed_std(vid))]


def csv_bytes(results: CompareResults, summaries: Sequence[VariantSummary], evidence: CaseEvidence | None) -> bytes:
    """``results.csv``: one row per variant in rank order, the runner's units, empty cells for missing values."""
    n_classes = len(_class_slugs(results, summaries))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(csv_columns(results, summaries))
    for rank, s in enumerate(summaries, start=1):
        row = [rank, s.id, s.label, s.model, s.family, s.ablation or "", s.n_seeds]
        row += [_num(f(m)) for m in SCORE_COLUMNS for f in (s.mean, s.std)] + _case_cells(evidence, s.id)
        row += [_num(f(f"class_{m}:{i}")) for m in ("iou", "dice") for i in range(n_classes) for f in (s.mean, s.std)]
        row += [_num(s.receptive_field), _num(s.lr)] + [_num(s.costs.get(c, math.nan)) for c in COST_COLUMNS]
        writer.writerow(row)
    return buffer.getvalue().encode()


@dataclass(frozen=True)
class _Column:
    """A column of a table: the number that decides "best", and how its cell reads."""

    header: str
    value: Callable[[VariantSummary], float]
    cell: Callable[[VariantSummary], str]
    higher_is_better: bool | None  # None: no best value in bold


def _score_column(header: str, key: str, scale: float, higher_is_better: bool = True) -> _Column:
    def cell(s: VariantSummary) -> str:
        mean, std = s.mean(key) * scale, s.std(key) * scale
        if not math.isfinite(mean):
            return DASH
        return f"{mean:.2f} \u00b1 {std:.2f}" if math.isfinite(std) else f"{mean:.2f}"

    return _Column(header, lambda s: s.mean(key), cell, higher_is_better)


def _cost_column(header: str, key: str, scale: float) -> _Column:
    def value(s: VariantSummary) -> float:
        return s.costs.get(key, math.nan)

    return _Column(header, value, lambda s: f"{value(s) * scale:.3g}" if math.isfinite(value(s)) else DASH, False)


def _plain_column(header: str, get: Callable[[VariantSummary], float | None], spec: str) -> _Column:
    def value(s: VariantSummary) -> float:
        v = get(s)
        return math.nan if v is None else float(v)

    return _Column(header, value, lambda s: format(value(s), spec) if math.isfinite(value(s)) else DASH, None)


def _table(summaries: Sequence[VariantSummary], cols: Sequence[_Column], lead: Sequence[str],
           lead_cells: Callable[[int, VariantSummary], list[str]]) -> Block:
    """A table with the best value of each column in bold (when two or more values are finite; NaN never is)."""
    best = []
    for col in cols:
        values = [col.value(s) for s in summaries]
        ok = col.higher_is_better is not None and sum(finite_score(v) is not None for v in values) > 1
        i = best_index(values, lower=not col.higher_is_better) if ok else None
        best.append(values[i] if i is not None else None)
    rows = []
    for rank, s in enumerate(summaries, start=1):
        cells = [f"**{c.cell(s)}**" if b is not None and c.value(s) == b else c.cell(s)
                 for c, b in zip(cols, best, strict=True)]
        rows.append([*lead_cells(rank, s), *cells])
    return ("table", [*lead, *(c.header for c in cols)], rows)


def _measured(summaries: Sequence[VariantSummary], key: str) -> bool:
    return any(math.isfinite(s.mean(key)) for s in summaries)


def results_table(results: CompareResults, summaries: Sequence[VariantSummary]) -> Block:
    """Main table in rank order: scores over seeds, the receptive field, the learning rate and the costs."""
    proto = results.protocol
    h, w = (list(proto.input_size) + ["?", "?"])[:2]
    keys = ["dice", "iou"] + (["miou"] if proto.task == "multiclass" else []) + ["nsd", "cldice"]
    cols = [_score_column(f"{METRIC_LABELS[k]} (%)", k, 100.0) for k in keys if k in ("dice", "iou", "miou")
            or _measured(summaries, k)]
    if _measured(summaries, "hd95"):
        cols.append(_score_column("HD95 (px)", "hd95", 1.0, higher_is_better=False))
    if any(s.receptive_field is not None for s in summaries):
        cols.append(_plain_column("RF (px)", lambda s: s.receptive_field, ".0f"))
    if proto.config.lr_grid or len({s.lr for s in summaries if s.lr is not None}) > 1:
        cols.append(_plain_column("LR", lambda s: s.lr, "g"))
    cols += [_cost_column("Params (M)", "params", 1e-6), _cost_column("MACs (G)", "macs", 1e-9),
             _cost_column("Train (s)", "train_seconds", 1.0),
             _cost_column(f"Latency (ms, {h}\u00d7{w})", "latency_ms", 1.0),
             _cost_column("Peak mem (MB)", "peak_memory_mb", 1.0)]
    return _table(summaries, cols, ["#", "Model", "Seeds"], lambda rank, s: [str(rank), s.label, str(s.n_seeds)])


def class_table(results: CompareResults, summaries: Sequence[VariantSummary]) -> list[Block]:
    """Multi-class only: IoU and Dice of every class (mean ± std over seeds)."""
    names = _class_names(results, summaries)
    if not names:
        return []
    cols = [_score_column(f"{'IoU' if m == 'iou' else 'Dice'} {literal(name)} (%)", f"class_{m}:{i}", 100.0)
            for m in ("iou", "dice") for i, name in enumerate(names) if _measured(summaries, f"class_{m}:{i}")]
    if not cols:
        return []
    return [("h2", "Per-class scores"), _table(summaries, cols, ["Model"], lambda _, s: [s.label]),
            ("p", "IoU and Dice of each class on the evaluated cases, in percent, mean \u00b1 std over seeds.")]


def pruning_table(summaries: Sequence[VariantSummary], metric: str) -> list[Block]:
    """Per pruning level L of each variant that has levels: score, latency, MACs and their share of the full level."""
    rows = []
    for s in summaries:
        if not s.levels:
            continue
        key = s.level_metric(metric)
        full = s.levels[max(s.levels)]
        fm, fl = finite_mean(full[key]), finite_mean(full["latency_ms"])
        for lvl, vals in s.levels.items():
            m, lat, macs = (finite_mean(vals[k]) for k in (key, "latency_ms", "macs"))
            rows.append([s.label, f"L{lvl}", METRIC_LABELS[key], _fmt(100 * m, ".2f"), _fmt(lat), _fmt(macs / 1e9),
                         _fmt(m / fm, ".1%") if fm > 0 else DASH, _fmt(lat / fl, ".0%") if fl > 0 else DASH])
    if not rows:
        return []
    return [("h2", "UNet++ pruning levels"),
            ("table", ["Model", "Level", "Metric", "Score (%)", "Latency (ms)", "MACs (G)", "Score vs full",
                       "Latency vs full"], rows)]


def _fmt(x: float, spec: str = ".3g") -> str:
    return format(x, spec) if math.isfinite(x) else DASH
