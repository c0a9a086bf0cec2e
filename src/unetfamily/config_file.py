"""Reading a config file (YAML or TOML) and applying ``key.sub=value`` overrides to the mapping it holds.

Both are strict: a YAML key given twice in one mapping is an error (PyYAML would keep the last), a
file that is not a regular file, not UTF-8 or not valid YAML/TOML is a :class:`ConfigError` naming
it, and an override must look like ``key.sub=value``. :mod:`unetfamily.config` turns the mapping
into a checked :class:`~unetfamily.config.Config`.
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml

from unetfamily.errors import ConfigError, regular_file

__all__ = ["read_config_file", "apply_overrides"]


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
