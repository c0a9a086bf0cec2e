"""``unetfamily evaluate`` (transitional: delegates to unetfamily.engine.evaluate)."""
from __future__ import annotations

from unetfamily.engine.evaluate import add_parser

__all__ = ["add_parser"]
