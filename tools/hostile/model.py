"""What a hostile case is, what it expects, and how one run of it is judged.

A :class:`Case` writes a few tiny files (``setup``), runs ``unetfamily ARGV`` once in a fresh
folder and states an :class:`Expect`: a refusal (exit code 2, one ``error:`` line last on
stderr that names what the user must fix), a success whose result a check inspects, or either
of the two. Files the user owns are snapshotted before the run (``ctx.protect``) and compared
after it, whatever the exit code.

:func:`judge` turns the run into one outcome kind (:data:`KINDS`) and a one-line detail.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from .workspace import Ctx

__all__ = ["CLASSES", "KINDS", "FAILURES", "Case", "Expect", "Result", "Outcome", "refused", "succeeds", "either",
           "judge", "error_lines"]

#: The issue's four classes of problem, in report order.
CLASSES = ("data_loss", "silently_wrong", "traceback_or_hang", "unclear")
#: Outcome kinds: ``ok`` and the failures, then the two kinds that are neither (a case that
#: could not be set up here, or needs what this machine lacks).
KINDS = ("ok", "traceback", "hang", "silently_wrong", "data_lost", "unclear", "refused", "setup_failed", "skipped")
FAILURES = KINDS[1:-1]

#: An ``error:`` line: ours (``error: ...``) or argparse's (``unetfamily train: error: ...``).
ERROR_LINE = re.compile(r"^(unetfamily(?: [\w-]+)*: )?error: ")
TRACEBACK = "Traceback (most recent call last)"

Fragment = Union[str, tuple[str, ...]]  # a tuple: any one of its strings will do
Check = Callable[["Ctx", "Result"], Union[str, None]]  # returns what is wrong, or None


@dataclass(frozen=True)
class Expect:
    """``refuse``: True (must be refused), False (must succeed) or None (either is right).

    ``fragments`` must all occur in the error line of a refusal (case-insensitive); a tuple
    among them is satisfied by any one of its strings. ``check`` runs after a success, and
    after a refusal when ``check_refusal`` is set (e.g. "nothing was trained before it").
    """

    refuse: bool | None
    fragments: tuple[Fragment, ...] = ()
    check: Check | None = None
    check_refusal: bool = False

    def describe(self) -> str:
        frags = ", ".join("|".join(f) if isinstance(f, tuple) else f for f in self.fragments)
        what = {True: "refused", False: "succeeds", None: "refused or succeeds"}[self.refuse]
        return f"{what}({frags})" if frags else what


def refused(*fragments: Fragment, check: Check | None = None) -> Expect:
    """Exit 2 with one ``error:`` line, last on stderr, holding every fragment; ``check`` then holds too."""
    return Expect(True, fragments, check, check_refusal=check is not None)


def succeeds(check: Check | None = None) -> Expect:
    """Exit 0, and ``check`` finds nothing wrong with the result."""
    return Expect(False, (), check)


def either(*fragments: Fragment, check: Check | None = None, check_refusal: bool = False) -> Expect:
    """A clean refusal naming ``fragments``, or a success that passes ``check``."""
    return Expect(None, fragments, check, check_refusal)


@dataclass(frozen=True)
class Case:
    """One hostile input or fault, tried through the command line."""

    name: str
    klass: str  # one of CLASSES
    topic: str  # finer group: budget, nan, ranges, options, disk, special, malformed, names, numbers, data, ...
    argv: Sequence[str]
    expect: Expect
    setup: Callable[["Ctx"], Any] | None = None
    fast: bool = False  # refused before any training: part of the test suite's subset
    owner: str = ""  # the helper whose fix it tests (A, B, C, D), for the report
    timeout: float = 120.0
    note: str = ""


@dataclass
class Result:
    """How one run of the command line ended."""

    rc: int | None
    stdout: str
    stderr: str
    seconds: float
    hang: bool = False

    @property
    def last_line(self) -> str:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1].strip() if lines else ""


@dataclass
class Outcome:
    """One case's verdict."""

    case: Case
    kind: str
    detail: str = ""
    seconds: float = 0.0
    stderr_tail: str = field(default="", repr=False)
    last_line: str = ""  # the last line on stderr (the error line of a refusal)

    @property
    def ok(self) -> bool:
        return self.kind in ("ok", "skipped")


def error_lines(text: str) -> list[str]:
    """The ``error:`` lines of ``text``."""
    return [line for line in text.splitlines() if ERROR_LINE.match(line)]


def _missing(fragments: Sequence[Fragment], message: str) -> list[str]:
    low = message.lower()
    missing = []
    for fragment in fragments:
        options = fragment if isinstance(fragment, tuple) else (fragment,)
        if not any(o.lower() in low for o in options):
            missing.append("|".join(options))
    return missing


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def judge(case: Case, ctx: Ctx, result: Result) -> tuple[str, str]:
    """(kind, detail) of one run; see the module docstring and :data:`KINDS`."""
    if result.hang:
        return "hang", f"still running after {result.seconds:.0f} s, killed"
    if TRACEBACK in result.stderr or TRACEBACK in result.stdout or (result.rc or 0) < 0:
        return "traceback", _short(result.last_line or f"killed by signal {-(result.rc or 0)}")
    lost = ctx.changed()
    if lost:
        return "data_lost", _short(f"exit {result.rc}; user files changed or gone: {', '.join(lost[:5])}")
    expect = case.expect
    if result.rc == 0:
        if expect.refuse:
            out = [line for line in result.stdout.splitlines() if line.strip()]
            said = out[-1] if out else result.last_line
            return "silently_wrong", _short(f"exit 0 where a refusal was expected; {said}")
        problem = expect.check(ctx, result) if expect.check else None
        return ("silently_wrong", _short(problem)) if problem else ("ok", "")
    return _judge_failure(case, ctx, result)


def _judge_failure(case: Case, ctx: Ctx, result: Result) -> tuple[str, str]:
    expect, last = case.expect, result.last_line
    if result.rc != 2 or not ERROR_LINE.match(last):
        return "unclear", _short(f"exit {result.rc}, last stderr line: {last or '(none)'}")
    if expect.refuse is False:
        return "refused", _short(last)
    errors = error_lines(result.stderr)
    if len(errors) > 1:
        return "unclear", _short(f"{len(errors)} error lines; last: {last}")
    missing = _missing(expect.fragments, last)
    if missing:
        return "unclear", _short(f"lacks {missing}: {last}")
    if expect.check_refusal and expect.check:
        problem = expect.check(ctx, result)
        if problem:
            return "silently_wrong", _short(f"refused, but {problem}")
    return "ok", ""
