"""``compare --plan``: every variant trains with the recipe :mod:`unetfamily.plan` fits to the data, device and budget.

The plan is made once per ``--out`` and saved there as ``plan.yaml``; running the same command again
reuses it (the measured step times would otherwise differ a little, change the runs' configs and make
finished runs look stale). It is made again when the models, the budget, the device, the training
data or its config (e.g. its ``background``) change. ``--plan FILE`` uses a plan made by ``unetfamily plan`` instead.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from unetfamily.compare.config import CompareConfig
from unetfamily.compare.identity import PLAN_FILE, PLAN_FINGERPRINT_FILE
from unetfamily.compare.plan import tensorboard_only
from unetfamily.compare.variants import Variant
from unetfamily.config import Config
from unetfamily.data.base import SegmentationDataset
from unetfamily.errors import ConfigError
from unetfamily.plan import Budget, Plan, make_plan, read_plan
from unetfamily.plan.rules import STEPS_PER_EPOCH

log = logging.getLogger(__name__)

__all__ = ["PLAN_FILE", "budget_of", "comparison_plan", "planned_config"]

#: What a saved plan must have been made for to be reused (not the threads: they change step times only).
_REUSED_IF_EQUAL = ("models", "budget", "device", "data")


def budget_of(cfg: CompareConfig) -> Budget:
    """The plan's budget: ``--minutes`` or ``--steps``; ``--epochs E`` means E epochs of 250 steps (nnU-Net's)."""
    if cfg.seconds is not None:
        return Budget(seconds=cfg.seconds)
    return Budget(steps=cfg.steps if cfg.steps is not None else cfg.epochs * STEPS_PER_EPOCH)


def comparison_plan(cfg: CompareConfig, out: Path, data: dict[str, Any], train: SegmentationDataset,
                    digest: str, variants: list[Variant], val_cases: int) -> Plan:
    """The plan the comparison in ``out`` trains with: ``cfg.plan`` (a file), the one saved in ``out``, or a new one."""
    models = [(v.id, v.model, dict(v.kwargs)) for v in variants]
    budget = budget_of(cfg)
    request = {"models": [list(m) for m in models], "budget": budget.describe(), "device": cfg.device,
               "data": digest}
    if cfg.plan not in ("auto", "none"):
        plan = read_plan(Path(cfg.plan))
        missing = [v.id for v in variants if v.id not in plan.families]
        if missing:
            raise ConfigError(f"--plan {cfg.plan} has no fit for {', '.join(missing)} (it fits "
                              f"{', '.join(plan.families)}); make one with unetfamily plan --models ...")
        _check_budget(cfg, plan)
    else:
        saved = _saved(out / PLAN_FILE)
        if (saved is not None and all(saved.request.get(k) == request[k] for k in _REUSED_IF_EQUAL)
                and _plain(saved.data) == _plain(data)):  # the config too: the runs train on the plan's
            log.info("reusing the plan in %s", out / PLAN_FILE)
            return saved
        log.info("planning the runs: fingerprinting the data and measuring %d model(s) on %s", len(models), cfg.device)
        plan = make_plan(data, models, device=cfg.device, budget=budget, cache=out / PLAN_FINGERPRINT_FILE,
                         key=digest, val_cases=val_cases, train=train)
        plan.request = {**plan.request, **request}
    plan.save(out / PLAN_FILE)
    return plan


def _plain(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, default=str)


def _check_budget(cfg: CompareConfig, plan: Plan) -> None:
    """Refuse a budget option (``--steps``, ``--minutes``, ``--epochs`` other than its default) that differs from
    the budget the plan file was fitted to: the plan's epochs, steps per epoch, warm-up and learning rate follow
    from that budget, so the option would otherwise be ignored (``--steps``) or cut runs short of their schedule."""
    default_epochs = next(f.default for f in dataclasses.fields(CompareConfig) if f.name == "epochs")
    if cfg.seconds is not None:
        flag, given = f"--minutes {cfg.seconds / 60:g}", Budget(seconds=cfg.seconds)
    elif cfg.steps is not None:
        flag, given = f"--steps {cfg.steps}", Budget(steps=cfg.steps)
    elif cfg.epochs != default_epochs:
        flag, given = f"--epochs {cfg.epochs}", Budget(steps=cfg.epochs * STEPS_PER_EPOCH)
    else:
        return  # no budget asked for: the plan's own
    planned = Budget(seconds=plan.budget.get("seconds"), steps=plan.budget.get("steps"))
    if given.describe() != planned.describe():
        raise ConfigError(f"{flag} asks for {given.describe()}, but --plan {cfg.plan} was fitted to "
                          f"{planned.describe()} (its epochs, steps per epoch and learning rate follow from that "
                          f"budget); make the plan for this budget (unetfamily plan ... --steps N or --minutes M), "
                          f"or leave {flag.split()[0]} out to train as the plan says")


def _saved(path: Path) -> Plan | None:
    if not path.is_file():
        return None
    try:
        return read_plan(path)
    except ConfigError as exc:
        log.warning("%s cannot be reused (%s); planning again", path, exc)
        return None


def planned_config(plan: Plan, variant: Variant, fold_data: dict[str, Any], seed: int, run_dir: Path,
                   cfg: CompareConfig) -> Config:
    """The config of one run: the plan's recipe for ``variant`` on the fold's data, with the seed and folder."""
    config = plan.config_for(variant.id, output_dir=str(run_dir), seed=seed, device=cfg.device)
    augment = plan.data_config(variant.id)["augment"]
    seconds = cfg.seconds if cfg.seconds is not None else config.train.max_seconds
    train = dataclasses.replace(config.train, progress=False, loggers=tensorboard_only(cfg), eval_every=1,
                                max_seconds=seconds)
    return dataclasses.replace(config, data={**fold_data, "augment": augment}, train=train)
