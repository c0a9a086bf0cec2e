"""A replayable catalogue of hostile inputs and faults, each tried through the ``unetfamily`` command line.

Issue 13 ("nothing silently wrong, nothing lost") asks that every bad input a new user can
give, with tiny configs, ends in one of two ways: a clean refusal (exit code 2, one ``error:``
line naming the file, flag or key to fix) or a correct result; never a traceback, a hang, a
silently wrong result or a lost file. :data:`CASES` lists such inputs, grouped by the issue's
classes (:data:`CLASSES`: data_loss, silently_wrong, traceback_or_hang, unclear) and by topic;
each writes a few 32 px files into a fresh folder, runs one command and states what must happen
(:mod:`.model`). :func:`run_cases` runs them and :func:`table` summarises the outcomes.

Used by ``tests/reliability/test_hostile_cases.py`` (the ``fast`` cases, imported as
``tools.hostile``) and by ``python tools/hostile.py`` / ``python -m tools.hostile`` (all of them).
"""
from __future__ import annotations

from .catalogue import CASES, FAST_CASES, select
from .launch import ForkLauncher, FreshLauncher, make_launcher
from .model import CLASSES, FAILURES, KINDS, Case, Expect, Outcome, Result, either, judge, refused, succeeds
from .runner import case_env, failures, run_case, run_cases, table, to_json
from .workspace import Ctx, Fixtures

__all__ = ["CASES", "FAST_CASES", "CLASSES", "KINDS", "FAILURES", "Case", "Expect", "Outcome", "Result", "Ctx",
           "Fixtures", "ForkLauncher", "FreshLauncher", "make_launcher", "refused", "succeeds", "either", "judge",
           "select", "case_env", "run_case", "run_cases", "table", "failures", "to_json"]
