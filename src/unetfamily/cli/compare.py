"""``unetfamily compare``: train UNet-family models under one protocol and report which fits the data."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from unetfamily.cli._common import EXIT_INTERRUPTED, EXIT_OK, command, err, out, split_list
from unetfamily.compare.config import ABLATIONS, AUGMENT_CHOICES, DEFAULT_MODELS, CompareConfig

__all__ = ["add_parser", "run", "compare_config"]

#: Epoch cap of a run whose budget is wall-clock time: high enough never to bind first.
EPOCHS_UNDER_A_TIME_BUDGET = 10_000


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``unetfamily compare``."""
    p = command(
        subparsers, "compare", run, help="train UNet-family models under one protocol and report which fits the data",
        description="Train the chosen models with the same data, budget, optimiser and seeds; evaluate them on the "
                    "held-out split; measure their cost; write report.md, report.html, results.json and results.csv.")
    p.add_argument("--data", default="synthetic", help="dataset config YAML, a folder with images/ and masks/, or a type name")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated registry names")
    p.add_argument("--ablations", default="", help=f"comma-separated: {', '.join(ABLATIONS)}, or 'all'")
    p.add_argument("--seeds", type=int, default=3, help="runs per model, with seeds 0..SEEDS-1")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, default=10, help="training budget in epochs")
    budget.add_argument("--steps", type=int, help="training budget in optimiser steps (instead of epochs)")
    budget.add_argument("--minutes", type=float, help="training budget in wall-clock minutes per run (instead of epochs)")
    p.add_argument("--widths", choices=["small", "paper", "matched"], default="small",
                   help="small: one base width for all; paper: the papers' widths; matched: parameter counts matched to U-Net")
    p.add_argument("--base-width", type=int, default=16, help="encoder width of the first level (small, matched)")
    p.add_argument("--size", type=int, help="resize images to SIZE x SIZE (synthetic: generate at SIZE); none: as stored")
    p.add_argument("--batch-size", type=int, default=8, help="images per training step")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (10 warm-up steps, then cosine decay)")
    p.add_argument("--loss", default="dice_ce", help="loss name (see docs/losses_metrics.md)")
    p.add_argument("--augment", help=f"augmentation preset ({', '.join(AUGMENT_CHOICES)}); none given: the data config's")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (training and cost measurement)")
    p.add_argument("--out", default="reports/compare", help="report folder (re-running it resumes)")


def compare_config(args: argparse.Namespace) -> CompareConfig:
    """The :class:`CompareConfig` the options ask for (the chosen budget option is the one that binds)."""
    epochs = args.epochs if args.steps is None else max(1, args.steps)  # a step needs at most one epoch
    seconds = args.minutes * 60 if args.minutes is not None else None
    if seconds is not None:
        epochs = EPOCHS_UNDER_A_TIME_BUDGET
    return CompareConfig(
        data=args.data, models=split_list(args.models), ablations=split_list(args.ablations), seeds=args.seeds,
        epochs=epochs, steps=args.steps, seconds=seconds, widths=args.widths, base_width=args.base_width,
        size=args.size, batch_size=args.batch_size, lr=args.lr, loss=args.loss, augment=args.augment,
        device=args.device, command="unetfamily " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )


def run(args: argparse.Namespace) -> int:
    """Run the comparison; prints the best model and where the report is; exit 130 when a signal stopped it."""
    from unetfamily.compare.runner import run_compare
    from unetfamily.compare.summary import summarize

    try:
        results = run_compare(compare_config(args), args.out)
    except KeyboardInterrupt as exc:  # a stopped run saved its checkpoint; finished runs are kept
        err(f"stopped: {exc or 'interrupted'}; run the same command again to continue")
        return EXIT_INTERRUPTED
    best = summarize(results)[0]
    out(f"best: {best.label}  report: {(Path(args.out) / 'report.html').resolve()}")
    return EXIT_OK
