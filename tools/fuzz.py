"""Fuzz the readers of untrusted input for longer than the test suite does.

    python tools/fuzz.py                          # 2,000 cases per target, a random seed
    python tools/fuzz.py --examples 20000 --targets labelme,load_config --seed 1

Runs the targets of the ``fuzzing`` package beside this script (image, mask and volume readers,
the labelme converter, the config parser, the checkpoint loader) under hypothesis and prints, per
target, the cases tried and how many ended in each outcome: ``ok`` or a documented error type.
A case that raises anything else, or hangs, is a failure: hypothesis shrinks it, the script
prints the smallest input and the traceback, goes on with the next target, and exits with 1.
"""
from __future__ import annotations

import argparse
import collections
import logging
import random
import sys
import time
import traceback
import warnings

from hypothesis import HealthCheck, given, seed, settings

from fuzzing import TARGETS  # tools/fuzzing/: Python puts this script's folder first on sys.path


def fuzz(name: str, examples: int, seed_value: int) -> tuple[collections.Counter, float, str | None]:
    """Run one target; returns (outcome counts, seconds, failure text or None)."""
    strategy, target = TARGETS[name]
    counts: collections.Counter = collections.Counter()

    @seed(seed_value)
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(case: object) -> None:
        try:
            counts[target(case)] += 1
        except BaseException as exc:
            counts[f"FAILED {type(exc).__name__}"] += 1
            raise

    start = time.perf_counter()
    failure = None
    try:
        run()
    except Exception:  # hypothesis re-raises the shrunk failure
        failure = traceback.format_exc(limit=-8)
    return counts, time.perf_counter() - start, failure


def main(argv: list[str] | None = None) -> int:
    """Fuzz the chosen targets; returns 1 if any of them failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--examples", type=int, default=2000, help="cases per target")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated target names")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (None: a random one, printed)")
    args = parser.parse_args(argv)
    names = [t for t in args.targets.split(",") if t]
    unknown = [t for t in names if t not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    seed_value = args.seed if args.seed is not None else random.randrange(2**32)
    print(f"seed {seed_value}, {args.examples} cases per target")
    warnings.simplefilter("ignore")  # Pillow and tifffile warn about every damaged file they skip
    logging.getLogger("tifffile").setLevel(logging.CRITICAL)
    failed = 0
    print(f"{'target':<20} {'cases':>7} {'seconds':>8}  outcomes")
    for name in names:
        counts, seconds, failure = fuzz(name, args.examples, seed_value)
        outcomes = ", ".join(f"{k} {v}" for k, v in counts.most_common())
        print(f"{name:<20} {sum(counts.values()):>7} {seconds:>8.1f}  {outcomes}", flush=True)
        if failure:
            failed += 1
            print(failure, file=sys.stderr)
    print("all cases ended in ok or a documented error" if not failed else f"{failed} target(s) FAILED")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
