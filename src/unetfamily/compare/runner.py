"""``run_compare``: train family members under one protocol, evaluate, measure, report.

Protocol (the same for every variant, recorded in the report): one data config and the same
folds, the same augmentation, optimiser, schedule, loss, batch size and budget (epochs, steps or
seconds), the same seeds (so the same data order and augmentation per seed), evaluation of the
FINAL weights on held-out cases (the test split, or val, or out of fold under cross-validation;
no model selection on them). Costs (parameters, MACs, latency, throughput, peak training memory)
come from :func:`unetfamily.bench.measure_isolated` at the evaluated input size on the
comparison's device; the receptive field is computed from each variant's network.

Every run's training :class:`~unetfamily.config.Config` is one base config with the variant's
model, learning rate, the seed and the run folder replaced. Resumable and safe to re-run: finished
runs are reused only when their fingerprint matches (:mod:`unetfamily.compare.plan`), an
interrupted run resumes from its last checkpoint, measured costs are kept in
``runs/<variant>/cost.json`` with the settings they were measured under.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import logging
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from collections.abc import Callable, Iterator
from typing import IO, Any

import numpy as np
import torch

from unetfamily import __version__
from unetfamily.compare.config import CompareConfig
from unetfamily.compare.data import (
    ComparisonData, build_split, check_foreground, data_config, fold_count, load_comparison_data,
)
from unetfamily.compare.identity import data_digest, encoder_record
from unetfamily.compare.lr_search import choose_learning_rates
from unetfamily.compare.planned import comparison_plan, planned_config
from unetfamily.compare.plan import PlannedRun, base_config, check_stale, execute_locked, plan_runs, scoring
from unetfamily.compare.export_best import export_best
from unetfamily.compare.report import write_report
from unetfamily.compare.report_plan import plan_summary
from unetfamily.compare.tracking import Tracking, comparison_tracking
from unetfamily.compare.results import (
    Artifacts, CompareResults, Costs, Protocol, RunFailure, RunResult, VariantResult,
)
from unetfamily.compare.artifacts import load_cases, save_cases
from unetfamily.compare.run import PREDICTIONS, train_and_evaluate
from unetfamily.compare.variants import Variant, build_variants
from unetfamily.config import Config
from unetfamily.data import build_training_split
from unetfamily.errors import UnetFamilyError
from unetfamily.files import to_jsonable, write_json
from unetfamily.plan import Plan, native_config

log = logging.getLogger(__name__)

__all__ = ["RunsFailedError", "run_compare"]


class RunsFailedError(UnetFamilyError):
    """Every variant of a comparison had a run that failed with its own error: there is nothing to compare."""

SAMPLES = "artifacts/samples.npz"


def _protocol(cfg: CompareConfig, data: ComparisonData, base: Config, plan: Plan | None,
              encoder: dict[str, Any] | None = None) -> Protocol:
    info = data.info
    if plan is not None:
        base = plan.config_for(next(iter(plan.families)))
    return Protocol(
        config=cfg, data=data.config, data_name=data.name, task="binary" if info.num_classes == 2 else "multiclass",
        classes=list(info.classes), splits=data.splits, eval_split=data.eval_split,
        input_size=list(data.image_shape[-2:]), folds=len(data.folds), cases=data.cases,
        optimizer={"name": base.optim.name, "lr": base.optim.lr, "weight_decay": base.optim.weight_decay},
        schedule={"name": base.schedule.name, "warmup_steps": base.schedule.warmup_steps},
        threads=torch.get_num_threads(), plan=None if plan is None else plan_summary(plan), encoder=encoder,
        background=info.has_background, version=__version__,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )


def _costs(variant: Variant, in_channels: int, num_classes: int, size: tuple[int, int], batch: int,
           device: str) -> dict[str, float]:
    """The variant's costs (the fields of :class:`Costs`), each measured in fresh processes."""
    from unetfamily.bench import measure_isolated

    kwargs = {**variant.kwargs, "in_channels": in_channels, "num_classes": num_classes}
    # Minimum over repeats: the figure a busy machine disturbs least (a comparison runs for long).
    infer = measure_isolated(variant.model, kwargs, (1, in_channels, *size), device, repeats=10, train=False, stat="min")
    trained = measure_isolated(variant.model, kwargs, (batch, in_channels, *size), device, repeats=3, train=True, stat="min")
    return {"params": infer["params"], "macs": infer["flops"] // 2, "latency_ms": infer["forward_s"] * 1e3,
            "throughput": infer["images_per_s"], "train_step_ms": trained["train_step_s"] * 1e3,
            "peak_memory_mb": trained["train_peak_bytes"] / 2**20}


def _receptive_field(variant: Variant, in_channels: int, num_classes: int) -> int | None:
    """The variant's receptive field in pixels, computed on a narrow copy (the field does not depend on widths).

    None on a pretrained-architecture encoder: a backbone has no narrow copy, and probing it at full width
    (float64, inputs up to 1024 px) takes minutes per model for a figure read only with the depth ablation."""
    from unetfamily.models import create_model, family_kwargs, receptive_field

    if variant.kwargs.get("encoder") is not None:
        return None
    depth = len(variant.kwargs.get("channels") or [0] * 5) - 1
    narrow = {**variant.kwargs, **family_kwargs(variant.model, 2, depth)}
    model = create_model(variant.model, in_channels=in_channels, num_classes=num_classes, **narrow)
    return receptive_field(model, in_channels)


def _receptive_fields(variants: list[Variant], out: Path, in_channels: int, num_classes: int) -> dict[str, int | None]:
    """Each variant's receptive field by variant id: the one kept in ``runs/<id>/cost.json`` by an earlier command
    for the same model and arguments, else computed (:func:`_receptive_field`)."""
    fields = {}
    for v in variants:
        saved = _saved_costs(out / "runs" / v.id / "cost.json")
        setting = saved.get("setting") or {}
        same = (setting.get("model"), setting.get("kwargs")) == (v.model, to_jsonable(v.kwargs))
        fields[v.id] = saved.get("receptive_field") if same else _receptive_field(v, in_channels, num_classes)
    return fields


class _Inline(Executor):
    """An executor that runs each call at once, in the caller's thread (its errors raise there)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


@contextlib.contextmanager
def _beside_training(background: bool) -> Iterator[Executor]:
    """A thread for the driver's own work while Ray's workers train (``background``), else :class:`_Inline`:
    the local executor trains in this process, which has no idle time to fill. An interrupted comparison does
    not wait for the thread."""
    if not background:
        yield _Inline()
        return
    pool = ThreadPoolExecutor(1, thread_name_prefix="compare-driver")
    try:
        yield pool
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _cost_shape(variant: Variant, cfg: CompareConfig, data: ComparisonData, plan: Plan | None) -> tuple[tuple[int, int], int]:
    """((H, W), batch) the costs are measured at: the evaluated size and the batch; under a plan, whose images keep
    their own sizes, the median image after the plan's scaling and the variant's fitted batch."""
    if plan is None:
        return tuple(data.image_shape[-2:]), cfg.batch_size  # type: ignore[return-value]
    return plan.median_image, plan.families[variant.id].batch_size


def _cached_costs(variant: Variant, out: Path, cfg: CompareConfig, data: ComparisonData, plan: Plan | None,
                  call: Callable[..., Any], field: int | None) -> tuple[Costs, int | None]:
    """(costs, receptive field) of ``variant``, measured once per setting and kept in ``runs/<id>/cost.json``.

    ``call(fn, *args)`` runs the measurement: here, or on a worker of the kind that trained the runs;
    ``field``: the variant's receptive field (:func:`_receptive_fields`), kept beside the costs."""
    path = out / "runs" / variant.id / "cost.json"
    (size, batch), info = _cost_shape(variant, cfg, data, plan), data.info
    setting = {"model": variant.model, "kwargs": variant.kwargs, "size": list(size), "batch_size": batch,
               "device": cfg.device, "in_channels": info.in_channels, "classes": info.num_model_outputs,
               "version": __version__}
    if not cfg.costs:
        return Costs(), field
    saved = _saved_costs(path)
    if saved.get("setting") != to_jsonable(setting):
        cost = call(_costs, variant, info.in_channels, info.num_model_outputs, size, batch, _cost_device(cfg))
        saved = {**cost, "receptive_field": field, "setting": setting}
        write_json(path, saved, indent=None)
    return Costs.from_dict(saved), field


def _saved_costs(path: Path) -> dict[str, Any]:
    """What ``cost.json`` at ``path`` keeps; {} when there is none or it cannot be read (the costs are then measured
    again and the file rewritten: it is a cache)."""
    if not path.is_file():
        return {}
    try:
        saved = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("%s cannot be read (%s): its costs are measured again", path, exc)
        return {}
    return saved if isinstance(saved, dict) else {}


def _cost_device(cfg: CompareConfig) -> str:
    """The device costs are measured on: a Ray worker's GPU is cuda:0 there, whichever GPU Ray gave it."""
    return "cuda" if cfg.executor == "ray" and cfg.device.startswith("cuda") else cfg.device


class _Local:
    """The local executor: runs one after another in this process, each under its folder's lock."""

    def __init__(self, device: torch.device, nsd_tolerance: float) -> None:
        self.device, self.nsd_tolerance = device, nsd_tolerance

    def __enter__(self) -> _Local:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def train(self, runs: list[PlannedRun],
              work: list[float] | None = None) -> tuple[list[RunResult | None], list[RunFailure]]:
        return list(execute_locked(runs, lambda run: train_and_evaluate(run, self.device, self.nsd_tolerance))), []

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)


def _executor(cfg: CompareConfig, out: Path, device: torch.device,
              estimate: tuple[list[PlannedRun], tuple[int, ...], int], stream: IO[str] | None) -> Any:
    """The local executor, or a Ray executor for ``estimate``'s runs (with the image shape and outputs their work
    is estimated from: see :class:`~unetfamily.compare.ray_executor.RayExecutor`)."""
    if cfg.executor == "local":
        return _Local(device, cfg.nsd_tolerance)
    from unetfamily.compare.live import LiveTable
    from unetfamily.compare.ray_executor import RayExecutor

    return RayExecutor(cfg, out, len(estimate[0]), lambda rows: LiveTable(rows, stream), estimate)


def _save_artifacts(out: Path, data: ComparisonData, runs: list[PlannedRun]) -> Artifacts:
    """The evaluated cases (in fold order) and each variant's first-seed predictions of them, for the report."""
    datasets = [fold.eval.dataset for fold in data.folds]
    samples = [ds[i] for ds in datasets for i in range(len(ds))]
    save_cases(out / SAMPLES, [ds.sample_name(i) for ds in datasets for i in range(len(ds))],
               images=[(s["image"].numpy() * 255).round().astype(np.uint8) for s in samples],
               masks=[s["mask"].numpy().astype(np.uint8) for s in samples])
    predictions = {}
    for variant_id in dict.fromkeys(run.variant.id for run in runs):
        files = [run.dir / PREDICTIONS for run in runs if run.variant.id == variant_id and run.save_predictions]
        if files and all(f.is_file() for f in files):
            try:
                parts = [load_cases(f, ("pred",)) for f in files]
            except (KeyError, OSError, ValueError) as exc:
                log.warning("predictions of %s left out of the report's figures: %s", variant_id, exc)
                continue
            name = f"artifacts/pred_{variant_id}.npz"
            save_cases(out / name, [n for p in parts for n in p["names"]], pred=[x for p in parts for x in p["pred"]])
            predictions[variant_id] = name
    return Artifacts(SAMPLES, predictions)


def _prepare(cfg: CompareConfig, out: Path) -> tuple[Plan | None, ComparisonData, list[Variant]]:
    """(the plan or None, the data, the variants); with a plan, the data is laid out at the plan's scale."""
    if cfg.plan == "none":
        data = load_comparison_data(cfg)
        return None, data, build_variants(cfg.models, cfg.ablations, cfg.widths, cfg.base_width,
                                          data.info.in_channels, data.info.num_model_outputs, cfg.encoder_kwargs)
    native = native_config(data_config(cfg.data, None)[0])
    pooled, train = build_training_split(native)
    train.cache = False  # read once for the plan and the digest; the runs build their own (scaled) datasets
    variants = build_variants(cfg.models, cfg.ablations, cfg.widths, cfg.base_width, train.info.in_channels,
                              train.info.num_model_outputs, cfg.encoder_kwargs)
    digest = data_digest(train)
    check_foreground(cfg.data, {pooled: digest}, train.info)  # before the plan measures the models
    val = build_split(native, "val")
    fold_count(cfg, build_split(native, "test") is not None, len(train) + (len(val) if val is not None else 0))
    val_cases = len(val) if val is not None and cfg.folds in (None, 1) else max(1, len(train) // (cfg.folds or 5))
    plan = comparison_plan(cfg, out, native, train, digest["sha256"], variants, val_cases)
    data = load_comparison_data(cfg, plan.data_config(variants[0].id), {pooled: digest})
    return plan, data, variants


def run_compare(cfg: CompareConfig, out: str | Path, rerun: bool = False,
                stream: IO[str] | None = None) -> CompareResults:
    """Train and evaluate every variant for every seed and fold, measure costs and write the report into ``out``.

    Raises :class:`~unetfamily.compare.identity.StaleRunError` before training anything when
    ``out`` holds runs made under other settings (``rerun`` retrains them instead), and
    KeyboardInterrupt when a signal stops a run (finished runs and the stopped run's checkpoint
    are kept: call it again to continue). Returns the results (see ``docs/compare_report.md``);
    under ``--executor ray`` a run that failed with its own error is in ``results.missing`` and its
    variant is left out (the other runs finish). ``stream``: where a terminal shows Ray's live table.
    """
    from unetfamily.engine.device import resolve_device

    device = resolve_device(cfg.device, "--device")  # a CUDA device this machine lacks fails here, not after the data
    encoder = encoder_record(cfg)  # a missing --encoder-weights file fails here too
    out = Path(out).resolve() if cfg.executor == "ray" else Path(out)  # every node sees the same absolute paths
    with comparison_tracking(cfg, out) as tracking:  # --loggers mlflow: the comparison's MLflow run
        return _compare(cfg, out, rerun, stream, device, tracking, encoder)


def _compare(cfg: CompareConfig, out: Path, rerun: bool, stream: IO[str] | None, device: torch.device,
             tracking: Tracking, encoder: dict[str, Any] | None = None) -> CompareResults:
    """The comparison of :func:`run_compare`, its runs nested under ``tracking``'s run."""
    plan, data, variants = _prepare(cfg, out)
    base_of = lambda fold: base_config(cfg, fold.data)  # noqa: E731 - one base config per fold's data
    lrs = choose_learning_rates(cfg, data, variants, out, device, rerun) if cfg.lr_grid else {}
    config_of = None if plan is None else (
        lambda fold, variant, seed, run_dir: planned_config(plan, variant, fold.data, seed, run_dir, cfg))
    runs = tracking.nest(plan_runs(data, variants, cfg.seed_list, out, base_of, lambda v: lrs.get(v.id),
                                   scoring(cfg, data.info), config_of))
    check_stale(runs, out, rerun)
    ray = cfg.executor == "ray"
    with _beside_training(ray) as beside:  # what the driver computes while Ray's workers start and train
        fields = beside.submit(_receptive_fields, variants, out, data.info.in_channels, data.info.num_model_outputs)
        # a pool of workers starts the longest runs first (a warm worker estimates them); one process trains
        # them in the listed order
        with _executor(cfg, out, device, (runs, data.image_shape, data.info.num_model_outputs), stream) as executor:
            outcomes, failures = executor.train(runs)
            failed = {f.variant for f in failures}
            kept = [v for v in variants if v.id not in failed]
            if not kept:
                raise RunsFailedError(f"every model had a failed run; nothing to compare: {failures[0].label}: "
                                      f"{failures[0].error} (each run's log is in its folder under {out / 'runs'})")
            rows = []
            for variant in kept:
                costs, rf = _cached_costs(variant, out, cfg, data, plan, executor.call, fields.result()[variant.id])
                rows.append(VariantResult(variant.id, variant.label, variant.model, variant.family, variant.ablation,
                                          dict(variant.kwargs), costs, rf, lrs.get(variant.id, cfg.lr)))
    finished = [r for r in outcomes if r is not None and r.variant not in failed]
    results = CompareResults(_protocol(cfg, data, base_of(data.folds[0]), plan, encoder), rows, finished,
                             _save_artifacts(out, data, [r for r in runs if r.variant.id not in failed]), failures)
    write_report(results, out)
    if cfg.export_best:  # the winner as a model folder others can load
        export_best(results, out, cfg.export_best)
    tracking.finish(runs, results, out)
    return results
