"""The live table of a parallel comparison: one line per run, read from the runs' ``status.json`` files.

A row's state is ``queued`` (no status written since the comparison started), ``training`` (step/total
and the last validation score from the run's :mod:`~unetfamily.engine.status` file), ``evaluating``
(training finished, the result not yet back), ``done`` or ``failed`` (with its one-line error). On a
terminal ``stream`` the table is redrawn in place; otherwise (and always in the log) each change of
state is one log line, and a summary ends it.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from unetfamily.engine.status import read_status
from unetfamily.text import printable

log = logging.getLogger(__name__)

__all__ = ["RunRow", "LiveTable"]


@dataclass
class RunRow:
    """One run's line: its label and folder, and what the table last knew of it."""

    label: str
    dir: Path
    state: str = "queued"
    step: int | None = None
    total: int | None = None
    score: float | None = None  # the last validation's dice
    node: str = ""
    error: str = ""

    @property
    def final(self) -> bool:
        """The task ended (:meth:`finish`): the status file is no longer read."""
        return self.state in ("done", "failed")

    def finish(self, state: str, error: str = "") -> None:
        """The task ended: ``done`` or ``failed`` (with ``error``)."""
        self.state, self.error = state, printable(error)  # drawn between the table's cursor moves: one line

    def update(self, since: float) -> None:
        """Read the run's status file; statuses older than ``since`` (epoch seconds) are a previous command's."""
        if self.final:
            return
        status = read_status(self.dir)
        if not status or float(status.get("updated", 0)) < since:
            return
        self.step, self.total, self.node = status.get("step"), status.get("total"), str(status.get("host", ""))
        self.score = (status.get("validation") or {}).get("dice")
        self.state = "training" if status.get("state") == "training" else "evaluating"

    def line(self, width: int) -> str:
        progress = f"{self.step}/{self.total}" if self.step is not None else "-"
        score = f"{self.score:.4f}" if isinstance(self.score, float) else "-"
        return f"{self.label:<{width}}  {self.state:<10}  {progress:>11}  {score:>7}  {self.node}  {self.error}".rstrip()


class LiveTable:
    """The rows of a comparison's runs, shown on ``stream`` when it is a terminal, logged otherwise."""

    def __init__(self, rows: list[RunRow], stream: IO[str] | None = None) -> None:
        self.rows, self.stream = rows, stream
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self.since = time.time()
        self.drawn = 0
        self.seen = [row.state for row in rows]

    def __enter__(self) -> LiveTable:
        self.refresh()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.refresh()
        counts = {s: sum(r.state == s for r in self.rows) for s in ("done", "failed")}
        log.info("runs: %d done, %d failed, %d not finished", counts["done"], counts["failed"],
                 len(self.rows) - counts["done"] - counts["failed"])

    def refresh(self) -> None:
        """Read every unfinished run's status; log the changes; redraw on a terminal."""
        width = max((len(r.label) for r in self.rows), default=3)
        for i, row in enumerate(self.rows):
            row.update(self.since)
            if row.state != self.seen[i]:
                self.seen[i] = row.state
                log.info("%s", row.line(width))
        if self.tty:
            self._draw(width)

    def _draw(self, width: int) -> None:
        assert self.stream is not None
        header = f"{'run':<{width}}  {'state':<10}  {'step':>11}  {'dice':>7}  node"
        lines = [header, *(row.line(width) for row in self.rows)]
        up = f"\x1b[{self.drawn}F" if self.drawn else ""
        self.stream.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
        self.stream.flush()
        self.drawn = len(lines)
