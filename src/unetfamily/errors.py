"""The exception types unetfamily raises for bad input and unusable files.

Every error a user can cause (a bad config, a corrupt image, a damaged checkpoint) is a
:class:`UnetFamilyError`, whose message names the file or argument and says what to do; the
command line prints it without a traceback and exits with code 2. Each also subclasses the
builtin it refines (``ValueError`` or ``RuntimeError``) so generic handlers keep working.
"""
from __future__ import annotations

__all__ = ["UnetFamilyError", "ConfigError"]


class UnetFamilyError(Exception):
    """Base of the errors raised for bad user input or unusable files."""


class ConfigError(UnetFamilyError, ValueError):
    """A config file, override or option is invalid; the message names the key and what to do."""
