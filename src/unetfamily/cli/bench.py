"""``unetfamily bench`` (transitional: delegates to unetfamily.bench)."""
from __future__ import annotations

from unetfamily.bench import add_parser

__all__ = ["add_parser"]
