"""The plan counts what making a batch costs: the data pipeline's timing and its share of a step."""
from __future__ import annotations

import pytest
import torch

from unetfamily.data import build_dataset
from unetfamily.plan import Budget
from unetfamily.plan import fit as planfit
from unetfamily.plan.data_cost import DataCost, measure_data_cost


def test_per_sample_cost_reads_cold_once_per_case_only_with_a_cache() -> None:
    uncached = DataCost(cold_s=0.3, warm_s=0.1, cases=10, cached=False)
    assert uncached.per_sample(1000) == 0.3  # every read decodes
    cached = DataCost(cold_s=0.3, warm_s=0.1, cases=10, cached=True)
    assert cached.per_sample(10) == pytest.approx(0.3)  # one pass: every read is a first read
    assert cached.per_sample(5) == pytest.approx(0.3)
    assert cached.per_sample(40) == pytest.approx(0.1 + 0.2 / 4)  # four passes: a quarter of the reads are cold


def test_measuring_leaves_the_dataset_as_it_was() -> None:
    train = build_dataset({"type": "synthetic", "num_samples": 6, "size": 48}, "train")
    before = (train.transform, train.scale, train.cache, dict(train._cache))
    cost = measure_data_cost(train, scale=0.5, preset="medical", patch=(32, 32), foreground=1 / 3, cached=True)
    assert cost.cold_s > 0 and cost.warm_s > 0 and cost.cases == 6 and cost.cached
    assert (train.transform, train.scale, train.cache, dict(train._cache)) == before
    assert measure_data_cost(train, scale=1.0, preset=None, patch=(48, 48), foreground=0.0, cached=False).cold_s > 0


def fit(monkeypatch: pytest.MonkeyPatch, val_cases: int, **options: object) -> planfit.FamilyFit:
    """A U-Net fitted to 64 px images in 100 s, its step measured as 0.1 s (no model is run)."""
    step = planfit.StepCost(2, (64, 64), 0.1, 0.03, 2**20)
    monkeypatch.setattr(planfit, "measure_step", lambda *a, **k: step)
    return planfit.fit_family("unet", "unet", {}, step, (64, 64), in_channels=1, outputs=1,
                              device=torch.device("cpu"), budget=Budget(seconds=100), memory=2**40,
                              train_pixels=1e6, val_cases=val_cases, **options)


def test_a_slow_pipeline_buys_fewer_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = fit(monkeypatch, 1)
    slow = fit(monkeypatch, 1, data=lambda patch: DataCost(cold_s=0.1, warm_s=0.1, cases=50, cached=False))
    assert fast.data_seconds == 0.0 and slow.data_seconds == pytest.approx(0.2)  # batch 2 x 0.1 s
    assert slow.step_seconds == pytest.approx(0.3)
    total = lambda f: f.epochs * f.steps_per_epoch  # noqa: E731
    assert total(slow) < total(fast) / 2.5  # 0.3 s a step instead of 0.1 s
    assert "make the batch" in slow.reason


def test_validation_is_costed_over_the_spread_of_image_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    median = fit(monkeypatch, 10)
    # half the images are the median's size, half are 8 times larger per side (DSB2018's long tail)
    spread = fit(monkeypatch, 10, sizes=[(64, 64), (512, 512)])
    assert spread.window == median.window == [64, 64]
    tiles_large = len(planfit.tile_starts(512, 64, 0.5)) ** 2
    assert spread.validation_seconds == pytest.approx(median.validation_seconds * (1 + tiles_large) / 2, rel=1e-3)
    assert spread.epochs < median.epochs  # fewer validations fit the time budget's share


def test_the_fitted_models_norm_follows_the_batch_and_its_step_is_measured_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    measured = []
    step = planfit.StepCost(2, (64, 64), 0.1, 0.03, 2**20)
    monkeypatch.setattr(planfit, "measure_step", lambda name, kwargs, *a, **k: measured.append(kwargs) or step)
    small = planfit.fit_family("fcn8s", "fcn8s", {"norm": "batch", "channels": [8] * 5}, step, (64, 64), in_channels=1,
                               outputs=1, device=torch.device("cpu"), budget=Budget(seconds=100), memory=2**40,
                               train_pixels=1e6, val_cases=1)
    assert small.batch_size < 8 and small.kwargs == {"norm": "instance", "channels": [8] * 5}
    assert measured == [small.kwargs] and "instance normalisation" in small.reason
    large = planfit.fit_family("unet", "unet", {}, step, (64, 64), in_channels=1, outputs=1, device=torch.device("cpu"),
                               budget=Budget(steps=100), memory=2**40, train_pixels=1e9, val_cases=1)
    assert large.batch_size >= 8 and large.kwargs["norm"] == "batch"


def test_on_cuda_the_loader_workers_hide_the_pipeline_behind_the_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    # loader.num_workers: auto on CUDA: 4 CPUs give 3 worker processes making batches while the steps run
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.delenv("UNETFAMILY_CPUS", raising=False)
    step = planfit.StepCost(2, (64, 64), 0.1, 0.03, 2**20)
    monkeypatch.setattr(planfit, "measure_step", lambda *a, **k: step)

    def fit_cuda(sample_s: float) -> planfit.FamilyFit:
        return planfit.fit_family("unet", "unet", {}, step, (64, 64), in_channels=1, outputs=1,
                                  device=torch.device("cuda"), budget=Budget(seconds=100), memory=2**40,
                                  train_pixels=1e6, val_cases=1,
                                  data=lambda patch: DataCost(cold_s=sample_s, warm_s=sample_s, cases=50, cached=False))

    hidden = fit_cuda(0.1)  # a batch of 2 takes 0.2 s, 0.067 s with 3 workers: within the 0.1 s step
    assert hidden.data_seconds == 0.0 and hidden.step_seconds == pytest.approx(0.1)
    slow = fit_cuda(0.6)  # 1.2 s a batch, 0.4 s with 3 workers: the step waits 0.3 s
    assert slow.data_seconds == pytest.approx(0.3) and "its 3 loader workers make" in slow.reason
