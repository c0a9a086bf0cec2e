"""``unetfamily plan``: fingerprint a dataset and write the training recipe the rules derive from it."""
from __future__ import annotations

import argparse
from pathlib import Path

from unetfamily.cli._common import (
    AT_LEAST_ONE, EXIT_OK, POSITIVE, check_data_option, check_options, command, err, out, refuse_existing_output,
    split_names,
)

__all__ = ["add_parser", "run"]

DEFAULT_MODELS = "fcn8s,unet,unet_plusplus,unet_3plus"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``unetfamily plan``."""
    p = command(subparsers, "plan", run, help="derive a training recipe from the dataset (nnU-Net style)",
                description="Fingerprint the training images (sizes, intensities, classes, objects), apply the rules of "
                            "docs/plan.md and fit each model's patch, batch and steps to the device and the budget. "
                            "Writes a YAML plan; train one model with `unetfamily train --plan PLAN --model NAME`.")
    p.add_argument("data", help="dataset config YAML, a folder (images/ and masks/, or the data.yaml `dataset convert` wrote there), or a type name")
    p.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated registry names to fit")
    p.add_argument("--base-width", type=int, help="encoder width of the first level; none: the papers' widths")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N: where the runs will train (measured there)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="training time per run on --device (the steps follow from the "
                                                      "measured step time); none: --steps")
    budget.add_argument("--steps", type=int, help="optimiser steps per run; none given with no --minutes: 2500")
    p.add_argument("--out", default="plan.yaml", help="the plan file to write (its fingerprint is cached beside it)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def run(args: argparse.Namespace) -> int:
    """Make the plan, print what it chose and why, write it; exit 0."""
    from unetfamily.data.fingerprint import Fingerprint, describe
    from unetfamily.engine.device import resolve_device
    from unetfamily.models import family_kwargs, resolve_model_name
    from unetfamily.plan import Budget, make_plan
    from unetfamily.plan.make import data_spec

    check_options(args, minutes=POSITIVE, steps=AT_LEAST_ONE, base_width=AT_LEAST_ONE)
    check_data_option("data", args.data)
    target = Path(args.out)
    refuse_existing_output("--out", target, args.overwrite)
    device = str(resolve_device(args.device, "--device"))
    names = [resolve_model_name(n) for n in split_names("--models", args.models)]
    models = [(name, name, family_kwargs(name, args.base_width)) for name in dict.fromkeys(names)]
    budget = Budget(seconds=args.minutes * 60 if args.minutes is not None else None, steps=args.steps)
    target.parent.mkdir(parents=True, exist_ok=True)
    cache = target.with_name(f"{target.stem}.fingerprint.json")
    err(f"fingerprinting {args.data} and measuring {len(models)} model(s) on {device} ...")
    plan = make_plan(data_spec(args.data)[0], models, device=device, budget=budget, cache=cache)
    for line in describe(Fingerprint.from_dict(plan.fingerprint)):
        out(f"  {line}")
    for key, reason in plan.reasons.items():
        out(f"{key}: {reason}")
    plan.save(target)
    out(f"plan: {target.resolve()}  (train with: unetfamily train --plan {target} --model {models[0][0]})")
    return EXIT_OK
