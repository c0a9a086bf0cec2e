"""Experiment configuration: one YAML/TOML file plus dotted command-line overrides.

A config is a tree of dataclasses; loading is strict (an unknown key is an error that names it
and lists the valid ones), and the resolved config is what runs save beside their checkpoints.
Every number's valid range is declared next to its field (:func:`integer`, :func:`number`) and
checked whenever a section is built (file, override or Python); :func:`check_config` checks a
whole config again before a run. Free-form sections (``model.kwargs``, ``data``) are checked by
their consumers (:func:`unetfamily.create_model`, :func:`unetfamily.data.build_dataset`); no
value anywhere may be NaN or infinite.

    cfg = load_config("configs/unet_synthetic.yaml", ["train.epochs=3", "optim.lr=3e-4"])
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from unetfamily.config_file import apply_overrides, read_config_file, read_experiment_file
from unetfamily.errors import MAX_VALUES, ConfigError, Range, check_tree, show_value as _show

log = logging.getLogger(__name__)

__all__ = ["ConfigError", "Config", "Range", "integer", "number", "check_fields", "check_config", "load_config",
           "read_config_file", "config_from_dict", "apply_overrides", "dataclass_from_dict", "upgrade_old_keys",
           "LOGGERS"]


def integer(default: int | None, **rule: Any) -> Any:
    """A dataclass field holding a whole number in ``Range(**rule)`` (checked by :func:`check_fields`)."""
    return field(default=default, metadata={"check": Range(integer=True, **rule)})


def number(default: float | None, **rule: Any) -> Any:
    """A dataclass field holding a finite number in ``Range(**rule)`` (checked by :func:`check_fields`)."""
    return field(default=default, metadata={"check": Range(**rule)})


def check_fields(obj: Any, name: Callable[[str], str] = str) -> None:
    """Check every field of dataclass ``obj`` that declares a ``check`` (a :class:`Range` or a function).

    ``name(field_name)`` is how errors name the field (``"train.lr"``, ``"--lr"``).
    """
    for f in dataclasses.fields(obj):
        check = f.metadata.get("check")
        if check is not None:
            check(name(f.name), getattr(obj, f.name))


def _weights(what: str, value: list[float] | None) -> None:
    """Deep-supervision weights: null (every head 1) or finite numbers >= 0, not all zero."""
    if value is None:
        return
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{what} must be a non-empty list of weights, one per output head (or null for 1 each)")
    for i, weight in enumerate(value):
        Range(ge=0)(f"{what}[{i}]", weight)
    if not any(value):
        raise ConfigError(f"{what}={list(value)} weighs every output head 0, so nothing would be trained; "
                          "give one head at least a positive weight")


def _window(what: str, value: list[int] | None) -> None:
    """A sliding window: null (no window) or [height, width], two whole numbers >= 1."""
    if value is None:
        return
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"{what} must be [height, width] in pixels, e.g. [256, 256] (or null for whole images)")
    for i, side in enumerate(value):
        Range(ge=1, integer=True)(f"{what}[{i}]", side)


Logger = Literal["tensorboard", "mlflow"]  # the loggers train.loggers may list
LOGGERS: tuple[str, ...] = get_args(Logger)


def _workers(what: str, value: int | Literal["auto"]) -> None:
    """DataLoader worker processes: "auto" (chosen per device at run start, unetfamily.data.workers) or >= 0."""
    if isinstance(value, str) and value != "auto":
        raise ConfigError(f"{what}={value!r} is not valid; use 'auto' or a whole number of worker processes >= 0")
    if value != "auto":
        Range(ge=0, integer=True)(what, value)


def _loggers(what: str, value: list[str]) -> None:
    if isinstance(value, (list, tuple)) and len(set(value)) < len(value):
        raise ConfigError(f"{what}={list(value)!r} names a logger twice; name each once")


class _Section:
    """Base of the config sections: each checks its fields when built, errors naming ``<section>.<key>``."""

    section = ""

    def __post_init__(self) -> None:
        check_fields(self, lambda key: f"{self.section}.{key}")


@dataclass
class ModelConfig(_Section):
    section = "model"
    name: str = "unet"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoaderConfig(_Section):
    section = "loader"
    batch_size: int = integer(8, ge=1)
    val_batch_size: int | None = integer(None, ge=1, null="use loader.batch_size")
    # "auto": on CUDA min(8, CPUs - 1) split among the node's ranks, else 0 (resolved and logged at run start)
    num_workers: int | Literal["auto"] = field(default="auto", metadata={"check": _workers})


@dataclass
class LossConfig(_Section):
    section = "loss"
    name: str = "dice_ce"
    # One weight per deep-supervision head, final head first (null: 1 each); needs model.kwargs.deep_supervision.
    ds_weights: list[float] | None = field(default=None, metadata={"check": _weights})
    # Weight of the UNet3+ classification-guided module's loss; needs model.kwargs.cgm.
    cgm_weight: float = number(1.0, ge=0)
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig(_Section):
    section = "optim"
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = number(1e-3, gt=0)
    weight_decay: float = number(1e-4, ge=0)
    momentum: float = number(0.9, ge=0, lt=1)  # sgd only


@dataclass
class ScheduleConfig(_Section):
    section = "schedule"
    name: Literal["cosine", "poly", "constant"] = "cosine"
    warmup_steps: int = integer(0, ge=0)
    min_lr_ratio: float = number(0.0, ge=0, le=1)  # cosine and poly: the lr decays to min_lr_ratio * lr
    power: float = number(0.9, gt=0)  # poly only
    # with train.max_seconds: decay by whichever is further along, the steps or the time budget, so a run
    # cut short by its time budget still ends annealed (the plan sets it; off: a pure function of the step)
    follow_time: bool = False


@dataclass
class TrainConfig(_Section):
    section = "train"
    epochs: int = integer(10, ge=1)
    max_steps: int | None = integer(None, ge=1, null="train all the epochs")
    max_seconds: float | None = number(None, gt=0, null="set no time limit")
    grad_clip: float | None = number(1.0, gt=0, null="turn clipping off")
    amp: Literal["auto", "none", "bf16", "fp16"] = "auto"  # auto: bf16 on CUDA with bf16, else none
    channels_last: Literal["auto", True, False] = "auto"  # auto: per device, family, size (models.layout)
    # How the model trades compute for memory while training ("recompute": cheap tensors rebuilt
    # in backward, bit-identical; "checkpoint": less memory still; see set_memory_saving).
    memory_saving: Literal["none", "recompute", "checkpoint"] = "recompute"
    compile: bool = False
    seed: int = integer(0, ge=0, le=2**32 - 1)
    device: str = "auto"
    eval_every: int = integer(1, ge=1)  # epochs
    log_every: int = integer(10, ge=1)  # steps, to the loggers (train.loggers)
    image_every: int = integer(0, ge=0)  # steps, to the loggers; 0: never
    checkpoint_every: int = integer(0, ge=0)  # steps inside an epoch; 0: at epoch ends only
    monitor: str = "dice"
    early_stop_patience: int | None = integer(None, ge=1, null="never stop early")
    nan_policy: Literal["stop", "skip"] = "stop"
    # nan_policy='skip': the run fails once more than this fraction of its steps so far were skipped.
    max_skipped_fraction: float = number(0.1, ge=0, le=1)
    # Where scalars, images, parameters and files go (docs/training.md): tensorboard, mlflow (pip extra); [] nowhere.
    loggers: list[Logger] = field(default_factory=lambda: ["tensorboard"], metadata={"check": _loggers})
    mlflow_uri: str | None = None  # null: $MLFLOW_TRACKING_URI, else a SQLite store in <output_dir>/mlflow/
    mlflow_experiment: str = "unetfamily"
    mlflow_tags: dict[str, str] = field(default_factory=dict)  # compare nests runs with mlflow.parentRunId
    progress: bool = True
    # Optimiser steps per epoch (nnU-Net: 250 "iterations"): each epoch draws steps_per_epoch * batch_size
    # samples from seeded permutations of the training set, whatever its size. Null: one pass over the data.
    steps_per_epoch: int | None = integer(None, ge=1, null="make an epoch one pass over the training data")
    # Validation predicts each image by Gaussian-blended sliding windows of this [height, width]
    # (null: the model sees each whole image); val_overlap is the fraction neighbouring windows share.
    val_window: list[int] | None = field(default=None, metadata={"check": _window})
    val_overlap: float = number(0.5, ge=0, le=0.95)
    # The encoder (model.encoder_modules(): a pretrained-architecture backbone, FCN's VGG trunk) trains at
    # optim.lr x encoder_lr_mult, and not at all for the first freeze_encoder_steps steps (its norm layers
    # in eval mode then). Refused for a model without such an encoder (docs/training.md).
    encoder_lr_mult: float = number(1.0, gt=0)
    freeze_encoder_steps: int = integer(0, ge=0)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: dict[str, Any] = field(default_factory=lambda: {"type": "synthetic"})
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output_dir: str = "runs/unetfamily"

    def __post_init__(self) -> None:
        if not str(self.output_dir).strip():
            raise ConfigError("output_dir is empty; name the folder the run writes to, e.g. output_dir=runs/my_run")
        _check_combinations(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _check_combinations(cfg: Config) -> None:
    """Refuse a key set away from its default where it would have no effect (silently ignored otherwise)."""
    train, kwargs = cfg.train, cfg.model.kwargs
    unused = {
        "optim.momentum": (cfg.optim.name != "sgd", "applies to optim.name=sgd only"),
        "schedule.power": (cfg.schedule.name != "poly", "applies to schedule.name=poly only"),
        "schedule.min_lr_ratio": (cfg.schedule.name == "constant", "applies to the cosine and poly schedules only"),
        "schedule.follow_time": (cfg.schedule.name == "constant" or train.max_seconds is None,
                                 "paces a cosine or poly decay by train.max_seconds, and there is none of the two"),
        "train.max_skipped_fraction": (train.nan_policy != "skip", "applies to train.nan_policy=skip only"),
        "train.log_every": (not train.loggers, "paces the loggers, and train.loggers is empty"),
        "train.image_every": (not train.loggers, "paces the loggers' images, and train.loggers is empty"),
        "train.mlflow_uri": ("mlflow" not in train.loggers, "sets where MLflow logs, and train.loggers has no mlflow"),
        "train.mlflow_experiment": ("mlflow" not in train.loggers, "names the MLflow experiment, and train.loggers "
                                    "has no mlflow"),
        "train.mlflow_tags": ("mlflow" not in train.loggers, "tags the MLflow run, and train.loggers has no mlflow"),
        "train.val_overlap": (train.val_window is None, "spaces validation windows, and train.val_window is null"),
        "loss.cgm_weight": (not kwargs.get("cgm"), "weighs the UNet3+ classification-guided module, which needs "
                            "model.kwargs.cgm=true"),
        "loss.ds_weights": (not kwargs.get("deep_supervision"), "weighs deep-supervision heads, which need "
                            "model.kwargs.deep_supervision=true"),
    }
    for key, (ignored, why) in unused.items():
        section, name = key.split(".")
        part = getattr(cfg, section)
        if ignored and getattr(part, name) != getattr(type(part)(), name):
            raise ConfigError(f"{key}={_show(getattr(part, name))} would have no effect: it {why}; remove it or "
                              "change that")


def _check_value(path: str, value: Any, hint: Any) -> Any:
    origin = get_origin(hint)
    if origin is Literal:
        if not any(value == choice and type(value) is type(choice) for choice in get_args(hint)):  # 1 is not True
            raise ConfigError(f"{path}={value!r} is not valid; choose one of {', '.join(map(repr, get_args(hint)))}")
        return value
    types = tuple(t for t in (get_args(hint) if origin is not None and origin not in (dict, list) else (hint,)))
    if value is None:
        if type(None) in types:
            return None
        raise ConfigError(f"{path} must not be null")
    for t in types:
        base = get_origin(t) or t
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if base is float and isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string
            with contextlib.suppress(ValueError):
                return float(value)
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if base is list and isinstance(value, (list, tuple)):
            item = (get_args(t) or (Any,))[0]
            return [v if item is Any else _check_value(f"{path}[{i}]", v, item) for i, v in enumerate(value)]
        if base in (str, bool, dict) and isinstance(value, base):
            return value
        if base is Literal and any(value == choice and type(value) is type(choice) for choice in get_args(t)):
            return value
    raise ConfigError(f"{path}={value!r} has the wrong type; expected {_shown_type(hint)}")


def _shown_type(hint: Any) -> str:
    """A type as errors show it: ``int``, ``list[str]``, ``int or 'auto'``, ``float or null``."""
    origin = get_origin(hint)
    if hint is type(None):
        return "null"
    if origin is Literal:
        return " or ".join(map(repr, get_args(hint)))
    if origin is not None and origin not in (dict, list):  # a union
        return " or ".join(_shown_type(t) for t in get_args(hint))
    return str(hint) if origin is not None else getattr(hint, "__name__", str(hint))


def dataclass_from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """An instance of dataclass ``cls`` from a nested mapping, strictly checked (unknown keys, types, Literals).

    ``prefix`` is prepended to key names in errors (``"train."``). Missing keys take their defaults.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names), key=str)
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix}{unknown[0]!s}; valid keys under {prefix.rstrip('.') or 'the top level'}: "
            f"{', '.join(names)}"
        )
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = dataclass_from_dict(hint, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _check_value(f"{prefix}{name}", value, hint)
    return cls(**kwargs)


#: Keys that configs saved by version 0.1.0 carry, always null, and that no longer exist; where to set the thing now.
_REMOVED_KEYS = {("train", "augment"): "augmentation is part of the data config: data.augment"}


def _drop_removed_keys(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without the null removed keys that 0.1.0 saved (so its run folders still resume); others refused."""
    for (section, key), instead in _REMOVED_KEYS.items():
        part = data.get(section)
        if not isinstance(part, dict) or key not in part:
            continue
        if part[key] is not None:
            raise ConfigError(f"{section}.{key} is no longer a config key; {instead}")
        data = {**data, section: {k: v for k, v in part.items() if k != key}}
    return data


def upgrade_old_keys(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with 0.1.0's ``train.tensorboard`` read as the ``train.loggers`` that replaced it (docs/training.md)."""
    train = data.get("train")
    if not isinstance(train, dict) or "tensorboard" not in train:
        return data
    on, loggers, rest = train["tensorboard"], train.get("loggers"), {k: v for k, v in train.items() if k != "tensorboard"}
    if loggers is None and isinstance(on, bool):  # true: 0.1.0's default, saved in every config it wrote
        if not on:
            log.warning("train.tensorboard=false is deprecated: write train.loggers: [] instead")
        rest["loggers"] = ["tensorboard"] if on else []
    elif not isinstance(on, bool) or (loggers is not None and on != ("tensorboard" in loggers)):
        raise ConfigError(f"train.tensorboard={_show(on)}: train.loggers{'' if loggers is None else f'={loggers!r}'} "
                          "replaced that key; remove it and list the loggers in train.loggers, e.g. [tensorboard, mlflow]")
    return {**data, "train": rest}


def config_from_dict(data: dict[str, Any]) -> Config:
    """A :class:`Config` from a nested mapping; missing keys take their defaults."""
    check_tree(data, "config")
    if isinstance(data, dict):
        data = upgrade_old_keys(_drop_removed_keys(data))
    return dataclass_from_dict(Config, data, "")


def check_config(config: Config) -> Config:
    """``config`` checked again as a whole, as a file would be: also catches fields changed after it was built.

    Returns the checked copy (e.g. 1 -> 1.0 for a float key); raises :class:`ConfigError` naming the key.
    """
    if not isinstance(config, Config):
        raise TypeError(f"expected a unetfamily.config.Config, got {type(config).__name__}")
    return config_from_dict(config.to_dict())


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML/TOML config (or the defaults when ``path`` is None) and apply overrides.

    Relative paths of its ``data`` section are relative to the file's folder (:func:`~unetfamily.config_file.
    anchor_paths`); the overrides' are relative to the working folder."""
    data = read_experiment_file(Path(path)) if path is not None else {}
    return config_from_dict(apply_overrides(data, list(overrides or [])))
