"""``python -m tools.hostile`` (or ``python tools/hostile.py``): run the catalogue, print the table.

    python tools/hostile.py                        # every case, 2 at a time, fresh processes
    python tools/hostile.py --only data_loss,nan   # classes, topics, owners (A-D) or case names
    python tools/hostile.py --launcher fork --json hostile.json

Exits with 1 when any case failed (skipped cases are not failures).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .catalogue import select
from .launch import make_launcher
from .model import Outcome
from .runner import case_env, failures, run_cases, table, to_json


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hostile", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--only", default="", help="comma-separated classes, topics, owners or case names")
    p.add_argument("--fast", action="store_true", help="only the cases the test suite runs")
    p.add_argument("--jobs", type=int, default=2, help="cases run at the same time")
    p.add_argument("--launcher", choices=["fresh", "fork"], default="fresh",
                   help="fresh: python -m unetfamily per case; fork: forks of warm servers (no import cost)")
    p.add_argument("--timeout-scale", type=float, default=1.0, help="multiply every case's time limit")
    p.add_argument("--json", type=Path, help="also write every outcome to this JSON file")
    p.add_argument("--by", choices=["klass", "topic", "owner"], default="klass", help="rows of the table")
    p.add_argument("--keep", action="store_true", help="keep each case's folder (printed at the end)")
    p.add_argument("--list", action="store_true", help="list the chosen cases and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="no line per finished case")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cases = select(args.only, args.fast)
    if not cases:
        print(f"no case matches --only {args.only!r}", file=sys.stderr)
        return 2
    if args.list:
        for c in cases:
            print(f"{c.name:<48} {c.klass:<18} {c.topic:<10} {c.owner or '-':<2} {'fast' if c.fast else '    '} "
                  f"unetfamily {' '.join(c.argv)}  -> {c.expect.describe()}")
        print(f"{len(cases)} case(s)")
        return 0
    start = time.monotonic()
    launcher = make_launcher(args.launcher, args.jobs, case_env())
    done = [0]

    def progress(o: Outcome) -> None:
        done[0] += 1
        if not args.quiet:
            print(f"[{done[0]:>3}/{len(cases)}] {o.kind:<14} {o.case.name} ({o.seconds:.1f} s)"
                  + (f": {o.detail}" if o.detail and o.kind != "ok" else ""), flush=True)

    base = Path(tempfile.mkdtemp(prefix="unetfamily-hostile-"))
    try:
        outcomes = run_cases(cases, launcher, args.jobs, base, args.timeout_scale, args.keep, progress)
    finally:
        launcher.close()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    seconds = time.monotonic() - start
    print()
    print(table(outcomes, args.by))
    print()
    print(failures(outcomes))
    print(f"\n{len(outcomes)} case(s) in {seconds:.0f} s with {args.jobs} job(s), {args.launcher} processes"
          + (f"; folders kept in {base}" if args.keep else ""))
    if args.json:
        to_json(outcomes, seconds, args.launcher, args.json)
    return 1 if any(not o.ok for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
