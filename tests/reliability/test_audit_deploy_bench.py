"""Deployment audit: a model that cannot be measured is reported by its cause, not by the worker's traceback."""
from __future__ import annotations

import pytest

from unetfamily.cli import main


def test_bench_failure_names_the_measurement_and_its_cause_without_a_traceback(
        capsys: pytest.CaptureFixture[str]) -> None:
    # A training step on one 1x1 image: BatchNorm has a single value per channel at the bottom and raises.
    args = ["bench", "--models", "unet", "--width", "4", "--size", "1", "--batch", "1", "--repeats", "1",
            "--device", "cpu"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: measuring unet failed: a training step and a forward "
                                                   "pass at input (1, 3, 1, 1)")
    assert "ValueError: Expected more than 1 value per channel when training" in err
    assert "Traceback" not in err and 'File "' not in err
