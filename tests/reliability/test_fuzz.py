"""Property-based fuzzing of what reads untrusted input: image, mask and volume readers, the
labelme converter, the config parser and the checkpoint loader.

The property: only the project's documented exceptions (``UnetFamilyError`` subclasses) come
out, never another exception type, a crash or a hang (each case is bounded by
``tools.fuzzing.TIMEOUT_S``). These are the fast variants, derandomised so the suite is stable;
``python tools/fuzz.py`` runs the same targets for longer with random seeds.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from tools.fuzzing import TARGETS

EXAMPLES = {"labelme": 150, "checkpoint_bytes": 100, "checkpoint_metadata": 100}


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow and tifffile warn about the damage they skip
@pytest.mark.parametrize("name", list(TARGETS))
def test_only_documented_errors(name: str, single_thread: None) -> None:
    strategy, target = TARGETS[name]
    outcomes: list[str] = []

    @settings(max_examples=EXAMPLES.get(name, 200), deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def fuzz(case: object) -> None:
        outcomes.append(target(case))

    fuzz()
    assert outcomes, name
