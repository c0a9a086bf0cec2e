"""The ``compare`` report: turn :class:`~unetfamily.compare.results.CompareResults` into a folder a person can read.

:func:`write_report` writes ``report.md``, ``report.html`` (one self-contained file: inline CSS,
plots as base64 data URIs, no external requests), ``results.json`` (the results, NaN as null),
``results.csv`` (one row per variant) and ``plots/*.png``, each atomically
(:func:`unetfamily.files.atomic_write_bytes`). The variants are summarised once; the report is
built once as a list of blocks and rendered to both Markdown and HTML, so the two always say the
same thing. ``docs/compare_report.md`` documents every file, column and plot.
"""
from __future__ import annotations

import base64
import csv
import html
import importlib.util
import io
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unetfamily.compare.config import CompareConfig
from unetfamily.compare.plots import make_plots
from unetfamily.compare.results import CompareResults
from unetfamily.compare.summary import METRIC_LABELS, VariantSummary, finite_mean, summarize
from unetfamily.compare.verdict import compare_scores, format_p, verdict
from unetfamily.files import atomic_write_bytes, dump_json

log = logging.getLogger(__name__)

__all__ = ["PLOTS", "csv_columns", "write_report"]

PLOTS = ("curves.png", "cost.png", "pruning.png", "samples.png", "failures.png", "per_image.png")
CAPTIONS = {
    "curves.png": "Validation curves: the primary metric on the validation split against the training step.",
    "cost.png": "Accuracy against cost: test score against MACs and against latency.",
    "pruning.png": "UNet++ pruning: the same trained model cut to level L.",
    "samples.png": "The same eval images for every model: image, ground truth, predictions.",
    "failures.png": "Where each model fails most: its three worst eval images by per-image Dice.",
    "per_image.png": "Per-image Dice across models.",
}
SCORE_COLUMNS = ("dice", "iou", "miou", "pixel_accuracy", "hd95")
COST_COLUMNS = ("params", "macs", "train_seconds", "train_step_ms", "latency_ms", "peak_memory_mb", "throughput")
# A report block: ("h1" | "h2" | "p" | "code", text), ("img", file name, png bytes) or
# ("table", header, rows); a column whose cells all start with a number (or are missing) is right-aligned.
Block = tuple
DASH = "\u2014"  # the cell of a missing value
NUMERIC = re.compile(r"^(\*\*)?[\u2212+\-<]?\s?\d")


def _slug(name: str, i: int, seen: set[str]) -> str:
    slug = re.sub(r"[^0-9a-z]+", "_", str(name).lower()).strip("_") or f"class{i}"
    slug = slug if slug not in seen else f"{slug}_{i}"
    seen.add(slug)
    return slug


def _class_slugs(results: CompareResults, summaries: Sequence[VariantSummary]) -> list[str]:
    """Column slugs of the classes (multi-class only): ``iou_<slug>_mean`` in the CSV."""
    if results.primary_metric != "miou":
        return []
    classes = results.protocol.classes
    k = max([len(classes)] + [sum(key.startswith("class_iou:") for key in s.scores) for s in summaries])
    seen: set[str] = set()
    return [_slug(classes[i] if i < len(classes) else f"class{i}", i, seen) for i in range(k)]


def csv_columns(results: CompareResults, summaries: Sequence[VariantSummary]) -> list[str]:
    """The header of ``results.csv`` (per-class columns for multi-class tasks); ``summaries`` = ``summarize(results)``."""
    slugs = _class_slugs(results, summaries)
    return (["rank", "id", "label", "model", "family", "ablation", "n_seeds"]
            + [f"{m}_{s}" for m in SCORE_COLUMNS for s in ("mean", "std")]
            + [f"iou_{c}_{s}" for c in slugs for s in ("mean", "std")] + list(COST_COLUMNS))


def _csv(results: CompareResults, summaries: Sequence[VariantSummary]) -> bytes:
    slugs = _class_slugs(results, summaries)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(csv_columns(results, summaries))

    def num(x: float) -> str:
        return "" if not math.isfinite(x) else str(int(x)) if float(x).is_integer() and abs(x) >= 1e3 else f"{x:.6g}"

    for rank, s in enumerate(summaries, start=1):
        row = [rank, s.id, s.label, s.model, s.family, s.ablation or "", s.n_seeds]
        row += [num(f(m)) for m in SCORE_COLUMNS for f in (s.mean, s.std)]
        row += [num(f(f"class_iou:{i}")) for i in range(len(slugs)) for f in (s.mean, s.std)]
        row += [num(s.costs.get(c, math.nan)) for c in COST_COLUMNS]
        writer.writerow(row)
    return buffer.getvalue().encode()


@dataclass(frozen=True)
class _Column:
    """A column of the results table: the number that decides "best", and how its cell reads."""

    header: str
    value: Callable[[VariantSummary], float]
    cell: Callable[[VariantSummary], str]
    higher_is_better: bool


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


def _results_table(results: CompareResults, summaries: Sequence[VariantSummary]) -> Block:
    """Main table, best first, with the best value of each score and cost column in bold."""
    proto = results.protocol
    h, w = (list(proto.input_size) + ["?", "?"])[:2]
    if results.primary_metric == "dice":
        cols = [_score_column("Dice (%)", "dice", 100.0), _score_column("IoU (%)", "iou", 100.0)]
        if any(math.isfinite(s.mean("hd95")) for s in summaries):
            cols.append(_score_column("HD95 (px)", "hd95", 1.0, higher_is_better=False))
    else:
        classes = proto.classes
        cols = [_score_column("mIoU (%)", "miou", 100.0)] + [
            _score_column(f"IoU {classes[i] if i < len(classes) else f'class {i}'} (%)", f"class_iou:{i}", 100.0)
            for i in range(len(_class_slugs(results, summaries)))
        ]
    cols += [_cost_column("Params (M)", "params", 1e-6), _cost_column("MACs (G)", "macs", 1e-9),
             _cost_column("Train (s)", "train_seconds", 1.0),
             _cost_column(f"Latency (ms, {h}\u00d7{w})", "latency_ms", 1.0),
             _cost_column("Peak mem (MB)", "peak_memory_mb", 1.0)]
    best = []
    for col in cols:
        vals = [col.value(s) for s in summaries if math.isfinite(col.value(s))]
        best.append((max(vals) if col.higher_is_better else min(vals)) if len(vals) > 1 else None)
    rows = []
    for rank, s in enumerate(summaries, start=1):
        cells = [f"**{c.cell(s)}**" if b is not None and c.value(s) == b else c.cell(s)
                 for c, b in zip(cols, best, strict=True)]
        rows.append([str(rank), s.label, str(s.n_seeds), *cells])
    return ("table", ["#", "Model", "Seeds"] + [c.header for c in cols], rows)


def _significance(results: CompareResults, summaries: Sequence[VariantSummary]) -> list[Block]:
    metric = results.primary_metric
    ranked = [s for s in summaries if math.isfinite(s.mean(metric))]
    if len(ranked) < 2:
        return []
    top = ranked[0]
    methods = {"welch": "Welch's t-test", "range": "seed range", "single": "single seed", "none": DASH}
    rows = []
    for s in ranked[1:]:
        c = compare_scores(s.scores[metric], top.scores[metric])
        p = DASH if c.p is None else format_p(c.p)
        noise = {True: "yes", False: "no", None: "cannot tell"}[c.within_noise]
        rows.append([s.label, f"{100 * c.diff:+.2f}".replace("-", "\u2212"), methods[c.method], p, noise])
    if max(s.n_seeds for s in ranked) < 2:
        note = ("Every model was trained with a single seed, so seed-to-seed noise is unknown and a single seed "
                "cannot separate models: rerun with `--seeds 3` (or more) before acting on small differences.")
    else:
        note = (f"Differences are against {top.label}, in {METRIC_LABELS[metric]} points. Welch's t-test (two-sided, "
                "unequal variances) needs at least two seeds per model; p >= 0.05 counts as within noise. "
                "p-values are not corrected for multiple comparisons, and with 2-3 seeds the test has little "
                "power: a 'no' is strong evidence, a 'yes' only says the seeds could not tell.")
    header = ["Model", f"\u0394 {METRIC_LABELS[metric]} vs {top.label} (points)", "test", "p", "within noise?"]
    return [("h2", "Is the difference real?"), ("table", header, rows), ("p", note)]


def _pruning_table(summaries: Sequence[VariantSummary], metric: str) -> list[Block]:
    rows = []
    for s in summaries:
        if not s.levels:
            continue
        key = s.level_metric(metric)
        full = s.levels[max(s.levels)]
        fm, fl = finite_mean(full[key]), finite_mean(full["latency_ms"])
        for lvl, vals in s.levels.items():
            m, lat, macs = (finite_mean(vals[k]) for k in (key, "latency_ms", "macs"))
            rows.append([s.label, f"L{lvl}", METRIC_LABELS[key], _num(100 * m, ".2f"), _num(lat), _num(macs / 1e9),
                         _num(m / fm, ".1%") if fm > 0 else DASH, _num(lat / fl, ".0%") if fl > 0 else DASH])
    if not rows:
        return []
    return [("h2", "UNet++ pruning levels"),
            ("table", ["Model", "Level", "Metric", "Score (%)", "Latency (ms)", "MACs (G)", "Score vs full",
                       "Latency vs full"], rows)]


def _num(x: float, spec: str = ".3g") -> str:
    return format(x, spec) if math.isfinite(x) else DASH


def _fmt(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, Mapping):
        parts = [f"{k}={_fmt(v)}" for k, v in value.items() if v is not None]
        return ", ".join(parts) or "none"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:g}"
    return str(value)


def _widths(config: CompareConfig) -> str:
    return "paper" if config.widths == "paper" else f"{config.widths}, base width {config.base_width}"


def _protocol(results: CompareResults) -> list[Block]:
    p, config = results.protocol, results.protocol.config
    rows = [
        ("Data", f"{p.data_name} ({_fmt(p.data)})"),
        ("Task", f"{p.task}; classes: {_fmt(p.classes)}"),
        ("Splits", ", ".join(f"{k} {v}" for k, v in p.splits.items()) + f"; evaluated on {p.eval_split}"),
        ("Models", _fmt(config.models) + (f"; ablations: {_fmt(config.ablations)}" if config.ablations else "")),
        ("Budget", _fmt(p.budget)), ("Seeds", _fmt(p.seeds)),
        ("Optimiser", _fmt(p.optimizer)), ("Schedule", _fmt(p.schedule)), ("Loss", _fmt(config.loss)),
        ("Augmentation", _fmt(p.augment)), ("Widths", _widths(config)),
        ("Input size", "\u00d7".join(str(x) for x in p.input_size) or "?"),
        ("Batch size", _fmt(config.batch_size)),
        ("Device", f"{_fmt(config.device)}, {_fmt(p.threads)} threads"),
        ("Version", f"unetfamily {_fmt(p.version)}, created {_fmt(p.created)}"),
    ]
    blocks: list[Block] = [("h2", "Protocol"), ("p", "Every model was trained and evaluated under the same protocol: "
                                                     "the same data, split, budget, seeds, optimiser and loss.")]
    blocks.append(("table", ["Setting", "Value"], [[k, v] for k, v in rows]))
    if config.command:
        blocks += [("p", "Command:"), ("code", config.command)]
    return blocks


def _units(metric: str, summaries: Sequence[VariantSummary]) -> str:
    if metric == "miou":
        return "mIoU and per-class IoU in percent"
    if any(math.isfinite(s.mean("hd95")) for s in summaries):
        return "Dice and IoU in percent, HD95 in pixels (lower is better)"
    return "Dice and IoU in percent"


def _blocks(results: CompareResults, summaries: Sequence[VariantSummary], plots: Mapping[str, bytes]) -> list[Block]:
    proto, metric = results.protocol, results.primary_metric
    n_seeds = max([s.n_seeds for s in summaries] + [0])
    blocks: list[Block] = [
        ("h1", f"unetfamily compare: {proto.data_name}"),
        ("p", f"{len(summaries)} models, up to {n_seeds} seed{'s' * (n_seeds != 1)} each, {proto.task} "
              f"task, evaluated on the {proto.eval_split} split. Primary metric: {METRIC_LABELS[metric]}."),
        ("h2", "Verdict"), *(("p", text) for text in verdict(results, summaries)),
        ("h2", "Results"), _results_table(results, summaries),
        ("p", f"Mean \u00b1 sample std over seeds (std left out with one seed); {_units(metric, summaries)}; sorted by "
              f"{METRIC_LABELS[metric]}; the best value of each column in bold. Costs are per image at the evaluated "
              "size: MACs = multiply-accumulates, latency = batch-1 eval forward, peak memory = one training step, "
              "train = wall-clock seconds per run."),
        *_significance(results, summaries), *_pruning_table(summaries, metric),
    ]
    if plots:
        blocks.append(("h2", "Plots"))
        for name, png in plots.items():
            blocks += [("p", CAPTIONS[name]), ("img", name, png)]
    elif importlib.util.find_spec("matplotlib") is None:
        blocks.append(("p", "No plots: matplotlib is not installed (`pip install 'unetfamily[report]'`)."))
    else:
        blocks.append(("p", "No plots: the results hold no curves, costs or per-image scores to draw."))
    blocks += _protocol(results)
    blocks += [("h2", "Files"), ("p", "`results.json` (the full results, NaN as null), `results.csv` (the table, one "
                                      "row per variant), `plots/` (the figures above), `artifacts/` (eval images and "
                                      "seed-0 predictions); `docs/compare_report.md` in unetfamily explains each.")]
    return blocks


def _numeric_columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[bool]:
    return [bool(rows) and all(NUMERIC.match(row[i]) or row[i] == DASH for row in rows) for i in range(len(header))]


def _md_inline(text: str) -> str:
    return text.replace("|", "\\|")


def _markdown(blocks: Sequence[Block]) -> str:
    out = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2"):
            out.append(f"{'#' * int(kind[1])} {rest[0]}")
        elif kind == "p":
            out.append(rest[0])
        elif kind == "code":
            out.append(f"```\n{rest[0]}\n```")
        elif kind == "img":
            out.append(f"![{rest[0]}](plots/{rest[0]})")
        elif kind == "table":
            header, rows = rest
            right = _numeric_columns(header, rows)
            out.append("\n".join(["| " + " | ".join(_md_inline(c) for c in header) + " |",
                                  "|" + "|".join("---:" if r else "---" for r in right) + "|"]
                                 + ["| " + " | ".join(_md_inline(c) for c in row) + " |" for row in rows]))
    return "\n\n".join(out) + "\n"


def _html_inline(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


CSS = """body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1d2430;
background:#fff;max-width:1240px;margin:2rem auto;padding:0 1.2rem;line-height:1.5}
h1{font-size:1.7rem;margin-bottom:.2rem}h2{font-size:1.25rem;margin-top:2.2rem;border-bottom:1px solid #d8dee8}
.scroll{overflow-x:auto}table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid #d8dee8;padding:.3rem .55rem}th{background:#eef2f7;text-align:left;vertical-align:bottom}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tbody tr:nth-child(even){background:#f7f9fc}
img{max-width:100%;height:auto;border:1px solid #e4e8ee;margin:.3rem 0 1rem}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;background:#f1f3f6;border-radius:3px}
pre{padding:.6rem;overflow-x:auto;white-space:pre-wrap}"""


def _html(blocks: Sequence[Block], title: str) -> str:
    out = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2"):
            out.append(f"<{kind}>{html.escape(rest[0])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{_html_inline(rest[0])}</p>")
        elif kind == "code":
            out.append(f"<pre><code>{html.escape(rest[0])}</code></pre>")
        elif kind == "img":
            data = base64.b64encode(rest[1]).decode("ascii")
            out.append(f'<img alt="{html.escape(rest[0])}" src="data:image/png;base64,{data}">')
        elif kind == "table":
            header, rows = rest
            right = _numeric_columns(header, rows)
            head = "".join(f"<th>{html.escape(c)}</th>" for c in header)
            body = "".join("<tr>" + "".join(f"<td{' class=num' if r else ''}>{_html_inline(c)}</td>"
                                            for c, r in zip(row, right, strict=True)) + "</tr>" for row in rows)
            out.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(out) + "\n</body></html>\n")


def write_report(results: CompareResults, report_dir: str | Path) -> dict[str, Path]:
    """Write the report files into ``report_dir`` and return ``{relative name: path}``.

    Names: ``report.md``, ``report.html``, ``results.json``, ``results.csv`` and
    ``plots/<name>.png`` for each figure the results allow (see :data:`PLOTS`). Artifacts are
    read from ``report_dir`` (``results.artifacts``); missing ones only drop figures.
    Figures of an earlier report that these results do not allow are removed.
    """
    report_dir = Path(report_dir)
    summaries = summarize(results)
    plots = make_plots(results, summaries, report_dir)
    written: dict[str, Path] = {}
    for name in PLOTS:
        path = report_dir / "plots" / name
        if name in plots:
            written[f"plots/{name}"] = atomic_write_bytes(path, plots[name])
        elif path.exists():
            path.unlink()
    blocks = _blocks(results, summaries, plots)
    files = {
        "report.md": _markdown(blocks).encode(),
        "report.html": _html(blocks, f"unetfamily compare: {results.protocol.data_name}").encode(),
        "results.json": (dump_json(results.to_dict(), indent=2) + "\n").encode(),
        "results.csv": _csv(results, summaries),
    }
    for name, data in files.items():
        written[name] = atomic_write_bytes(report_dir / name, data)
    log.info("compare report written to %s", report_dir / "report.html")
    return dict(sorted(written.items()))
