"""Hostile inputs through the command line: the fast part of the catalogue in ``tools/hostile``.

Each case writes tiny files into a fresh folder, runs ``unetfamily ARGV`` once and expects a
clean refusal (exit 2, one ``error:`` line naming the file, flag or key) or a checked success;
a traceback, a hang, an exit 0 where a refusal was due, a changed user file or a message
without the names is a failure (``tools/hostile/model.py``). The suite runs the cases flagged
``fast`` (refused before any training; ``tools/hostile/catalogue.py``), two at a time, forked
from warm processes that have imported the package once; ``python tools/hostile.py`` runs all
of them in fresh processes.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tools.hostile import FAST_CASES, Case, Ctx, ForkLauncher, Result, case_env, judge, run_cases
from tools.hostile.model import either, refused, succeeds

BY_NAME = {c.name: c for c in FAST_CASES}


@pytest.fixture(scope="module")
def outcomes(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The outcomes of the selected cases of this module, run together on two warm processes."""
    wanted = [item.callspec.params["name"] for item in request.session.items
              if item.module is request.module and hasattr(item, "callspec") and "name" in item.callspec.params]
    launcher = ForkLauncher(2, case_env(), warm="core")
    try:
        done = run_cases([BY_NAME[n] for n in wanted], launcher, jobs=2, base=tmp_path_factory.mktemp("hostile"))
    finally:
        launcher.close()
    return {o.case.name: o for o in done}


@pytest.mark.parametrize("name", list(BY_NAME))
def test_hostile_case(name: str, outcomes: dict) -> None:
    outcome = outcomes[name]
    if outcome.kind == "skipped":
        pytest.skip(outcome.detail)
    case = outcome.case
    assert outcome.kind == "ok", (
        f"{outcome.kind}: {outcome.detail}\n  unetfamily {' '.join(case.argv)}\n  expected {case.expect.describe()}"
        f"\n--- stderr (tail) ---\n{outcome.stderr_tail[-2500:]}"
    )


# --- the judge itself, on made-up results --------------------------------------------------------

def _judge(expect, rc: int | None, stderr: str = "", stdout: str = "", hang: bool = False, tmp: Path | None = None,
           change: bool = False) -> str:
    ctx = Ctx(tmp)
    ctx.text("mine.txt", "mine\n")
    ctx.protect("mine.txt")
    if change:
        ctx.text("mine.txt", "overwritten\n")
    case = Case("made_up", "unclear", "messages", ("train",), expect)
    return judge(case, ctx, Result(rc, stdout, stderr, 0.1, hang))[0]


@pytest.mark.parametrize("expect, rc, stderr, hang, change, kind", [
    (refused("c.yaml"), 2, "INFO x\nerror: config file c.yaml is not valid YAML\n", False, False, "ok"),
    (refused("--seeds"), 2, "usage: unetfamily compare ...\nunetfamily compare: error: argument --seeds: bad\n",
     False, False, "ok"),
    (refused(("--lr", "optim.lr")), 2, "error: optim.lr=-1 must be positive\n", False, False, "ok"),
    (refused("c.yaml"), 2, "error: something is wrong\n", False, False, "unclear"),
    (refused("c.yaml"), 2, "error: c.yaml: bad\nerror: c.yaml: bad again\n", False, False, "unclear"),
    (refused("c.yaml"), 2, "error: c.yaml: bad\n  ^\n", False, False, "unclear"),
    (refused("c.yaml"), 1, "Traceback (most recent call last):\nValueError: x\n", False, False, "traceback"),
    (refused("c.yaml"), -9, "", False, False, "traceback"),
    (refused("c.yaml"), None, "", True, False, "hang"),
    (refused("c.yaml"), 0, "", False, False, "silently_wrong"),
    (refused("c.yaml"), 2, "error: c.yaml: refused\n", False, True, "data_lost"),
    (succeeds(), 0, "", False, True, "data_lost"),
    (succeeds(), 2, "error: c.yaml: refused\n", False, False, "refused"),
    (succeeds(lambda ctx, result: "the run stopped at step 2, not 4"), 0, "", False, False, "silently_wrong"),
    (either("c.yaml"), 0, "", False, False, "ok"),
    (either("c.yaml"), 2, "error: c.yaml: refused\n", False, False, "ok"),
])
def test_judge_tells_each_outcome_apart(expect, rc, stderr, hang, change, kind, tmp_path: Path) -> None:
    assert _judge(expect, rc, stderr, hang=hang, tmp=tmp_path, change=change) == kind
