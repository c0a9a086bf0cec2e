"""``unetfamily compare``: train UNet-family models under one protocol and report which fits the data."""
from __future__ import annotations

import argparse
import math
import shlex
import signal
import sys
from pathlib import Path

from unetfamily.cli._common import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, POSITIVE, check_data_option, check_options, command,
                                    err, out, split_list)
from unetfamily.compare.config import ABLATIONS, AUGMENT_CHOICES, DEFAULT_MODELS, PRIMARY_METRICS, CompareConfig
from unetfamily.compare.results import CompareResults
from unetfamily.errors import ConfigError, UnetFamilyError

__all__ = ["add_parser", "run", "compare_config"]

#: Epoch cap of a run whose budget is wall-clock time: high enough never to bind first.
EPOCHS_UNDER_A_TIME_BUDGET = 10_000


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``unetfamily compare``."""
    p = command(
        subparsers, "compare", run, help="train UNet-family models under one protocol and report which fits the data",
        description="Train the chosen models with the same data, budget, optimiser and seeds; evaluate them on the "
                    "held-out split; measure their cost; write report.md, report.html, results.json and results.csv.")
    p.add_argument("--data", default="synthetic", help="dataset config YAML, a folder (images/ and masks/, or the data.yaml `dataset convert` wrote there), or a type name")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated registry names")
    p.add_argument("--ablations", default="", help=f"comma-separated: {', '.join(ABLATIONS)}, or 'all'")
    p.add_argument("--seeds", type=int, default=3, help="runs per model, with seeds 0..SEEDS-1")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, default=10, help="training budget in epochs")
    budget.add_argument("--steps", type=int, help="training budget in optimiser steps (instead of epochs)")
    budget.add_argument("--minutes", type=float, help="training budget in wall-clock minutes per run (instead of epochs)")
    _add_architecture(p)
    p.add_argument("--size", type=int, help="resize images to SIZE x SIZE (synthetic: generate at SIZE); none: as stored")
    p.add_argument("--batch-size", type=int, default=8, help="images per training step")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (10 warm-up steps, then cosine decay)")
    p.add_argument("--loss", default="dice_ce", help="loss name (see docs/losses_metrics.md)")
    p.add_argument("--augment", help=f"augmentation preset ({', '.join(AUGMENT_CHOICES)}); none given: the data config's")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (training and cost measurement)")
    p.add_argument("--folds", type=int, help="K-fold cross-validation over the train and val cases (each evaluated "
                   "out of fold once per seed); 1: evaluate on the test split; none given: 5 without a test split, else 1")
    p.add_argument("--first-seed", type=int, default=0, help="seeds are FIRST_SEED .. FIRST_SEED+SEEDS-1 (a disjoint "
                   "set of seeds checks whether the verdict reproduces)")
    p.add_argument("--primary", default="dice", help=f"the per-case score that ranks the models ({', '.join(PRIMARY_METRICS)}; "
                   "multi-class: mean over foreground classes, over all when the data's class 0 is not a "
                   "background; hd95: lower is better)")
    p.add_argument("--nsd-tolerance", type=float, default=2.0,
                   help="pixels of boundary disagreement the normalised surface Dice forgives")
    p.add_argument("--lr-grid", help="comma-separated learning rates, e.g. 1e-3,3e-3,1e-2: each model picks its own on "
                   "an inner split of its training cases (a quarter of the budget per try); none given: --lr for all")
    p.add_argument("--plan", help="auto: every model trains with the recipe `unetfamily plan` derives from the data and "
                   "fits to --device and the budget (docs/plan.md); a plan file; none: the recipe options here. None "
                   "given: auto, unless --size, --batch-size, --lr, --loss, --augment, --lr-grid or --encoder is given")
    p.add_argument("--no-costs", dest="costs", action="store_false",
                   help="skip measuring each model's latency, throughput and training memory (fresh processes)")
    scale = p.add_argument_group("execution (docs/scale.md)")
    scale.add_argument("--executor", choices=["local", "ray"], default="local",
                       help="local: runs one after another in this process; ray: every run a Ray task, in parallel "
                            "(pip install 'unetfamily[ray]')")
    scale.add_argument("--ray-address", help="none given: start a local Ray instance sized to this machine; 'auto' or "
                       "ray://host:port: join a running cluster (--out must be on storage every node sees)")
    scale.add_argument("--cpus-per-run", type=int, help="CPUs (and torch threads) of each run; none given: the "
                       "machine's CPUs shared among the runs (per GPU on GPU runs)")
    scale.add_argument("--gpus-per-run", type=float, help="GPUs of each run (fractions share one); none given: 1 on "
                       "a CUDA --device, else 0")
    track = p.add_argument_group("logging (docs/compare.md)")
    track.add_argument("--loggers", default="tensorboard", help="comma-separated: tensorboard (each run's tensorboard/ "
                       "folder), mlflow (one MLflow run for the comparison, a nested one per training run; pip install "
                       "'unetfamily[mlflow]'); '' for none")
    track.add_argument("--mlflow-uri", help="MLflow tracking URI; none given: $MLFLOW_TRACKING_URI, else the SQLite "
                       "store OUT/mlflow/mlflow.db")
    track.add_argument("--mlflow-experiment", default="unetfamily", help="MLflow experiment of the runs")
    p.add_argument("--out", default="reports/compare", help="report folder (re-running the same command resumes)")
    p.add_argument("--rerun", action="store_true", help="retrain runs in --out that were made under other settings "
                   "(without it, compare stops and names what differs)")
    p.add_argument("--export-best", metavar="DIR", help="after the report, write the best model (its run with the best "
                   "score) as a folder unetfamily.from_pretrained loads: config.json, model.safetensors, README.md card")


def _add_architecture(p: argparse.ArgumentParser) -> None:
    """The options that size the models: their widths, or one pretrained-architecture encoder for all."""
    p.add_argument("--widths", choices=["small", "paper", "matched"], default="small",
                   help="small: one base width for all; paper: the papers' widths; matched: parameter counts matched to U-Net")
    p.add_argument("--base-width", type=int, default=16, help="encoder width of the first level (small, matched)")
    p.add_argument("--encoder", help="build every model on this pretrained-architecture backbone (`unetfamily models "
                   "--encoders`; not FCN, whose trunk is VGG-16); --widths, --base-width and the unet_depth ablation "
                   "then do not apply, and no --plan: the recipe options below")
    p.add_argument("--encoder-weights", metavar="PATH", help="ImageNet weights of the --encoder (safetensors or a "
                   "weights-only .pth); runs are identified by the file's SHA-256, not its path")
    p.add_argument("--encoder-lr-mult", type=float, default=1.0, help="the --encoder's learning rate is --lr times "
                   "this (train.encoder_lr_mult)")
    p.add_argument("--freeze-encoder-steps", type=int, default=0, help="the --encoder's weights and norm statistics "
                   "stay as loaded for this many optimiser steps (train.freeze_encoder_steps)")


def compare_config(args: argparse.Namespace) -> CompareConfig:
    """The :class:`CompareConfig` the options ask for (the chosen budget option is the one that binds).

    Out-of-range values are refused by :class:`CompareConfig`, naming the option; so is an option
    that another one makes unused (``--base-width`` with ``--widths paper``, ``--lr`` with ``--lr-grid``).
    """
    check_options(args, minutes=POSITIVE)
    check_data_option("--data", args.data)
    _refuse_unused(args)
    epochs = args.epochs if args.steps is None else max(1, args.steps)  # a step needs at most one epoch
    seconds = args.minutes * 60 if args.minutes is not None else None
    if seconds is not None:
        epochs = EPOCHS_UNDER_A_TIME_BUDGET
    return CompareConfig(
        data=args.data, models=split_list(args.models), ablations=split_list(args.ablations), seeds=args.seeds,
        epochs=epochs, steps=args.steps, seconds=seconds, widths=args.widths, base_width=args.base_width,
        size=args.size, batch_size=args.batch_size, lr=args.lr, loss=args.loss, augment=args.augment,
        device=args.device, folds=args.folds, first_seed=args.first_seed, primary=args.primary,
        nsd_tolerance=args.nsd_tolerance, lr_grid=_floats("--lr-grid", args.lr_grid), costs=args.costs, plan=args.plan,
        encoder=args.encoder, encoder_weights=args.encoder_weights, encoder_lr_mult=args.encoder_lr_mult,
        freeze_encoder_steps=args.freeze_encoder_steps,
        executor=args.executor, ray_address=args.ray_address, cpus_per_run=args.cpus_per_run,
        gpus_per_run=args.gpus_per_run, loggers=split_list(args.loggers), mlflow_uri=args.mlflow_uri,
        mlflow_experiment=args.mlflow_experiment,
        export_best=args.export_best,
        command="unetfamily " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )


def _refuse_unused(args: argparse.Namespace) -> None:
    """Refuse an option set away from its default where another option makes it unused."""
    default = CompareConfig()
    if args.widths == "paper" and args.base_width != default.base_width:
        raise ConfigError("--base-width has no effect with --widths paper (each model at its paper's widths): "
                          "leave --base-width out, or use --widths small or matched")
    if args.lr_grid is not None and args.lr != default.lr:
        raise ConfigError("--lr has no effect with --lr-grid (each model picks its learning rate from the grid): "
                          "leave one of them out")


def _floats(option: str, value: str | None) -> list[float] | None:
    if value is None:
        return None
    try:
        return [float(v) for v in split_list(value)]
    except ValueError:
        raise ConfigError(f"{option} takes comma-separated numbers, e.g. 1e-3,3e-3,1e-2; got {value!r}") from None


def _check_out_folder(out: Path) -> None:
    """Refuse an --out that is a file, or a folder holding other things than a comparison (never mixed into)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the report (a new one, or an earlier --out)")
    from unetfamily.compare.identity import COMPARISON_ENTRIES

    started = any((out / name).exists() for name in COMPARISON_ENTRIES)
    if out.is_dir() and any(out.iterdir()) and not started:
        raise ConfigError(f"--out {out} holds other files and no comparison; give a new or empty folder, or the "
                          "--out of an earlier comparison to resume it")


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt("stopped by SIGTERM")


def run(args: argparse.Namespace) -> int:
    """Run the comparison; prints the best model and where the report is; exit 130 when a signal stopped it."""
    from unetfamily.compare.runner import run_compare
    from unetfamily.compare.summary import summarize

    _check_out_folder(Path(args.out))
    _check_export_best(args.export_best, Path(args.out))
    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM outside training (evaluating) stops like Ctrl-C
    try:
        results = run_compare(compare_config(args), args.out, rerun=args.rerun, stream=sys.stderr)
    except KeyboardInterrupt as exc:  # a stopped run saved its checkpoint; finished runs are kept
        reason = str(exc) or "interrupted"
        err(f"stopped: {reason}" if "again" in reason else f"stopped: {reason}; run the same command again to continue")
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
    for failure in results.missing:
        err(f"failed: {failure.label}: {failure.error} (log: {failure.dir}/train.log)")
    best = summarize(results)[0]
    report = (Path(args.out) / "report.html").resolve()
    metric = results.primary_metric
    if not any(math.isfinite(v) for v in (best.case_mean, best.mean(metric))):  # the report ranks by these, in turn
        out(f"best: none (no model has a finite {metric} score; see the training logs)  report: {report}")
    else:
        out(f"best: {best.label}  report: {report}")
    _say_exported(args.export_best, results)
    if results.missing:
        err(f"{len(results.missing)} run(s) failed; their models are left out of the report. Fix the cause and run "
            "the same command again (finished runs are reused)")
        return EXIT_FAILED
    return EXIT_OK


def _check_export_best(folder: str | None, out: Path) -> None:
    """Refuse an --export-best that is a file, the --out folder, or a folder holding other files, before training."""
    from unetfamily.models.pretrained import check_destination

    if folder is None:
        return
    if Path(folder).resolve() == out.resolve():
        raise ConfigError(f"--export-best {folder} is the --out folder; give another folder for the model")
    try:
        check_destination(Path(folder))
    except UnetFamilyError as exc:
        raise ConfigError(f"--export-best {exc}") from exc


def _say_exported(folder: str | None, results: CompareResults) -> None:
    from unetfamily.compare.export_best import best_run

    chosen = best_run(results) if folder else None
    if chosen is not None:
        out(f"best model folder: {folder} ({chosen.label}); load it with unetfamily.from_pretrained({folder!r})")
    elif folder:
        err(f"no model folder written to {folder}: no model has a finite {results.primary_metric} score")
