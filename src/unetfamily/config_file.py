"""Reading a config file (YAML or TOML), anchoring the relative paths of its dataset config to the file's folder
(:func:`anchor_paths`), and applying ``key.sub=value`` overrides to the mapping it holds.

Both are strict: a YAML key given twice in one mapping is an error (PyYAML would keep the last), a
file that is not a regular file, not UTF-8 or not valid YAML/TOML is a :class:`ConfigError` naming
it, and an override must look like ``key.sub=value``. :mod:`unetfamily.config` turns the mapping
into a checked :class:`~unetfamily.config.Config`.
"""
from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from unetfamily.errors import ConfigError, regular_file

__all__ = ["read_config_file", "read_experiment_file", "apply_overrides", "anchor_paths", "expand_path",
           "DATA_PATH_KEYS"]

log = logging.getLogger(__name__)

#: Dataset config keys naming files or folders by a path of their own (other paths, such as templates, split lists
#: and ``images``/``masks`` folders, are relative to ``root``), per dataset type; ``"*"``: every type.
DATA_PATH_KEYS = {"*": ("root", "classes"), "tiff_stack": ("images", "labels")}


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_config_file(path: Path) -> dict[str, Any]:
    """The mapping a YAML/TOML config file holds ({} when empty); a ConfigError naming the file otherwise."""
    regular_file(path, "config file", ConfigError)  # a FIFO or device would block or never end
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text ({exc})") from exc
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.load(text, Loader=_StrictLoader)  # noqa: S506
    except (yaml.YAMLError, tomllib.TOMLDecodeError, RecursionError) as exc:
        reason = " ".join(str(exc).split())  # PyYAML's message spans lines (with a caret); one error line
        raise ConfigError(f"config file {path} is not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: "
                          f"{reason}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def read_experiment_file(path: Path) -> dict[str, Any]:
    """:func:`read_config_file` of an experiment config, its ``data`` section's relative paths anchored to the
    file's folder (:func:`anchor_paths`), as a dataset config file's are."""
    data = read_config_file(path)
    if isinstance(data.get("data"), Mapping):
        data["data"] = anchor_paths(data["data"], path.parent)
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


def expand_path(value: str | Path) -> Path:
    """A path given in a config, with ``$VARS`` and ``~`` expanded."""
    return Path(os.path.expandvars(str(value))).expanduser()


def anchor_paths(config: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """A dataset ``config`` (read from a file in ``folder``) with its relative paths made relative to ``folder``.

    A data config file's ``root: .`` means the file's own folder, whatever the working folder: read
    against the working folder it would find no data there, or other data (an ``images/`` folder of the
    working folder). ``root``, a class-list file (``classes: classes.txt``) and a ``tiff_stack``'s
    ``images``/``labels`` are anchored (:data:`DATA_PATH_KEYS`; also in a ``cv_fold``'s ``base``); ``~`` and
    ``$VARS`` are expanded first, and absolute paths are kept. A path found only from the working folder
    (configs written before paths were anchored, e.g. ``configs/my.yaml`` with ``root: data/mine``) is read
    from there, with a warning saying what to write.
    """
    config = dict(config)
    for key in DATA_PATH_KEYS["*"] + DATA_PATH_KEYS.get(str(config.get("type")), ()):
        value = config.get(key)
        if isinstance(value, str) and value:
            path = expand_path(value)
            anchored = path if path.is_absolute() else folder.resolve() / path
            if not anchored.exists() and path.exists():
                log.warning("%s: %s: %s is not in the config's folder but is in the working folder, and is read from "
                            "there; relative paths in a config file are relative to its folder: write %s: %s",
                            folder, key, value, key, os.path.relpath(path.resolve(), folder.resolve()))
                anchored = path.resolve()
            config[key] = str(anchored)
    if isinstance(config.get("base"), Mapping):
        config["base"] = anchor_paths(config["base"], folder)
    return config
