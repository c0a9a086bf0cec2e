"""``unetfamily dataset`` (transitional: delegates to unetfamily.data.cli)."""
from __future__ import annotations

from unetfamily.data.cli import add_parser

__all__ = ["add_parser"]
