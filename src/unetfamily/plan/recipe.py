"""A :class:`Plan`: the recipe the rules chose for a dataset, as a readable YAML file, and the training configs it makes.

The file holds the data config the runs train on, the budget and device it was fitted for, a summary
of the fingerprint, the shared choices (resolution, normalisation, augmentation, loss, optimiser), one
fitted entry per model (patch, batch, steps, and the measurements behind them), and the reason for
every value. ``unetfamily train --plan plan.yaml --model NAME`` trains with :meth:`Plan.config_for`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from unetfamily.config import (
    Config, LoaderConfig, LossConfig, ModelConfig, OptimConfig, ScheduleConfig, TrainConfig, check_config,
    read_config_file,
)
from unetfamily.data.base import scaled_size
from unetfamily.errors import ConfigError, unknown_choice
from unetfamily.files import atomic_write_bytes
from unetfamily.plan.fit import VAL_OVERLAP, FamilyFit

__all__ = ["Plan", "PLAN_VERSION", "read_plan"]

PLAN_VERSION = 1
_HEADER = ("# unetfamily plan: a training recipe derived from the dataset (docs/plan.md explains every rule).\n"
           "# Train one model with: unetfamily train --plan THIS_FILE --model NAME\n")


@dataclass
class Plan:
    """A dataset's fitted recipe (see the module docstring); ``families`` maps a model id to its fit."""

    data: dict[str, Any]
    device: str
    budget: dict[str, Any]
    fingerprint: dict[str, Any]
    scale: float
    normalization: dict[str, Any]
    augment: str
    foreground: dict[str, float]
    loss: dict[str, Any]
    optimizer: dict[str, Any]
    families: dict[str, FamilyFit]
    reasons: dict[str, str] = field(default_factory=dict)
    request: dict[str, Any] = field(default_factory=dict)  # what the plan was made for (reuse check)
    resize: list[int] | None = None  # [H, W] every image is resized to (rules.one_size), else None: scale applies
    version: int = PLAN_VERSION

    @property
    def median_image(self) -> tuple[int, int]:
        """(H, W) of the images trained on: the fixed ``resize``, else the fingerprint's median image at ``scale``."""
        if self.resize is not None:
            return int(self.resize[0]), int(self.resize[1])
        return scaled_size(self.fingerprint["size_median"], self.scale)

    def fit(self, model_id: str) -> FamilyFit:
        """The fit of ``model_id``; ConfigError naming the fitted ones when the plan has none."""
        if model_id not in self.families:
            raise unknown_choice("model (in the plan)", model_id, list(self.families),
                                 "make a plan for it with unetfamily plan --models")
        return self.families[model_id]

    def data_config(self, model_id: str) -> dict[str, Any]:
        """The dataset config ``model_id`` trains on: native size x scale (or one size), its patch crop, foreground
        oversampling."""
        fit = self.fit(model_id)
        augment: dict[str, Any] = {"preset": self.augment, "crop_size": list(fit.patch)}
        if self.foreground.get(model_id, 0.0) > 0:
            augment["foreground"] = self.foreground[model_id]
        data = {k: v for k, v in self.data.items() if k not in ("resize", "augment", "scale")}
        if self.resize is not None:
            data["resize"] = list(self.resize)
        elif self.scale != 1.0:
            data["scale"] = self.scale
        return {**data, "augment": augment}

    def config_for(self, model_id: str, output_dir: str = "runs/unetfamily", seed: int = 0,
                   device: str | None = None) -> Config:
        """The training :class:`Config` of ``model_id`` under this plan."""
        fit = self.fit(model_id)
        opt = self.optimizer
        train = TrainConfig(
            epochs=fit.epochs, steps_per_epoch=fit.steps_per_epoch, max_seconds=self.budget.get("seconds"),
            val_window=list(fit.window), val_overlap=VAL_OVERLAP, seed=seed, device=device or self.device,
        )
        config = Config(
            model=ModelConfig(name=fit.model, kwargs={**fit.kwargs, "input_norm": dict(self.normalization)}),
            data=self.data_config(model_id),
            loader=LoaderConfig(batch_size=fit.batch_size),
            loss=LossConfig(name=self.loss["name"], kwargs=dict(self.loss.get("kwargs") or {})),
            optim=OptimConfig(name=opt["name"], lr=opt["lr"], weight_decay=opt["weight_decay"]),
            schedule=ScheduleConfig(name="cosine", warmup_steps=opt["warmup_steps"], min_lr_ratio=0.01,
                                    follow_time=self.budget.get("seconds") is not None),
            train=train, output_dir=output_dir,
        )
        return check_config(config)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["families"] = {k: v.to_dict() for k, v in self.families.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "the plan") -> Plan:
        """A plan from its mapping; ConfigError naming ``source`` when it is not one this version reads."""
        if not isinstance(data, dict) or data.get("version") != PLAN_VERSION:
            raise ConfigError(f"{source} is not a unetfamily plan of version {PLAN_VERSION} (make one with "
                              "`unetfamily plan DATA`)")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"{source}: unknown plan key {unknown[0]!r}; valid keys: {', '.join(sorted(names))}")
        try:
            families = {k: FamilyFit(**v) for k, v in (data.get("families") or {}).items()}
            return cls(**{**data, "families": families})
        except TypeError as exc:
            raise ConfigError(f"{source} is damaged ({exc}); make it again with `unetfamily plan`") from exc

    def save(self, path: str | Path) -> Path:
        """Write the plan as YAML (atomically); returns the path."""
        text = _HEADER + yaml.safe_dump(self.to_dict(), sort_keys=False, width=120, allow_unicode=True)
        atomic_write_bytes(path, text.encode())
        return Path(path)


def read_plan(path: str | Path) -> Plan:
    """The plan saved at ``path`` (ConfigError naming the file when it is missing or not a plan)."""
    return Plan.from_dict(read_config_file(Path(path)), str(path))
