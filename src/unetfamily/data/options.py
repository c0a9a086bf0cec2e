"""Checks for the values of dataset config keys.

Each function returns the value in its checked form or raises a
:class:`~unetfamily.data.errors.DataConfigError` naming the key, the value given and the valid form,
so a malformed number or list is refused when the dataset is built, never deep inside training.
Booleans are not accepted as numbers (YAML turns ``yes`` into ``True``).
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from numbers import Integral
from typing import Any

from unetfamily.data.errors import DataConfigError
from unetfamily.errors import Range

__all__ = ["boolean", "integer", "mapping", "number", "placeholders", "size", "slice_range", "text"]


def _refuse(key: str, value: object, valid: str) -> DataConfigError:
    return DataConfigError(f"{key}={value!r} is invalid; {valid}")


def integer(key: str, value: Any, *, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` as an int in ``[lo, hi]`` (either bound optional)."""
    Range(ge=lo, le=hi, integer=True)(key, value, error=DataConfigError)
    return int(value)


def number(key: str, value: Any, *, lo: float | None = None, hi: float | None = None) -> float:
    """``value`` as a finite float in ``[lo, hi]``."""
    Range(ge=lo, le=hi)(key, value, error=DataConfigError)
    return float(value)


def boolean(key: str, value: Any) -> bool:
    """``value`` if it is ``True`` or ``False`` (a string such as ``"no"`` would otherwise read as true)."""
    if not isinstance(value, bool):
        raise _refuse(key, value, "give true or false")
    return value


def text(key: str, value: Any, valid: str = "give a string") -> str:
    """``value`` if it is a string; ``valid`` describes the expected form."""
    if not isinstance(value, str):
        raise _refuse(key, value, valid)
    return value


def mapping(key: str, value: Any, valid: str) -> Mapping:
    """``value`` if it is a mapping; ``valid`` describes the expected form."""
    if not isinstance(value, Mapping):
        raise _refuse(key, value, valid)
    return value


def placeholders(key: str, value: Any, allowed: Sequence[str]) -> str:
    """``value`` as a format string whose only ``{fields}`` are in ``allowed`` (e.g. ``images/{split}``)."""
    value = text(key, value)
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
    except ValueError as e:  # an unmatched brace
        raise _refuse(key, value, f"braces must enclose a placeholder ({e})") from e
    wrong = [f for f in fields if f not in allowed]
    if wrong:
        names, bad = (", ".join("{" + f + "}" for f in fields) for fields in (allowed, wrong))
        raise _refuse(key, value, f"the only placeholder allowed is {names}, not {bad}")
    return value


def size(key: str, value: Any) -> tuple[int, int] | None:
    """``None``, an int (square) or ``[H, W]``, each side a whole number >= 1, as ``(H, W)``."""
    if value is None:
        return None
    valid = "give a positive whole number (a square) or [height, width] of positive whole numbers"
    if isinstance(value, Integral) and not isinstance(value, bool):
        sides: Sequence[Any] = (value, value)
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        sides = value
    else:
        raise _refuse(key, value, valid)
    if any(isinstance(s, bool) or not isinstance(s, Integral) or s < 1 for s in sides):
        raise _refuse(key, value, valid)
    return int(sides[0]), int(sides[1])


def slice_range(key: str, value: Any, count: int) -> range:
    """``[start, stop]`` of slice indices, with ``0 <= start < stop <= count``, as a range."""
    valid = f"give [start, stop] with 0 <= start < stop <= {count} (the stack has {count} slices; stop is excluded)"
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise _refuse(key, value, valid)
    start, stop = value
    if any(isinstance(v, bool) or not isinstance(v, Integral) for v in (start, stop)):
        raise _refuse(key, value, valid)
    if not 0 <= start < stop <= count:
        raise _refuse(key, value, valid)
    return range(int(start), int(stop))
