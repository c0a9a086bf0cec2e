"""``unetfamily train``: train a model from a config file plus dotted overrides."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from unetfamily.cli._common import EXIT_INTERRUPTED, EXIT_OK, command, out
from unetfamily.errors import ConfigError

if TYPE_CHECKING:
    from unetfamily.config import Config

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``unetfamily train``."""
    p = command(subparsers, "train", run, help="train a model from a config file",
                description="Train a model. Overrides are dotted keys: train.epochs=3 optim.lr=3e-4")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--config", help="YAML or TOML config; built-in defaults apply to missing keys (none: all defaults)")
    source.add_argument("--plan", help="a plan from `unetfamily plan`: train --model with the recipe fitted for it")
    p.add_argument("--model", help="with --plan: which of the plan's models to train (none: the plan's only model, "
                                   "or unet)")
    existing = p.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true",
                          help="continue the run in output_dir from its last checkpoint, under its saved config with the "
                               "--config keys and overrides given on top; these may change only the budget "
                               "(train.epochs, train.max_steps, train.max_seconds, train.early_stop_patience) and "
                               "run-time settings")
    existing.add_argument("--overwrite", action="store_true",
                          help="replace the run already in output_dir: delete its checkpoints, config.yaml, train.log and "
                               "tensorboard/ (other files there are kept), then train")
    p.add_argument("overrides", nargs="*", default=[], help="key.sub=value overrides, e.g. train.epochs=3")


def run(args: argparse.Namespace) -> int:
    """Train; prints the run folder and best score (rank 0); exit 130 when a signal stopped the run."""
    import torch.distributed as dist

    from unetfamily.engine.train import fit

    summary = fit(_config(args), resume=args.resume, overwrite=args.overwrite)
    if int(os.environ.get("RANK", "0")) == 0:
        best = summary.best if summary.best is None else round(summary.best, 4)
        out(f"run folder: {summary.run_dir}  steps: {summary.steps}  best {summary.monitor}: {best}  "
            f"({summary.seconds:.1f} s)")
    if dist.is_initialized():
        dist.barrier()  # let every rank finish its last collective before the process group is torn down
        dist.destroy_process_group()
    return EXIT_INTERRUPTED if summary.interrupted else EXIT_OK


def _config(args: argparse.Namespace) -> Config:
    """The config file (or the defaults) with the overrides; with --resume, the run's saved config below them."""
    from unetfamily.config import apply_overrides, load_config
    from unetfamily.config_file import read_experiment_file
    from unetfamily.engine.run_folder import config_for_resume

    if args.model is not None and args.plan is None:
        raise ConfigError("--model applies to --plan only; with a config, set model.name=NAME")
    if args.plan is not None:
        if args.resume:
            raise ConfigError("--resume continues a run under its saved config; leave out --plan")
        return _planned(args)
    if not args.resume:
        return load_config(args.config, args.overrides)
    user = read_experiment_file(Path(args.config)) if args.config else {}
    return config_for_resume(apply_overrides(user, list(args.overrides)))


def _planned(args: argparse.Namespace) -> Config:
    """The plan's config for ``--model``, with the overrides on top."""
    from unetfamily.config import apply_overrides, config_from_dict
    from unetfamily.plan import read_plan

    plan = read_plan(Path(args.plan))
    fitted = list(plan.families)
    model = args.model or (fitted[0] if len(fitted) == 1 else "unet" if "unet" in fitted else None)
    if model is None:
        raise ConfigError(f"--plan {args.plan} fits several models ({', '.join(fitted)}); choose one with --model")
    data = plan.config_for(model).to_dict()
    return config_from_dict(apply_overrides(data, list(args.overrides)))
