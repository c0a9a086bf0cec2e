"""``unetfamily train``: train a model from a config file plus dotted overrides."""
from __future__ import annotations

import argparse
import os

from unetfamily.cli._common import EXIT_INTERRUPTED, EXIT_OK, command, out

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``unetfamily train``."""
    p = command(subparsers, "train", run, help="train a model from a config file",
                description="Train a model. Overrides are dotted keys: train.epochs=3 optim.lr=3e-4")
    p.add_argument("--config", help="YAML or TOML config; built-in defaults apply to missing keys (none: all defaults)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in output_dir from its last checkpoint (its saved config wins)")
    p.add_argument("overrides", nargs="*", default=[], help="key.sub=value overrides, e.g. train.epochs=3")


def run(args: argparse.Namespace) -> int:
    """Train; prints the run folder and best score (rank 0); exit 130 when a signal stopped the run."""
    import torch.distributed as dist

    from unetfamily.config import load_config
    from unetfamily.engine.train import fit

    summary = fit(load_config(args.config, args.overrides), resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        best = summary.best if summary.best is None else round(summary.best, 4)
        out(f"run folder: {summary.run_dir}  steps: {summary.steps}  best {summary.monitor}: {best}  "
            f"({summary.seconds:.1f} s)")
    if dist.is_initialized():
        dist.barrier()  # let every rank finish its last collective before the process group is torn down
        dist.destroy_process_group()
    return EXIT_INTERRUPTED if summary.interrupted else EXIT_OK
