"""``status.json`` in a run folder: where a training run is, readable by anyone who can see the folder.

The main process of every run writes ``{"state", "step", "total", "validation", "host", "pid", "updated"}``
atomically: at the start, at most every :data:`EVERY` seconds while it trains, after each validation and
at the end (``state``: ``training``, ``finished`` or ``stopped``). A driver that spreads runs over
processes or machines (``compare --executor ray``) reads these files from the shared run folders for its
live table; ``pid`` and ``host`` say which process to look at when a run seems stuck.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from unetfamily.errors import UnetFamilyError
from unetfamily.files import atomic_write, dump_json

log = logging.getLogger(__name__)

__all__ = ["EVERY", "STATUS_FILE", "RunProgress", "read_status"]

STATUS_FILE = "status.json"
#: Seconds between two writes while training (validations and the end are always written).
EVERY = 2.0


def read_status(run_dir: str | Path) -> dict[str, Any] | None:
    """The run folder's status, or None when it has none (yet) or it cannot be read right now."""
    import json

    try:
        return json.loads((Path(run_dir) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None


class RunProgress:
    """The training loop's progress sink: forwards steps to a tqdm ``bar`` (or None) and keeps ``status.json``.

    ``run_dir`` None (a DDP rank other than 0): only the bar, which is None there too.
    """

    def __init__(self, run_dir: Path | None, step: int, total: int, bar: Any = None,
                 validation: dict[str, Any] | None = None) -> None:
        self.path = None if run_dir is None else Path(run_dir) / STATUS_FILE
        self.bar, self.step, self.total = bar, step, total
        # a resumed run starts from its last validation (the checkpoint's history), not from none
        self.validation: dict[str, float] = {k: float(v) for k, v in (validation or {}).items() if isinstance(v, float)}
        self.written = 0.0
        self._write("training")

    def update(self, steps: int = 1) -> None:
        """``steps`` more optimiser steps were made."""
        self.step += steps
        if self.bar is not None:
            self.bar.update(steps)
        if time.monotonic() - self.written >= EVERY:
            self._write("training")

    @property
    def shows_postfix(self) -> bool:
        """Whether :meth:`set_postfix` shows anything (a bar): the loop reads the loss (a device sync) only then."""
        return self.bar is not None

    def set_postfix(self, **values: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix(**values)

    def validated(self, step: int, metrics: dict[str, Any]) -> None:
        """A validation at ``step`` gave ``metrics`` (its float scores are kept)."""
        self.step = step
        self.validation = {k: float(v) for k, v in metrics.items() if isinstance(v, float)}
        self._write("training")

    def close(self, state: str = "finished") -> None:
        if self.bar is not None:
            self.bar.close()
        self._write(state)

    def _write(self, state: str) -> None:
        if self.path is None:
            return
        self.written = time.monotonic()
        status = {"state": state, "step": self.step, "total": self.total, "validation": self.validation,
                  "host": socket.gethostname(), "pid": os.getpid(), "updated": time.time()}
        try:
            data = dump_json(status, indent=None).encode()
            atomic_write(self.path, lambda f: f.write(data), durable=False)  # rewritten every few seconds
        except (OSError, UnetFamilyError) as exc:  # a status is a courtesy: never stop training for it
            log.debug("could not write %s (%s)", self.path, exc)
