"""An interrupted ``unetfamily compare`` resumes without duplicating, losing or retraining runs.

The comparison is SIGKILLed in the middle of its second training run (``faulty_cli.py`` blocks
that run's second step), then run again: the finished run is read back, not retrained, its
result file is untouched, and results.json holds every (variant, seed) exactly once.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import unetfamily.compare.runner as runner
import unetfamily.engine.train as train_mod
from tests.compare.conftest import nan_to_none
from tests.reliability.conftest import finish, start_faulty, wait_for
from unetfamily.cli import main

ARGS = ["compare", "--data", "synthetic", "--models", "unet,fcn8s", "--seeds", "2", "--steps", "3", "--size", "32",
        "--batch-size", "16", "--base-width", "4", "--lr", "0.005", "--augment", "none"]


def test_sigkilled_compare_resumes_without_duplicates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      single_thread: None) -> None:
    out, marker = tmp_path / "report", tmp_path / "reached"
    proc = start_faulty([*ARGS, "--out", str(out)], "between:5", marker)  # step 2 of (unet, seed 1)
    wait_for(marker, proc)
    proc.kill()
    finish(proc, 60)
    runs = out / "runs"
    finished = runs / "unet" / "seed0" / "result.json"
    before = finished.read_bytes()
    assert not (runs / "unet" / "seed1" / "result.json").exists() and not (out / "results.json").exists()

    trained = []
    real_fit = train_mod.fit

    def spy(cfg, resume=False, overwrite=False):  # noqa: ANN001, ANN202
        trained.append(Path(cfg.output_dir).relative_to(runs).as_posix())
        return real_fit(cfg, resume=resume, overwrite=overwrite)

    monkeypatch.setattr(train_mod, "fit", spy)
    cost = {"params": 1, "macs": 1, "latency_ms": 1.0, "throughput": 1.0, "train_step_ms": 1.0, "peak_memory_mb": 1.0}
    monkeypatch.setattr(runner, "_costs", lambda *a, **k: cost)  # timing subprocesses: not what is tested here
    assert main([*ARGS, "--out", str(out)]) == 0

    assert trained == ["unet/seed1", "fcn8s/seed0", "fcn8s/seed1"]  # unet seed 0 was not retrained
    assert finished.read_bytes() == before
    results = json.loads((out / "results.json").read_text())
    pairs = [(r["variant"], r["seed"]) for r in results["runs"]]
    assert sorted(pairs) == sorted({(v, s) for v in ("unet", "fcn8s") for s in (0, 1)})  # each exactly once
    assert all(r["steps"] == 3 for r in results["runs"])
    reread = next(r for r in results["runs"] if (r["variant"], r["seed"]) == ("unet", 0))
    assert nan_to_none(json.loads(before)) == nan_to_none(reread)  # results.json writes NaN as null
