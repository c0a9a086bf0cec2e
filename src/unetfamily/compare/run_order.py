"""The order a parallel executor starts a comparison's runs in: the longest first.

Runs of one comparison differ in cost by an order of magnitude (an FCN against a UNet3+ of the same
width), and a pool of workers that starts them in the order they are listed can end with one worker
training the last long run while the others idle. Starting the longest first (Graham's LPT rule)
bounds that tail by the shortest runs. The length of a run is estimated, not measured: the
multiply-accumulates of its model's forward pass on one image of the comparison's size (counted on
the meta device: nothing is allocated or run), times the images it trains on (batch x optimiser
steps), times the share still to train (a kept result: none; an interrupted run: what its status
file says is left). Within a comparison every run shares the budget's form (epochs, steps or seconds), so the
estimates order runs; they are not durations.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from unetfamily.compare.plan import PlannedRun
from unetfamily.config import Config
from unetfamily.engine.status import read_status
from unetfamily.models import create_model
from unetfamily.models.pretrained import count_macs

log = logging.getLogger(__name__)

__all__ = ["estimated_work", "longest_first"]


def _steps(config: Config) -> int:
    """Optimiser steps a run trains for, or (when an epoch's length is the data's) a number proportional to them."""
    train = config.train
    per_epoch = train.epochs * (train.steps_per_epoch or 1)
    if train.max_steps is not None and train.steps_per_epoch is not None:
        return min(train.max_steps, per_epoch)
    return train.max_steps if train.max_steps is not None else per_epoch


def _macs(run: PlannedRun, image_shape: tuple[int, ...], num_classes: int) -> int:
    """Forward multiply-accumulates of ``run``'s model on one (C, H, W) ``image_shape`` image, counted on meta."""
    kwargs = {k: v for k, v in run.variant.kwargs.items() if k != "encoder_weights"}  # no file is read to count
    with torch.device("meta"):
        model = create_model(run.variant.model, in_channels=image_shape[0], num_classes=num_classes, **kwargs)
    return count_macs(model, (1, *image_shape))


def estimated_work(runs: Sequence[PlannedRun], image_shape: tuple[int, ...], num_classes: int) -> list[float]:
    """Each run's estimated work: forward MACs per (C, H, W) ``image_shape`` image x batch size x steps x the
    share left to train (:func:`_left`).

    Counted once per variant. A model that cannot be counted on the meta device gets the largest
    estimate (it starts first: an unknown length is the riskiest to leave for last), with a log line.
    """
    macs: dict[str, float] = {}
    for run in runs:
        if run.variant.id not in macs:
            try:
                macs[run.variant.id] = float(_macs(run, image_shape, num_classes))
            except (RuntimeError, NotImplementedError, TypeError, ValueError) as exc:
                log.info("could not estimate %s's cost on the meta device (%s): it starts first", run.variant.id, exc)
                macs[run.variant.id] = float("inf")
    return [macs[r.variant.id] * r.config.loader.batch_size * _steps(r.config) * _left(r) for r in runs]


def _left(run: PlannedRun) -> float:
    """The share of ``run`` still to train: 0 when its result is kept, ``1 - step/total`` of an interrupted run's
    last status (it resumes from its last checkpoint, at or before that step), else 1."""
    if (run.dir / "result.json").is_file():
        return 0.0
    status = read_status(run.dir)
    try:
        return min(1.0, max(0.0, 1.0 - float(status["step"]) / float(status["total"])))
    except (TypeError, KeyError, ValueError, ZeroDivisionError):
        return 1.0


def longest_first(work: Sequence[float]) -> list[int]:
    """Indices of ``work`` from the largest to the smallest; equal work keeps the listed order."""
    return sorted(range(len(work)), key=lambda i: -work[i])
