"""``unetfamily compare`` (transitional: delegates to unetfamily.compare.runner)."""
from __future__ import annotations

from unetfamily.compare.runner import add_parser

__all__ = ["add_parser"]
