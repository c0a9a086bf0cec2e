"""``unetfamily train`` (transitional: delegates to unetfamily.engine.train)."""
from __future__ import annotations

from unetfamily.engine.train import add_parser

__all__ = ["add_parser"]
