"""Experiment configuration: one YAML/TOML file plus dotted command-line overrides.

A config is a tree of dataclasses; loading is strict (an unknown key is an error that names it
and lists the valid ones), and the resolved config is what runs save beside their checkpoints.
Free-form sections (``model.kwargs``, ``data``) are checked by the code that consumes them
(:func:`unetfamily.create_model`, :func:`unetfamily.data.build_dataset`).

    cfg = load_config("configs/unet_synthetic.yaml", ["train.epochs=3", "optim.lr=3e-4"])
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

from unetfamily.errors import ConfigError

__all__ = ["ConfigError", "Config", "load_config", "config_from_dict", "apply_overrides", "dataclass_from_dict"]


@dataclass
class ModelConfig:
    name: str = "unet"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoaderConfig:
    batch_size: int = 8
    val_batch_size: int | None = None
    num_workers: int = 0


@dataclass
class LossConfig:
    name: str = "dice_ce"
    ds_weights: list[float] | None = None
    cgm_weight: float = 1.0
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9


@dataclass
class ScheduleConfig:
    name: Literal["cosine", "poly", "constant"] = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    power: float = 0.9


@dataclass
class TrainConfig:
    epochs: int = 10
    max_steps: int | None = None
    max_seconds: float | None = None
    grad_clip: float | None = 1.0
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    # How the model trades compute for memory while training ("recompute": cheap tensors rebuilt
    # in backward, bit-identical; "checkpoint": less memory still; see set_memory_saving).
    memory_saving: Literal["none", "recompute", "checkpoint"] = "recompute"
    compile: bool = False
    seed: int = 0
    device: str = "auto"
    eval_every: int = 1
    log_every: int = 10
    image_every: int = 0
    checkpoint_every: int = 0
    monitor: str = "dice"
    early_stop_patience: int | None = None
    nan_policy: Literal["stop", "skip"] = "stop"
    tensorboard: bool = True
    progress: bool = True


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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _check_value(path: str, value: Any, hint: Any) -> Any:
    origin = get_origin(hint)
    if origin is Literal:
        if value not in get_args(hint):
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
        if base in (str, bool, dict, list) and isinstance(value, base):
            return value
    raise ConfigError(f"{path}={value!r} has the wrong type; expected {hint}")


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


MAX_VALUES = 100_000


def _check_size(data: Any) -> None:
    """Refuse trees of more than MAX_VALUES values: YAML aliases can nest into billions, or loop."""
    stack, count = [data], 0
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
        count += 1
        if count > MAX_VALUES:
            raise ConfigError(
                f"the config holds more than {MAX_VALUES:,d} values (YAML aliases that expand or refer to themselves?); "
                "write it out plainly"
            )


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


def config_from_dict(data: dict[str, Any]) -> Config:
    """A :class:`Config` from a nested mapping; missing keys take their defaults."""
    _check_size(data)
    if isinstance(data, dict):
        data = _drop_removed_keys(data)
    return dataclass_from_dict(Config, data, "")


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text ({exc})") from exc
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError, RecursionError) as exc:
        raise ConfigError(f"config file {path} is not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a nested mapping, in place."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except (yaml.YAMLError, RecursionError) as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({exc})") from exc
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        node[parts[-1]] = value
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML/TOML config (or the defaults when ``path`` is None) and apply overrides."""
    data = _read(Path(path)) if path is not None else {}
    return config_from_dict(apply_overrides(data, list(overrides or [])))
