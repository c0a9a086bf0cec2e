"""``unetfamily predict`` (transitional: delegates to unetfamily.engine.predict)."""
from __future__ import annotations

from unetfamily.engine.predict import add_parser

__all__ = ["add_parser"]
