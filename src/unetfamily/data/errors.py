"""The exceptions the data package raises for bad input.

Every reader wraps the errors of its decoder (Pillow, tifffile, json) into :class:`DataError`, so
callers need to catch one type. Messages name the offending file or option and say what to do.
"""

from __future__ import annotations

from unetfamily.errors import ConfigError as _ConfigError
from unetfamily.errors import UnetFamilyError

__all__ = ["DataConfigError", "DataError"]


class DataError(UnetFamilyError, ValueError):
    """A data file, folder or annotation cannot be used as given (missing, corrupt, wrong values)."""


class DataConfigError(DataError, _ConfigError):
    """A dataset configuration is invalid: unknown ``type``, unknown key, or inconsistent options."""
