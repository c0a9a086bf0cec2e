"""How a model's encoder trains: ``train.encoder_lr_mult`` and ``train.freeze_encoder_steps``.

The encoder is what ``model.encoder_modules()`` returns: the modules ImageNet weights initialise
(a pretrained-architecture backbone built with ``model.kwargs.encoder``, FCN's VGG-16 trunk).
With either option away from its default, its parameters form the optimizer's second param group
(``name: "encoder"``), whose learning rate is the schedule's times :meth:`EncoderTraining.lr_factor`:
``encoder_lr_mult``, and 0 during the first ``freeze_encoder_steps`` steps. The layout is fixed by
the config, which a resumed run cannot change, so a checkpoint's optimizer state always fits it;
with both options at their defaults the optimizer keeps its one group (runs saved before these
options resume unchanged).

A frozen step drops the encoder's gradients after the backward pass, so they join neither the
clipping norm nor the update: the encoder's weights and its optimizer state stay exactly as they
were, as with ``requires_grad=False`` (which cannot be toggled once DistributedDataParallel wraps
the model). Its normalisation layers with running statistics run in eval mode meanwhile, so the
statistics stay as loaded. Whether a step is frozen depends on the step number alone: a run
resumed before step N stays frozen until N.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from unetfamily.config import Config, ConfigError

log = logging.getLogger(__name__)

__all__ = ["ENCODER_GROUP", "EncoderTraining", "encoder_training", "check_frozen_span"]

#: The ``name`` of the encoder's optimizer param group.
ENCODER_GROUP = "encoder"
_KEYS = ("encoder_lr_mult", "freeze_encoder_steps")


@dataclass
class EncoderTraining:
    """The encoder's parameters and running-statistics norm layers, and how they train (empty: no options set)."""

    params: list[nn.Parameter] = field(default_factory=list)
    norms: list[nn.Module] = field(default_factory=list)
    lr_mult: float = 1.0
    freeze_steps: int = 0

    def frozen(self, step: int) -> bool:
        """Step ``step`` (0-based) leaves the encoder unchanged."""
        return bool(self.params) and step < self.freeze_steps

    def lr_factor(self, group: dict[str, Any], step: int) -> float:
        """The factor on the schedule's learning rate for param group ``group`` at ``step``."""
        if group.get("name") != ENCODER_GROUP:
            return 1.0
        return 0.0 if self.frozen(step) else self.lr_mult

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]] | Iterator[nn.Parameter]:
        """What the optimizer is built from: ``model.parameters()``, or [rest, encoder] when the options are set."""
        if not self.params:
            return model.parameters()
        mine = {id(p) for p in self.params}
        rest = [p for p in model.parameters() if id(p) not in mine]
        return [{"params": rest}, {"params": list(self.params), "name": ENCODER_GROUP}]

    def before_forward(self, step: int) -> None:
        """The encoder's norm layers in eval mode while frozen, in training mode after (the rest of the model as set)."""
        if self.freeze_steps:
            training = not self.frozen(step)
            for norm in self.norms:
                norm.train(training)

    def after_backward(self, step: int) -> None:
        """While frozen: the encoder's gradients dropped, so clipping and the optimizer leave it untouched."""
        if self.frozen(step):
            for p in self.params:
                p.grad = None


def _encoder_modules(model: nn.Module) -> list[nn.Module]:
    get = getattr(model, "encoder_modules", None)
    return list(get()) if callable(get) else []


def encoder_training(model: nn.Module, cfg: Config) -> EncoderTraining:
    """The :class:`EncoderTraining` of ``model`` (after any SyncBatchNorm conversion) under ``cfg``; logs the choice.

    Raises :class:`ConfigError` naming the key when an option is set for a model without an encoder.
    """
    train = cfg.train
    modules = _encoder_modules(model)
    params = list(dict.fromkeys(p for m in modules for p in m.parameters()))  # once each, in order
    if not params:
        defaults = type(train)()
        for key in _KEYS:
            value = getattr(train, key)
            if value != getattr(defaults, key):
                raise ConfigError(
                    f"train.{key}={value:g} would have no effect: model {cfg.model.name!r} has no pretrained-"
                    "architecture encoder (model.encoder_modules() is empty); build it on one with "
                    "model.kwargs.encoder (e.g. resnet34), or remove the key")
        return EncoderTraining()
    _log_choice(cfg, sum(p.numel() for p in params), getattr(model, "_encoder_weights", None))
    if train.encoder_lr_mult == 1.0 and train.freeze_encoder_steps == 0:
        return EncoderTraining()
    norms = [m for module in modules for m in module.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
    return EncoderTraining(params, norms, train.encoder_lr_mult, train.freeze_encoder_steps)


def _log_choice(cfg: Config, count: int, loaded: dict[str, str] | None) -> None:
    """One line: the encoder, its weights (the file read and its SHA-256, when this run read one), how it trains."""
    train, kwargs = cfg.train, cfg.model.kwargs
    what = f"{kwargs['encoder']} encoder" if kwargs.get("encoder") else "encoder"
    weights = f" from {kwargs['encoder_weights']}" if kwargs.get("encoder_weights") else ""
    if loaded and weights:
        weights += f", sha256 {loaded['sha256'][:12]}"
    lr = "optim.lr" if train.encoder_lr_mult == 1.0 else f"optim.lr x {train.encoder_lr_mult:g} (train.encoder_lr_mult)"
    frozen = (f"frozen for the first {train.freeze_encoder_steps} steps (train.freeze_encoder_steps; its norm "
              "layers in eval mode), then " if train.freeze_encoder_steps else "")
    log.info("%s (%.2fM parameters%s): %strains at %s", what, count / 1e6, weights, frozen, lr)


def check_frozen_span(run_steps: int, encoder: EncoderTraining) -> None:
    """Warn when the encoder stays frozen for every step of the run's budget (a resumed run may train longer)."""
    if encoder.params and encoder.freeze_steps >= run_steps:
        log.warning("train.freeze_encoder_steps=%d covers all %d steps of this run: the encoder does not train "
                    "(raise train.epochs or train.max_steps to train it)", encoder.freeze_steps, run_steps)
