"""``unetfamily export`` (transitional: delegates to unetfamily.engine.export)."""
from __future__ import annotations

from unetfamily.engine.export import add_parser

__all__ = ["add_parser"]
