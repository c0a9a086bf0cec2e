"""Run cases (in parallel), judge them, and report: a table per class and the failing cases.

``run_case`` sets a case up in its own folder, runs its command with a time limit, judges the
result (:func:`~.model.judge`) and removes the folder. ``run_cases`` does that for many cases
on ``jobs`` threads, each driving one command process at a time.
"""
from __future__ import annotations

import json
import os
import tempfile
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from .model import CLASSES, FAILURES, Case, Outcome, judge
from .workspace import Ctx, FixtureError, Fixtures, Skip

__all__ = ["case_env", "run_case", "run_cases", "table", "failures", "to_json"]


def case_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every command: ours, one OpenMP thread, no real-data root."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "UNETFAMILY_DATA_ROOT": "/nonexistent/unetfamily-data"}
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return {**env, **(extra or {})}


def run_case(case: Case, launcher: Any, base: Path, fixtures: Fixtures | None = None, timeout_scale: float = 1.0,
             keep: bool = False) -> Outcome:
    """Set up, run and judge one case in ``base/<name>``."""
    ctx = Ctx(base / case.name, fixtures)
    try:
        try:
            if case.setup is not None:
                case.setup(ctx)
        except Skip as exc:
            return Outcome(case, "skipped", str(exc))
        except Exception as exc:  # noqa: BLE001 - a broken setup is reported, not raised
            detail = str(exc) if isinstance(exc, FixtureError) else traceback.format_exc(limit=-2)
            return Outcome(case, "setup_failed", " ".join(detail.split())[-300:])
        try:
            result = launcher.run(list(case.argv), ctx.root, case_env(ctx.env), case.timeout * timeout_scale,
                                  ctx.base / "stdout.txt", ctx.base / "stderr.txt")
        except (OSError, RuntimeError, ValueError) as exc:  # the launcher itself failed, not the command
            return Outcome(case, "setup_failed", f"could not run the command: {exc}")
        kind, detail = judge(case, ctx, result)
        return Outcome(case, kind, detail, result.seconds, result.stderr[-4000:], result.last_line)
    finally:
        ctx.cleanup(keep)


def run_cases(cases: Sequence[Case], launcher: Any, jobs: int = 2, base: Path | None = None,
              timeout_scale: float = 1.0, keep: bool = False,
              progress: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Every case on ``jobs`` threads; outcomes in catalogue order. Shared runs are trained on first use."""
    base = base or Path(tempfile.mkdtemp(prefix="unetfamily-hostile-"))
    fixtures = Fixtures(base / "_fixtures", launcher, case_env())
    outcomes: dict[str, Outcome] = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(run_case, c, launcher, base, fixtures, timeout_scale, keep): c for c in cases}
        for future in as_completed(futures):
            outcome = future.result()
            outcomes[outcome.case.name] = outcome
            if progress:
                progress(outcome)
    return [outcomes[c.name] for c in cases]


def _counts(outcomes: Iterable[Outcome]) -> Counter:
    return Counter(o.kind for o in outcomes)


def table(outcomes: Sequence[Outcome], by: str = "klass") -> str:
    """Cases, ok and each failure kind per class (``by="topic"``/``"owner"``: per topic or owner)."""
    groups: dict[str, list[Outcome]] = {}
    order = CLASSES if by == "klass" else sorted({getattr(o.case, by) or "-" for o in outcomes})
    for o in outcomes:
        groups.setdefault(getattr(o.case, by) or "-", []).append(o)
    kinds = ["ok", *FAILURES, "skipped"]
    head = f"{'class' if by == 'klass' else by:<18}{'cases':>6}" + "".join(f"{k:>{max(len(k), 4) + 2}}" for k in kinds)
    lines = [head, "-" * len(head)]
    for name in [*order, "total"]:
        members = outcomes if name == "total" else groups.get(name, [])
        if not members:
            continue
        counts = _counts(members)
        cells = "".join(f"{counts.get(k, 0):>{max(len(k), 4) + 2}}" for k in kinds)
        lines.append(f"{name:<18}{len(members):>6}{cells}")
    return "\n".join(lines)


def failures(outcomes: Sequence[Outcome], by_owner: bool = True) -> str:
    """The failing cases with what went wrong (their last stderr line), grouped by likely owner."""
    bad = [o for o in outcomes if not o.ok]
    if not bad:
        return "no failing case"
    lines = []
    key = (lambda o: (o.case.owner or "-", o.case.klass, o.case.name)) if by_owner else (lambda o: o.case.name)
    current = None
    for o in sorted(bad, key=key):
        if by_owner and o.case.owner != current:
            current = o.case.owner
            lines.append(f"[owner {current or '-'}]")
        lines.append(f"  {o.case.name} ({o.case.klass}/{o.case.topic}) {o.kind}: {o.detail}")
    return "\n".join(lines)


def to_json(outcomes: Sequence[Outcome], seconds: float, launcher: str, path: Path) -> None:
    """Every outcome and the per-class counts as JSON."""
    data = {
        "launcher": launcher,
        "seconds": round(seconds, 1),
        "counts": {k: dict(_counts(o for o in outcomes if o.case.klass == k)) for k in CLASSES},
        "cases": [
            {"name": o.case.name, "class": o.case.klass, "topic": o.case.topic, "owner": o.case.owner,
             "fast": o.case.fast, "argv": list(o.case.argv), "expect": o.case.expect.describe(), "note": o.case.note,
             "kind": o.kind, "detail": o.detail, "last_line": o.last_line, "seconds": round(o.seconds, 2)}
            for o in outcomes
        ],
    }
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
