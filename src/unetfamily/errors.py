"""The exception types unetfamily raises for bad input and unusable files.

Every error a user can cause (a bad config, a corrupt image, a damaged checkpoint, an unknown
name, a missing optional extra) is a :class:`UnetFamilyError`, whose message names the file or
argument and says what to do; the command line prints it as one ``error:`` line without a
traceback and exits with code 2. Each also subclasses the builtin it refines (``ValueError``,
``RuntimeError`` or ``ImportError``) so generic handlers keep working.
"""
from __future__ import annotations

import difflib
import hashlib
import importlib
import math
import numbers
import os
import stat
from pathlib import Path
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

__all__ = ["UnetFamilyError", "ConfigError", "MissingExtraError", "Range", "file_sha256", "regular_file", "show_value", "unknown_choice",
           "resolve_choice", "require", "check_tree", "MAX_VALUES"]


class UnetFamilyError(Exception):
    """Base of the errors raised for bad user input or unusable files."""


class ConfigError(UnetFamilyError, ValueError):
    """A config file, override or option is invalid; the message names the key and what to do."""


class MissingExtraError(UnetFamilyError, ImportError):
    """An optional dependency is not installed; the message names the pip extra that brings it."""


def _normal(name: str) -> str:
    return "".join(ch for ch in name.lower().replace("+", "plus") if ch.isalnum())


def unknown_choice(what: str, value: object, choices: Iterable[str], hint: str = "") -> ConfigError:
    """A :class:`ConfigError` for ``value`` not among ``choices``, naming the close matches.

    ``what`` names the argument or key (``"--models"``, ``"loss.name"``); ``hint`` is appended
    (e.g. where the full list is). Close matches are found on the spelling and on a normalised
    form in which ``+`` reads as ``plus`` and punctuation is dropped (``unet++`` -> ``unet_plusplus``).
    """
    options = sorted(set(choices))
    text = str(value)
    close = difflib.get_close_matches(text, options, n=3, cutoff=0.6)
    normal = {_normal(o): o for o in options}
    close += [normal[n] for n in difflib.get_close_matches(_normal(text), list(normal), n=3, cutoff=0.7)
              if normal[n] not in close]
    if close:
        suggestion = f"did you mean {', '.join(repr(c) for c in close[:3])}?"
    elif len(options) <= 12:
        suggestion = f"choose one of {', '.join(options)}"
    else:
        suggestion = f"{len(options)} names are valid"
    return ConfigError(f"{what}: unknown value {text!r}; {suggestion}" + (f" ({hint})" if hint else ""))


def resolve_choice(what: str, value: str, choices: Iterable[str], aliases: Mapping[str, str] | None = None,
                   hint: str = "") -> str:
    """``value`` if it is one of ``choices``, the choice an alias or spelling variant names, else a ConfigError.

    Spelling variants that normalise to exactly one choice (``unet++``, ``UNetPlusPlus``,
    ``unet-plusplus`` for ``unet_plusplus``) resolve to it; ``aliases`` adds explicit ones.
    """
    options = list(choices)
    if value in options:
        return value
    if aliases and value in aliases:
        return aliases[value]
    matches = [o for o in options if _normal(o) == _normal(value)]
    if aliases:
        matches += [a for k, a in aliases.items() if _normal(k) == _normal(value) and a not in matches]
    if len(matches) == 1:
        return matches[0]
    raise unknown_choice(what, value, options, hint)


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import the optional dependency ``module`` or raise a :class:`MissingExtraError` naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{purpose} needs the '{module}' package, which is not installed: pip install 'unetfamily[{extra}]'"
        ) from exc


def show_value(value: Any) -> str:
    """A number or name as messages show it: ``0.001``, ``'adamw'``, ``3``."""
    return f"{value:g}" if isinstance(value, float) else repr(value) if isinstance(value, str) else str(value)


@dataclass(frozen=True)
class Range:
    """The values a numeric option accepts: bounds (``gt``/``ge`` below, ``lt``/``le`` above), whole numbers or not.

    ``null`` says what null (None) means where it is allowed ("turn clipping off"); None is refused otherwise.
    Non-finite values (NaN, infinity) and booleans are always refused.
    """

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    integer: bool = False
    null: str | None = None

    def describe(self) -> str:
        """The rule in words: ``"at least 1"``, ``"a positive number"``, ``"between 1 and 20"``, ``"in [0, 1)"``."""
        low, high = self.gt if self.gt is not None else self.ge, self.lt if self.lt is not None else self.le
        if self.ge is not None and self.le is not None:
            return f"between {show_value(low)} and {show_value(high)}"
        if low is not None and high is not None:
            left, right = "(" if self.gt is not None else "[", ")" if self.lt is not None else "]"
            return f"in {left}{show_value(low)}, {show_value(high)}{right}"
        if self.gt == 0 and high is None:
            return "a positive number"
        if low is not None:
            return f"{'at least' if self.gt is None else 'greater than'} {show_value(low)}"
        if high is not None:
            return f"{'at most' if self.lt is None else 'less than'} {show_value(high)}"
        return "a whole number" if self.integer else "a finite number"

    def __call__(self, what: str, value: Any, error: type[ConfigError] = ConfigError) -> None:
        """Raise ``error`` (a :class:`ConfigError`) naming ``what`` unless ``value`` is in range."""
        unset = "leave it out" if what.startswith("-") else "null"  # a command-line option, or a config key
        rule = self.describe() + (f" (or {unset} to {self.null})" if self.null else "")
        if value is None:
            if self.null is None:
                raise error(f"{what} must not be null; it must be {rule}")
            return
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise error(f"{what}={value!r} is not a number; it must be {rule}")
        if self.integer and not isinstance(value, numbers.Integral):
            raise error(f"{what} must be a whole number, got {show_value(value)}")
        if not math.isfinite(value):
            raise error(f"{what} must be {rule}, got {show_value(value)} (not a finite number)")
        if ((self.gt is not None and not value > self.gt) or (self.ge is not None and not value >= self.ge)
                or (self.lt is not None and not value < self.lt) or (self.le is not None and not value <= self.le)):
            raise error(f"{what} must be {rule}, got {show_value(value)}")


_SPECIAL_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def special_kind(path: str | Path) -> str | None:
    """What ``path`` is when it exists but is not a regular file (following symlinks): "a directory", "a named
    pipe (FIFO)", "a socket", "a character device", "a block device"; None for a regular file or nothing."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _SPECIAL_KINDS if test(mode)), "not a regular file")


def regular_file(path: str | Path, what: str = "file", error: type[UnetFamilyError] = UnetFamilyError) -> Path:
    """``path`` if it is a regular file (a symlink to one is fine), checked with ``os.stat`` before any open.

    Anything else raises ``error`` naming it: a missing file or broken symlink, a directory, and the
    special files (FIFOs, sockets, devices) whose opening could block forever or read without end.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as e:
        broken = " (a broken symbolic link)" if path.is_symlink() else ""
        raise error(f"{path}: {what} not found{broken}") from e
    except OSError as e:
        raise error(f"{path}: cannot access {what} ({e.strerror or e})") from e
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _SPECIAL_KINDS if test(mode)), "not a regular file")
        raise error(f"{path}: is {kind}, not a regular file; the {what} must be a regular file (remove or rename it)")
    return path


#: Most values a config tree may hold.
MAX_VALUES = 100_000


def check_tree(data: Any, what: str = "config") -> None:
    """Refuse trees of more than MAX_VALUES values (YAML aliases can nest into billions, or loop) and NaN/infinity."""
    stack, count = [(None, data)], 0  # (where: a (parent's where, key) chain, built in O(1); node)
    while stack:
        where, node = stack.pop()
        if isinstance(node, dict):
            stack.extend(((where, f".{k}" if where else str(k)), v) for k, v in node.items())
        elif isinstance(node, (list, tuple)):
            stack.extend(((where, f"[{i}]"), v) for i, v in enumerate(node))
        elif isinstance(node, float) and not math.isfinite(node):
            raise ConfigError(f"{_path(where)}={node} is not a finite number; NaN and infinity are not valid config "
                              "values")
        count += 1
        if count > MAX_VALUES:
            raise ConfigError(f"the {what} holds more than {MAX_VALUES:,d} values (YAML aliases that expand or refer "
                              "to themselves?); write it out plainly")


def _path(where: tuple | None) -> str:
    parts = []
    while where is not None:
        where, key = where
        parts.append(key)
    return "".join(reversed(parts))


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks (weight files, downloaded archives, data files)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
