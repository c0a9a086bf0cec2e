"""The exceptions the data package raises for bad input.

Every reader wraps the errors of its decoder (Pillow, tifffile, json) into :class:`DataError`, so
callers need to catch one type. Messages name the offending file or option and say what to do.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from unetfamily import errors

__all__ = ["DataConfigError", "DataError", "UnknownSplitError", "check_keys", "unknown_choice", "unknown_split"]


class DataError(errors.UnetFamilyError, ValueError):
    """A data file, folder or annotation cannot be used as given (missing, corrupt, wrong values)."""


class DataConfigError(DataError, errors.ConfigError):
    """A dataset configuration is invalid: unknown ``type``, unknown key, or inconsistent options."""


class UnknownSplitError(DataConfigError):
    """The dataset defines no split of the requested name (e.g. ``test`` for ISBI 2012).

    Only this error means "no such split": a split that is declared but broken (a missing, empty or
    unreadable list file) is a plain :class:`DataError`, so callers that try optional splits catch
    this one alone and never fall back silently from a broken split to another.
    """


def unknown_choice(what: str, value: object, choices: Iterable[str], hint: str = "") -> DataConfigError:
    """:func:`unetfamily.errors.unknown_choice` (the message with the close matches) as a DataConfigError.

    Callers of the data package catch :class:`DataError`; this keeps unknown names inside it.
    """
    return DataConfigError(*errors.unknown_choice(what, value, choices, hint).args)


def unknown_split(what: str, split: object, choices: Iterable[str], hint: str = "") -> UnknownSplitError:
    """:func:`unknown_choice` for a split name, as an :class:`UnknownSplitError`."""
    return UnknownSplitError(*errors.unknown_choice(what, split, choices, hint).args)


def check_keys(what: str, keys: Iterable[object], valid: Sequence[str]) -> None:
    """Raise a DataConfigError naming the ``keys`` of the ``what`` mapping that are not in ``valid``."""
    unknown = set(keys) - set(valid)
    if unknown:
        raise DataConfigError(f"unknown {what} key(s) {sorted(unknown, key=str)}; valid: {', '.join(valid)}")
