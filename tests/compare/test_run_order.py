"""The Ray executor's run order: estimated work (MACs x images), longest first, at most as many at once as fit.

The scheduling is tested against a fake Ray (``wait`` returns what the test ends), so the order and the
number in flight are exact; ``test_ray_executor.py`` runs the real thing."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import unetfamily.compare.run_order as run_order
from unetfamily.compare.live import LiveTable, RunRow
from unetfamily.compare.plan import PlannedRun
from unetfamily.compare.ray_executor import Resources, _collect, _slots
from unetfamily.compare.results import RunResult
from unetfamily.compare.run_order import estimated_work, longest_first
from unetfamily.compare.variants import Variant
from unetfamily.config import Config, LoaderConfig, TrainConfig

SHAPE = (3, 32, 32)


def planned(model: str, kwargs: dict[str, Any], batch: int = 2, max_steps: int | None = 10,
            epochs: int = 10, steps_per_epoch: int | None = None, vid: str | None = None) -> PlannedRun:
    config = Config(loader=LoaderConfig(batch_size=batch),
                    train=TrainConfig(max_steps=max_steps, epochs=epochs, steps_per_epoch=steps_per_epoch))
    variant = Variant(vid or model, model, model, model, kwargs)
    return PlannedRun(variant, 0, SimpleNamespace(index=0), Path("run"), config, {}, True)


def narrow(base: int) -> dict[str, Any]:
    return {"channels": [base, 2 * base, 4 * base]}


def test_work_is_macs_times_images_and_grows_with_width_batch_and_steps() -> None:
    small, wide = planned("unet", narrow(4)), planned("unet", narrow(8), vid="wide")
    bigger_batch = planned("unet", narrow(4), batch=4, vid="b4")
    longer = planned("unet", narrow(4), max_steps=30, vid="long")
    work = estimated_work([small, wide, bigger_batch, longer], SHAPE, 1)
    assert work[1] / work[0] == pytest.approx(4, rel=0.1)  # twice the width: ~4x the MACs
    assert work[2] == pytest.approx(2 * work[0]) and work[3] == pytest.approx(3 * work[0])
    assert work[0] == pytest.approx(run_order._macs(small, SHAPE, 1) * 2 * 10)


def test_steps_of_each_budget_form() -> None:
    assert run_order._steps(planned("unet", {}, max_steps=7).config) == 7
    assert run_order._steps(planned("unet", {}, max_steps=None, epochs=3).config) == 3  # x the data's length
    assert run_order._steps(planned("unet", {}, max_steps=None, epochs=3, steps_per_epoch=5).config) == 15
    assert run_order._steps(planned("unet", {}, max_steps=7, epochs=3, steps_per_epoch=5).config) == 7
    assert run_order._steps(planned("unet", {}, max_steps=70, epochs=3, steps_per_epoch=5).config) == 15


def test_the_families_order_as_their_costs_and_each_variant_is_counted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    runs = [planned(m, narrow(4)) for m in ("unet", "unet_3plus", "unet_plusplus") for _ in range(2)]
    counted: list[str] = []
    real = run_order._macs
    monkeypatch.setattr(run_order, "_macs", lambda run, *a: counted.append(run.variant.id) or real(run, *a))
    work = estimated_work(runs, SHAPE, 1)
    assert sorted(counted) == ["unet", "unet_3plus", "unet_plusplus"]
    assert [runs[i].variant.id for i in longest_first(work)][::2] == ["unet_3plus", "unet_plusplus", "unet"]


def test_an_encoders_weight_file_is_not_read_to_count(tmp_path: Path) -> None:
    run = planned("unet", {"encoder": "resnet18", "encoder_depth": 3,
                           "encoder_weights": str(tmp_path / "absent.safetensors")})
    assert estimated_work([run], SHAPE, 1)[0] > 0


def test_a_model_that_cannot_be_counted_starts_first(monkeypatch: pytest.MonkeyPatch) -> None:
    runs = [planned("unet", narrow(4)), planned("unet", narrow(8), vid="odd")]

    def fail(run: PlannedRun, *a: Any) -> int:
        if run.variant.id == "odd":
            raise NotImplementedError("no meta kernel")
        return 5

    monkeypatch.setattr(run_order, "_macs", fail)
    assert longest_first(estimated_work(runs, SHAPE, 1)) == [1, 0]


def test_longest_first_keeps_the_listed_order_of_equal_work() -> None:
    assert longest_first([1.0, 3.0, 1.0, 3.0, 2.0]) == [1, 3, 4, 0, 2]


def test_slots_of_a_node() -> None:
    cpu = Resources(2, 0.0, "cpu")
    assert _slots({"CPU": 5.0}, cpu) == 2 and _slots({"CPU": 1.0}, cpu) == 0
    gpu = Resources(4, 0.5, "cuda")
    assert _slots({"CPU": 16.0, "GPU": 1.0}, gpu) == 2  # two half-GPU runs, CPUs to spare
    assert _slots({"CPU": 6.0, "GPU": 4.0}, gpu) == 1  # the CPUs bound it
    assert _slots({"CPU": 64.0}, gpu) == 0  # a CPU-only node takes no GPU run


class FakeRay:
    """``wait`` ends the oldest task in flight; records the submissions and the most in flight at once."""

    def __init__(self, fail: set[int] = frozenset(), interrupt_after: int | None = None) -> None:
        self.submitted: list[int] = []
        self.flight: list[int] = []
        self.most = 0
        self.cancelled: list[int] = []
        self.fail, self.interrupt_after, self.waits = fail, interrupt_after, 0

    def submit(self, i: int) -> int:
        self.submitted.append(i)
        self.flight.append(i)
        self.most = max(self.most, len(self.flight))
        return i

    def wait(self, refs: list[int], num_returns: int, timeout: float) -> tuple[list[int], list[int]]:
        self.waits += 1
        if self.interrupt_after is not None and self.waits > self.interrupt_after:
            raise KeyboardInterrupt
        done = self.flight.pop(0)
        return [done], [r for r in refs if r != done]

    def get(self, ref: int) -> dict[str, Any]:
        if ref in self.fail:
            raise ValueError(f"bad data in run {ref}\nmore lines")
        return {"ref": ref}

    def cancel(self, ref: int, force: bool) -> None:
        self.cancelled.append(ref)


@pytest.fixture()
def runs(tmp_path: Path) -> list[PlannedRun]:
    return [replace(planned("unet", {}, vid=f"v{i}"), dir=tmp_path / f"r{i}") for i in range(5)]


def _table(runs: list[PlannedRun]) -> LiveTable:
    return LiveTable([RunRow(r.label, r.dir) for r in runs])


def test_runs_start_in_the_given_order_no_more_at_once_than_fit(runs: list[PlannedRun],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RunResult, "from_dict", staticmethod(lambda d: d["ref"]))
    ray = FakeRay(fail={4})
    results, failures = _collect(ray, runs, [3, 1, 4, 0, 2], ray.submit, lambda: 2, _table(runs))
    assert ray.submitted == [3, 1, 4, 0, 2] and ray.most == 2
    assert results == [0, 1, 2, 3, None]  # in run order, whatever order they ran in
    assert [f.label for f in failures] == [runs[4].label] and failures[0].error == "ValueError: bad data in run 4"


def test_more_runs_start_when_the_cluster_grows(runs: list[PlannedRun], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RunResult, "from_dict", staticmethod(lambda d: d["ref"]))
    ray, sizes = FakeRay(), iter([1, 1, 3, 3, 3, 3])
    _collect(ray, runs, list(range(5)), ray.submit, lambda: next(sizes), _table(runs))
    assert ray.most == 3 and ray.submitted == list(range(5))


def test_an_interrupt_cancels_the_running_and_submits_no_more(runs: list[PlannedRun],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RunResult, "from_dict", staticmethod(lambda d: d["ref"]))
    ray = FakeRay(interrupt_after=1)
    with pytest.raises(KeyboardInterrupt, match="run the same command again"):
        _collect(ray, runs, list(range(5)), ray.submit, lambda: 2, _table(runs))
    assert ray.submitted == [0, 1, 2] and sorted(ray.cancelled) == [1, 2]


def test_the_unfinished_runs_are_stated_as_demand_and_cleared_at_the_end(runs: list[PlannedRun],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RunResult, "from_dict", staticmethod(lambda d: d["ref"]))
    ray, stated = FakeRay(), []
    _collect(ray, runs, list(range(5)), ray.submit, lambda: 2, _table(runs), stated.append)
    assert stated == [5, 4, 3, 2, 1, 0]
    ray, stated = FakeRay(interrupt_after=1), []
    with pytest.raises(KeyboardInterrupt):
        _collect(ray, runs, list(range(5)), ray.submit, lambda: 2, _table(runs), stated.append)
    assert stated == [5, 4, 0]


def test_demand_reaches_the_autoscaler_only_when_joining_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray", reason="the Ray executor needs the optional 'ray' extra")
    import ray.autoscaler.sdk as sdk

    from unetfamily.compare.config import CompareConfig
    from unetfamily.compare.ray_executor import RayExecutor

    requests: list[list[dict[str, float]]] = []
    monkeypatch.setattr(sdk, "request_resources", lambda bundles: requests.append(bundles))
    joined = RayExecutor(CompareConfig(executor="ray", ray_address="auto"), Path("out"), 3)
    joined.res = Resources(2, 0.5, "cuda")
    joined.demand(3)
    joined.demand(0)
    assert requests == [[{"CPU": 2.0, "GPU": 0.5}] * 3, []]
    local = RayExecutor(CompareConfig(executor="ray"), Path("out"), 3)
    local.res = Resources(1, 0.0, "cpu")
    local.demand(3)
    assert len(requests) == 2


def test_the_warm_up_task_imports_the_run_code_estimates_the_work_and_never_raises(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sys

    from unetfamily.compare.ray_executor import _warm_up

    runs = [replace(planned("unet", narrow(4)), dir=tmp_path / "a"), replace(planned("unet", narrow(8)), dir=tmp_path / "b")]
    assert _warm_up() == (None, None)
    assert _warm_up((runs, SHAPE, 1)) == (None, estimated_work(runs, SHAPE, 1))
    monkeypatch.setitem(sys.modules, "unetfamily.compare.run", None)  # the import fails as on a broken node
    error, work = _warm_up((runs, SHAPE, 1))
    assert "unetfamily.compare.run" in error and work is None


def test_the_driver_estimates_the_work_when_the_first_warm_up_could_not(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray", reason="the Ray executor needs the optional 'ray' extra")
    import ray.autoscaler.sdk as sdk

    from unetfamily.compare.config import CompareConfig
    from unetfamily.compare.ray_executor import RayExecutor

    class Answers:
        def __init__(self, answer: object) -> None:
            self.answer = answer

        def wait(self, refs: list[str], timeout: float) -> tuple[list[str], list[str]]:
            return ([], refs) if self.answer is None else (refs, [])  # None: not warm in time

        def get(self, ref: str) -> object:
            if isinstance(self.answer, Exception):
                raise self.answer
            return self.answer

    runs = [replace(planned("unet", narrow(4)), dir=tmp_path / "a"), replace(planned("unet", narrow(8)), dir=tmp_path / "b")]
    expected = estimated_work(runs, SHAPE, 1)
    ex = RayExecutor(CompareConfig(executor="ray"), tmp_path, 2, estimate=(runs, SHAPE, 1))
    ex._work = "first warm-up"
    for answer, work in [((None, [2.0, 1.0]), [2.0, 1.0]), (("ImportError('torch')", None), expected),
                         (RuntimeError("the worker died"), expected), (None, expected)]:
        ex.ray = Answers(answer)
        assert ex._estimated_work(2) == work
    assert RayExecutor(CompareConfig(executor="ray"), tmp_path, 2)._estimated_work(2) is None  # nothing to estimate
    # joined to a cluster, the runs' demand reaches the autoscaler before the driver waits for a warm worker
    requests: list[list[dict[str, float]]] = []
    monkeypatch.setattr(sdk, "request_resources", lambda bundles: requests.append(bundles))
    joined = RayExecutor(CompareConfig(executor="ray", ray_address="auto"), tmp_path, 2, estimate=(runs, SHAPE, 1))
    joined.res, joined._work, joined.ray = Resources(1, 0.0, "cpu"), "first warm-up", Answers(None)
    assert joined._estimated_work(2) == expected and requests == [[{"CPU": 1.0}] * 2]


_FIRST_RUN = """
import sys, torch
from pathlib import Path
from unetfamily.compare.config import CompareConfig
from unetfamily.compare.ray_executor import _warm_up
from unetfamily.compare.runner import run_compare
torch.set_num_threads(1)
if sys.argv[2] == "warm":
    assert _warm_up() == (None, None)
before = set(sys.modules)
run_compare(CompareConfig(data="synthetic", models=["unet"], seeds=1, steps=1, epochs=1, size=32, batch_size=2,
                          base_width=4, augment="none", costs=False, plan="none"), Path(sys.argv[1]))
heavy = ("torch._dynamo", "torchmetrics", "unetfamily.engine.train", "unetfamily.metrics")
print(sorted(m for m in set(sys.modules) - before if m in heavy))
"""


@pytest.mark.parametrize("warm", [True, False])
def test_after_the_warm_up_a_first_run_imports_nothing_heavy(tmp_path: Path, warm: bool) -> None:
    """What a run imports lazily (the engine, the metrics, torch's compiler stack that the first optimiser
    imports: ~1 s each) is imported by the warm-up, not by the first run of each worker."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _FIRST_RUN, str(tmp_path / "out"), "warm" if warm else "cold"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    imported = done.stdout.strip().splitlines()[-1]
    if warm:
        assert imported == "[]"
    else:  # without it the run imports them: the test can tell
        assert "torch._dynamo" in imported and "torchmetrics" in imported


def test_a_kept_result_has_no_work_left_and_an_interrupted_run_what_its_status_says(tmp_path: Path) -> None:
    import json

    runs = [replace(planned("unet", narrow(4)), dir=tmp_path / name) for name in ("kept", "half", "new", "odd")]
    for run in runs:
        run.dir.mkdir()
    (runs[0].dir / "result.json").write_text("{}")
    (runs[1].dir / "status.json").write_text(json.dumps({"state": "training", "step": 5, "total": 20}))
    (runs[3].dir / "status.json").write_text("{not json")
    work = estimated_work(runs, SHAPE, 1)
    assert work[0] == 0 and work[1] == pytest.approx(0.75 * work[2]) and work[3] == work[2] > 0
