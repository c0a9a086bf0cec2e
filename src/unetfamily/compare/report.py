"""The ``compare`` report: turn :class:`~unetfamily.compare.results.CompareResults` into a folder a person can read.

:func:`write_report` writes ``report.md``, ``report.html`` (one self-contained file: inline CSS,
plots as base64 data URIs, no external requests), ``results.json`` (the results, NaN as null),
``results.csv`` (one row per variant) and ``plots/*.png``, each atomically
(:func:`unetfamily.files.atomic_write_bytes`). The variants are summarised once and their
case-level evidence (:mod:`unetfamily.compare.evidence`) computed once; the report is built once
as a list of blocks and rendered to both Markdown and HTML (:mod:`unetfamily.compare.report_render`),
so the two always say the same thing. Written twice from the same results, every file is
byte-identical. ``docs/compare_report.md`` documents every file, column and plot.
"""
from __future__ import annotations

import importlib.util
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from unetfamily.compare.artifacts import load_artifacts
from unetfamily.compare.config import CompareConfig
from unetfamily.compare.evidence import CaseEvidence, case_evidence
from unetfamily.compare.plots import make_plots
from unetfamily.compare.report_browser import case_browser
from unetfamily.compare.report_cases import CASE_PLOTS, case_section
from unetfamily.compare.report_plan import plan_blocks
from unetfamily.compare.report_render import Block, markdown, render_html
from unetfamily.compare.report_tables import class_table, csv_bytes, csv_columns, pruning_table, results_table
from unetfamily.compare.results import CompareResults
from unetfamily.compare.summary import METRIC_LABELS, VariantSummary, summarize
from unetfamily.compare.verdict import verdict
from unetfamily.files import atomic_write_bytes, dump_json
from unetfamily.text import literal

log = logging.getLogger(__name__)

__all__ = ["PLOTS", "csv_columns", "write_report"]

PLOTS = ("curves.png", "cost.png", "pruning.png", "ranks.png", "significance.png", "samples.png", "failures.png",
         "per_image.png")
CAPTIONS = {
    "curves.png": "Validation curves: the primary metric on the validation split against the training step.",
    "cost.png": "Accuracy against cost: test score against MACs and against latency.",
    "pruning.png": "UNet++ pruning: the same trained model cut to level L.",
    "samples.png": "The same eval images for every model: image, ground truth, predictions.",
    "failures.png": "Where each model fails most: its three worst eval images by per-image Dice.",
    "per_image.png": "Per-case primary metric across models: the scores the case-level statistics use.",
    **CASE_PLOTS,
}


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


def _device(results: CompareResults) -> str:
    """The device, the CPU threads the runs trained with (read from the runs) and those the costs were measured with."""
    p, trained = results.protocol, sorted({r.threads for r in results.runs if r.threads})
    runs = f"runs trained with {'/'.join(map(str, trained))} thread{'s' if trained != [1] else ''}; " if trained else ""
    return f"{_fmt(p.config.device)}; {runs}costs measured with {_fmt(p.threads)} thread{'s' if p.threads != 1 else ''}"


def _widths(config: CompareConfig) -> str:
    if config.encoder is not None:
        return f"the {config.encoder} encoder's; each decoder sized from its features"
    return "paper" if config.widths == "paper" else f"{config.widths}, base width {config.base_width}"


def _encoder(encoder: Mapping[str, Any] | None, config: CompareConfig) -> list[tuple[str, str]]:
    """The Encoder row: the backbone every model is built on, the weight file it starts from, how it trains."""
    if not encoder:
        return []
    weights = ("random initialisation (no --encoder-weights)" if not encoder.get("weights") else
               f"weights from {literal(encoder['weights'])} (SHA-256 {str(encoder.get('sha256'))[:12]}), with the "
               "ImageNet input normalisation")
    training = [f"learning rate x {config.encoder_lr_mult:g}" if config.encoder_lr_mult != 1 else "",
                f"frozen for the first {config.freeze_encoder_steps} steps" if config.freeze_encoder_steps else ""]
    training = "; encoder " + ", ".join(t for t in training if t) if any(training) else ""
    return [("Encoder", f"{encoder['name']} for every model; {weights}{training}")]


def _evaluation(results: CompareResults) -> str:
    p = results.protocol
    cases = f" ({p.cases} cases)" if p.cases else ""
    if p.folds > 1:
        return (f"{p.folds}-fold cross-validation{cases}: every case evaluated once per seed by the model that did "
                "not train on it")
    return f"the {p.eval_split} split{cases}"


def _recipe_rows(p: Any, config: CompareConfig) -> list[tuple[str, str]]:
    """The rows a recipe sets: the command's options, or, under a plan, where the Plan section says them."""
    if p.plan:
        return [("Recipe", f"plan (see Plan below): scale {_fmt(p.plan.get('scale'))}, patches and batches fitted per "
                           f"model"), ("Schedule", _fmt(p.schedule)), ("Widths", _widths(config))]
    return [
        ("Learning rate", f"chosen per model from {_fmt(config.lr_grid)} on an inner validation split"
                          if config.lr_grid else _fmt(config.lr)),
        ("Schedule", _fmt(p.schedule)), ("Loss", _fmt(config.loss)),
        ("Augmentation", _fmt(p.augment)), ("Widths", _widths(config)),
        ("Input size", "\u00d7".join(str(x) for x in p.input_size) or "?"),
        ("Batch size", _fmt(config.batch_size)),
    ]


def _scored(p: Any) -> str:
    """What the foreground scores average, when class 0 is content (a background is left out, as usual)."""
    if p.background or not p.classes:
        return ""
    return (f"; class 0 ({literal(p.classes[0])}) is not a background: Dice, IoU, NSD and clDice average all "
            f"{len(p.classes)} classes")


def _protocol(results: CompareResults) -> list[Block]:
    p, config = results.protocol, results.protocol.config
    rows = [
        ("Data", f"{literal(p.data_name)} ({literal(_fmt(p.data))})"),
        ("Task", f"{p.task}; classes: {', '.join(literal(c) for c in p.classes) or 'none'}{_scored(p)}"),
        ("Splits", ", ".join(f"{literal(k)} {v}" for k, v in p.splits.items())
         + f"; evaluated on {_evaluation(results)}"),
        ("Models", _fmt(config.models) + (f"; ablations: {_fmt(config.ablations)}" if config.ablations else "")),
        *_encoder(p.encoder, p.config),
        ("Primary metric", f"{METRIC_LABELS.get(p.primary_metric, p.primary_metric)} per case; NSD tolerance "
                           f"{_fmt(config.nsd_tolerance)} px"),
        ("Budget", _fmt(p.budget)), ("Seeds", _fmt(p.seeds)),
        ("Optimiser", _fmt(p.optimizer)),
        *_recipe_rows(p, config),
        ("Device", _device(results)),
        ("Version", f"unetfamily {_fmt(p.version)}, created {_fmt(p.created)}"),
    ]
    blocks: list[Block] = [("h2", "Protocol"), ("p", "Every model was trained and evaluated under the same protocol: "
                                                     "the same data, split, budget, seeds, optimiser and loss.")]
    blocks.append(("table", ["Setting", "Value"], [[k, v] for k, v in rows]))
    if config.command:
        blocks += [("p", "Command:"), ("code", config.command)]
    return blocks + plan_blocks(p.plan)


def _units(results: CompareResults, summaries: Sequence[VariantSummary]) -> str:
    scores = "Dice, IoU, mIoU" if results.protocol.task == "multiclass" else "Dice, IoU"
    if any(math.isfinite(s.mean(m)) for s in summaries for m in ("nsd", "cldice")):
        scores += ", NSD, clDice"
    if any(math.isfinite(s.mean("hd95")) for s in summaries):
        return f"{scores} in percent, HD95 in pixels (lower is better)"
    return f"{scores} in percent"


def _rf_note(summaries: Sequence[VariantSummary]) -> str:
    if not any(s.receptive_field is not None for s in summaries):
        return ""
    return (" RF = receptive field of the output in pixels, measured on the network: read with the depth ablation, "
            "it shows whether more down-sampling (more context) pays off.")


def _plots(plots: Mapping[str, bytes]) -> list[Block]:
    shown = {name: png for name, png in plots.items() if name in CAPTIONS and name not in CASE_PLOTS}
    if shown:
        svg = {name: plots[name.replace(".png", ".svg")].decode() for name in shown
               if name.replace(".png", ".svg") in plots}  # the page shows these with hover values
        return [("h2", "Plots"), *(block for name, png in shown.items()
                                   for block in (("p", CAPTIONS[name]), ("img", name, png, svg.get(name))))]
    if importlib.util.find_spec("matplotlib") is None:
        return [("h2", "Plots"), ("p", "No plots: matplotlib is not installed (`pip install 'unetfamily[report]'`).")]
    return [("h2", "Plots"), ("p", "No plots: the results hold no curves, costs or per-image scores to draw.")]


def _missing(results: CompareResults) -> list[Block]:
    """The runs that failed with their own error, and the models left out because of them."""
    if not results.missing:
        return []
    rows = [[m.label, literal(m.error), literal(m.dir)] for m in results.missing]
    left_out = ", ".join(sorted({m.variant for m in results.missing}))
    return [("h2", "Missing runs"),
            ("p", f"These runs failed and were not retried (an error of the run itself, not of its machine), so "
                  f"{left_out} {'is' if ',' not in left_out else 'are'} left out of the comparison: every compared "
                  "model has the same runs. Fix the cause and run the same command again: finished runs are reused."),
            ("table", ["Run", "Error", "Folder (its train.log)"], rows)]


def _runs(results: CompareResults, report_dir: Path) -> list[Block]:
    """Every run with links to its log, TensorBoard folder and checkpoint (runs whose folder is beside the report)."""
    labels = {v.id: v.label for v in results.variants}
    rows = []
    for run in results.runs:
        folder = f"runs/{run.variant}/seed{run.seed}" + (f"/fold{run.fold}" if results.protocol.folds > 1 else "")
        if not (report_dir / folder).is_dir():
            continue
        links = [f"[{name}]({folder}/{path})" if (report_dir / folder / path).exists() else "—"
                 for name, path in (("train.log", "train.log"), ("tensorboard", "tensorboard"),
                                    ("last.safetensors", "checkpoints/last.safetensors"))]  # --loggers '': no events
        rows.append([labels.get(run.variant, run.variant), str(run.seed), str(run.fold), str(run.steps), *links])
    if not rows:
        return []
    return [("h2", "Runs"), ("p", "Each run's folder: its log, its TensorBoard events (`tensorboard --logdir runs`) "
                                  "and the checkpoint that was evaluated."),
            ("table", ["Model", "Seed", "Fold", "Steps", "Log", "TensorBoard", "Checkpoint"], rows)]


def _blocks(results: CompareResults, summaries: Sequence[VariantSummary], evidence: CaseEvidence,
            plots: Mapping[str, bytes], browser: Sequence[Block], runs: Sequence[Block]) -> list[Block]:
    proto, metric = results.protocol, results.primary_metric
    name = METRIC_LABELS.get(metric, metric)
    n_seeds = max([s.n_seeds for s in summaries] + [0])
    labels = {s.id: s.label for s in summaries}
    blocks: list[Block] = [
        ("h1", f"unetfamily compare: {literal(proto.data_name)}"),
        ("p", f"{len(summaries)} models, up to {n_seeds} seed{'s' * (n_seeds != 1)} each, {proto.task} "
              f"task, evaluated on {_evaluation(results)}. Primary metric: {name} per case."),
        *_missing(results),
        ("h2", "Verdict"), *(("p", text) for text in verdict(results, summaries, evidence)),
        ("h2", "Results"), results_table(results, summaries),
        ("p", f"Mean \u00b1 sample std over seeds (std left out with one seed); {_units(results, summaries)}; ranked "
              f"by the mean {name} per case (the Case-level statistics below); the best value of each column in "
              "bold. Dice and IoU here pool every held-out pixel of a run (one confusion matrix), the other scores "
              f"are means over its cases; with many empty cases the two can differ widely.{_rf_note(summaries)} "
              "Costs are per image at the evaluated size: MACs = multiply-accumulates, latency = batch-1 eval "
              "forward, peak memory = one training step, train = wall-clock seconds per run."),
        *case_section(results, evidence, labels, plots), *class_table(results, summaries),
        *pruning_table(summaries, metric), *_plots(plots), ("h2", "Case browser"), *browser, *_protocol(results),
        *runs,
        ("h2", "Files"), ("p", "`results.json` (the full results, NaN as null), `results.csv` (the table, one row per "
                               "variant), `plots/` (the figures above), `cases/` (full-resolution images of the case browser), "
                               "`artifacts/` (eval images and seed-0 predictions); `docs/compare_report.md` in "
                               "unetfamily explains each."),
    ]
    return blocks


def _write_cases(report_dir: Path, files: Mapping[str, bytes]) -> dict[str, Path]:
    """The case browser's full-resolution images under ``cases/``; those of an earlier report not among them removed."""
    written = {name: atomic_write_bytes(report_dir / name, data, durable=False) for name, data in files.items()}
    folder = report_dir / "cases"
    if folder.is_dir():
        for path in sorted(folder.rglob("*"), reverse=True):  # files before their folders
            if path.is_file() and path.relative_to(report_dir).as_posix() not in files:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    return written


def write_report(results: CompareResults, report_dir: str | Path) -> dict[str, Path]:
    """Write the report files into ``report_dir`` and return ``{relative name: path}``.

    Names: ``report.md``, ``report.html``, ``results.json``, ``results.csv`` and
    ``plots/<name>.png`` for each figure the results allow (see :data:`PLOTS`). Artifacts are
    read from ``report_dir`` (``results.artifacts``); missing ones only drop figures.
    Figures of an earlier report that these results do not allow are removed. Two processes that report into one
    folder (two compares sharing an ``--out``) take turns on ``report.lock``: one's clean-up of files it does not
    write would otherwise delete the other's files being written.
    """
    from filelock import FileLock

    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(report_dir / "report.lock")):
        return _write_report(results, report_dir)


def _write_report(results: CompareResults, report_dir: Path) -> dict[str, Path]:
    evidence = case_evidence(results, [v.id for v in results.variants], results.primary_metric)
    summaries = summarize(results, evidence)
    samples, preds = load_artifacts(results, report_dir)
    plots = make_plots(results, summaries, report_dir, evidence, (samples, preds))
    written: dict[str, Path] = {}
    for name in PLOTS:
        path = report_dir / "plots" / name
        if name in plots:
            written[f"plots/{name}"] = atomic_write_bytes(path, plots[name])
        elif path.exists():
            path.unlink()
    browser, case_files = case_browser(results, [(s.id, s.label) for s in summaries], samples, preds)
    written |= _write_cases(report_dir, case_files)
    blocks = _blocks(results, summaries, evidence, plots, browser, _runs(results, report_dir))
    files = {
        "report.md": markdown(blocks).encode(),
        "report.html": render_html(blocks, f"unetfamily compare: {results.protocol.data_name}").encode(),
        "results.json": (dump_json(results.to_dict(), indent=2) + "\n").encode(),
        "results.csv": csv_bytes(results, summaries, evidence),
    }
    for name, data in files.items():
        written[name] = atomic_write_bytes(report_dir / name, data)
    log.info("compare report written to %s", report_dir / "report.html")
    return dict(sorted(written.items()))
