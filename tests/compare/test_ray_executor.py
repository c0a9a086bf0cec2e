"""``compare --executor ray`` on a local Ray instance with 2 CPUs: the same results as the local executor, a killed
worker retried and resumed from its checkpoint, a failing run reported without retries while the others finish."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from unetfamily.cli import main
from unetfamily.compare.config import CompareConfig
from unetfamily.compare.ray_executor import ATTEMPTS, resources
from unetfamily.engine.status import read_status
from unetfamily.errors import ConfigError

ray = pytest.importorskip("ray", reason="the Ray executor needs the optional 'ray' extra (pip install 'unetfamily[ray]')")

COMMON = ["--models", "unet,fcn8s", "--size", "32", "--batch-size", "4", "--base-width", "4", "--lr", "0.005",
          "--augment", "none", "--no-costs"]


@pytest.fixture(scope="module")
def ray_cluster() -> object:
    """One local Ray instance with 2 CPUs for the module (compare joins it instead of starting its own)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def runs_of(out: Path) -> dict[tuple[str, int], dict]:
    return {(r["variant"], r["seed"]): r for r in json.loads((out / "results.json").read_text())["runs"]}


def same(a: dict, b: dict) -> bool:
    keys = ("steps", "test", "per_image", "history")
    return json.dumps({k: a[k] for k in keys}, sort_keys=True) == json.dumps({k: b[k] for k in keys}, sort_keys=True)


def test_ray_gives_the_local_executors_results(ray_cluster: object, tiny_data: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["compare", "--data", str(tiny_data), *COMMON, "--models", "fcn8s,unet", "--seeds", "2", "--steps", "8"]
    assert main([*args, "--executor", "ray", "--cpus-per-run", "1", "--out", str(tmp_path / "ray")]) == 0
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # each Ray task trained with 1 thread: the same arithmetic
    try:
        assert main([*args, "--out", str(tmp_path / "local")]) == 0
    finally:
        torch.set_num_threads(threads)
    by_ray, local = runs_of(tmp_path / "ray"), runs_of(tmp_path / "local")
    assert set(by_ray) == {(m, s) for m in ("unet", "fcn8s") for s in (0, 1)} == set(local)
    assert all(same(by_ray[k], local[k]) for k in local)
    run = tmp_path / "ray" / "runs" / "unet" / "seed0"
    assert read_status(run)["state"] == "finished" and len((run / ATTEMPTS).read_text().splitlines()) == 1
    # the first warm worker estimated the runs' work: with 2 slots, the 2 U-Net runs (more MACs, listed last)
    # started first
    started = {k: (tmp_path / "ray" / "runs" / k[0] / f"seed{k[1]}" / ATTEMPTS).stat().st_mtime for k in local}
    assert max(started[("unet", s)] for s in (0, 1)) < min(started[("fcn8s", s)] for s in (0, 1))


def _kill_when_checkpointed(run: Path, killed: list[int], deadline: float) -> None:
    """Kill the process training ``run`` once its first checkpoint exists (its pid is in status.json)."""
    while time.monotonic() < deadline:
        status = read_status(run)
        if status and (run / "checkpoints" / "last.safetensors").is_file() and status["step"] < status["total"]:
            os.kill(status["pid"], signal.SIGKILL)
            killed.append(status["step"])
            return
        time.sleep(0.005)


def test_a_killed_worker_is_retried_and_resumes_to_the_same_result(ray_cluster: object, tiny_data: Path,
                                                                   tmp_path: Path) -> None:
    args = ["compare", "--data", str(tiny_data), *COMMON, "--models", "unet", "--seeds", "1", "--steps", "120",
            "--executor", "ray", "--cpus-per-run", "1"]
    out, killed = tmp_path / "killed", []
    run = out / "runs" / "unet" / "seed0"
    killer = threading.Thread(target=_kill_when_checkpointed, args=(run, killed, time.monotonic() + 120), daemon=True)
    killer.start()
    assert main([*args, "--out", str(out)]) == 0
    killer.join()
    assert killed, "the run finished before its worker could be killed"
    attempts = (run / ATTEMPTS).read_text().splitlines()
    assert [a.split()[-1] for a in attempts] == ["start", "resume"]  # retried from the checkpoint, not from scratch
    assert attempts[0].split()[-2] != attempts[1].split()[-2]  # in a new process
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    assert same(runs_of(out)[("unet", 0)], runs_of(tmp_path / "whole")[("unet", 0)])


def test_a_failing_run_is_reported_not_retried_and_the_others_finish(ray_cluster: object, tiny_data: Path,
                                                                     tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "bad"
    args = ["compare", "--data", str(tiny_data), *COMMON, "--steps", "4", "--executor", "ray", "--cpus-per-run", "1",
            "--out", str(out)]
    assert main([*args, "--seeds", "1"]) == 0
    damaged = out / "runs" / "fcn8s" / "seed0"
    (damaged / "result.json").unlink()
    (damaged / "checkpoints" / "last.safetensors").write_bytes(b"not a checkpoint")  # as a failing disk leaves it
    assert main([*args, "--seeds", "2"]) == 1
    captured = capsys.readouterr()
    assert "failed: fcn8s seed 0" in captured.err and "1 run(s) failed" in captured.err
    assert len((damaged / ATTEMPTS).read_text().splitlines()) == 2  # the first command's and one more: no retry
    results = json.loads((out / "results.json").read_text())
    assert [m["label"] for m in results["missing"]] == ["fcn8s seed 0"] and "heckpoint" in results["missing"][0]["error"]
    assert {(r["variant"], r["seed"]) for r in results["runs"]} == {("unet", 0), ("unet", 1)}  # both unet runs
    assert (out / "runs" / "fcn8s" / "seed1" / "result.json").is_file()  # the other fcn8s run trained too
    assert "Missing runs" in (out / "report.md").read_text()


def test_resources_fill_the_machine_and_refuse_what_cannot_run() -> None:
    cpu = CompareConfig(executor="ray")
    assert resources(cpu, {"CPU": 8}, runs=3).cpus == 2  # 8 CPUs over 3 runs
    assert resources(cpu, {"CPU": 2}, runs=8).cpus == 1
    gpu = CompareConfig(executor="ray", device="cuda")
    assert resources(gpu, {"CPU": 16, "GPU": 4}, runs=8) == resources(gpu, {"CPU": 16, "GPU": 4}, runs=2)
    assert resources(gpu, {"CPU": 16, "GPU": 4}, runs=8).cpus == 4 and resources(gpu, {"CPU": 16, "GPU": 4}, 8).gpus == 1
    with pytest.raises(ConfigError, match="has 0 GPUs"):
        resources(gpu, {"CPU": 16}, runs=2)
    with pytest.raises(ConfigError, match="more than the Ray cluster's 2 CPUs"):
        resources(CompareConfig(executor="ray", cpus_per_run=4), {"CPU": 2}, runs=2)
    with pytest.raises(ConfigError, match="only act with --executor ray"):
        CompareConfig(cpus_per_run=2)
    with pytest.raises(ConfigError, match="--gpus-per-run 0"):
        CompareConfig(executor="ray", device="cuda", gpus_per_run=0)
