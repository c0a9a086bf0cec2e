"""train.steps_per_epoch: an epoch of a fixed number of optimiser steps drawn from seeded
permutations of the training set (nnU-Net's 250 iterations), and everything that counts steps."""
from __future__ import annotations

import logging
import math
from collections import Counter
from pathlib import Path

import pytest
import torch

from tests.reliability.conftest import assert_same_tensors, tiny_config
from unetfamily.config import ConfigError, config_from_dict, load_config
from unetfamily.data import build_dataset, make_loader
from unetfamily.data.errors import DataConfigError
from unetfamily.data.loader import SeededSampler
from unetfamily.engine.checkpoint import load_checkpoint
from unetfamily.engine.run_setup import setup_run
from unetfamily.engine.train import fit


@pytest.fixture(autouse=True)
def _one_thread(single_thread: None) -> None:
    """Tiny tensors: one thread (also what makes interrupted and whole runs bit-identical)."""


def _one_pass(size: int, shuffle: bool, seed: int, epoch: int, rank: int, world: int) -> list[tuple[int, int]]:
    """The sampler's epoch as it was before train.steps_per_epoch existed (must stay bit-identical)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(size, generator=g) if shuffle else torch.arange(size)
    seeds = torch.randint(0, 2**62, (size,), generator=g)
    per_rank = -(-size // world)
    total = per_rank * world
    if total > size:
        order = torch.cat([order, order[: total - size]])
    return [(i, int(seeds[i])) for i in order[rank:total:world].tolist()]


@pytest.mark.parametrize("size,shuffle,world", [(10, True, 1), (7, True, 3), (5, False, 2)])
def test_without_num_samples_epochs_are_one_pass_as_before(size: int, shuffle: bool, world: int) -> None:
    for rank in range(world):
        sampler = SeededSampler(size, shuffle, 4, rank=rank, world_size=world)
        for epoch in range(3):
            assert list(sampler) == _one_pass(size, shuffle, 4, epoch, rank, world)


def test_num_samples_draws_every_sample_equally_often_whatever_the_size() -> None:
    sampler = SeededSampler(5, True, 3, num_samples=7)
    epochs = [list(sampler) for _ in range(5)]  # 35 draws = 7 whole permutations of 5
    assert len(sampler) == 7 and all(len(e) == 7 for e in epochs)
    assert Counter(i for e in epochs for i, _ in e) == {i: 7 for i in range(5)}
    stream = [i for e in epochs for i, _ in e]
    assert all(sorted(stream[k : k + 5]) == list(range(5)) for k in range(0, 35, 5))  # concatenated permutations
    assert len({s for e in epochs for _, s in e}) == 35  # a fresh augmentation seed for every draw
    sampler.set_epoch(3)
    assert list(sampler) == epochs[3]  # an epoch depends on (seed, epoch) alone: resumable
    assert list(SeededSampler(5, True, 4, num_samples=7)) != epochs[0]
    big = SeededSampler(1000, True, 3, num_samples=4)
    assert len(set(i for i, _ in big)) == 4  # a large dataset: a few draws of one permutation


def test_num_samples_ranks_split_one_stream() -> None:
    one = SeededSampler(6, True, 1, num_samples=8)
    whole = [list(one) for _ in range(2)]
    ranks = [SeededSampler(6, True, 1, num_samples=4, rank=r, world_size=2) for r in range(2)]
    for epoch in range(2):
        parts = [list(r) for r in ranks]
        assert parts[0] == whole[epoch][0::2] and parts[1] == whole[epoch][1::2]
    assert [i for i, _ in SeededSampler(3, False, 0, num_samples=7)] == [0, 1, 2, 0, 1, 2, 0]


def test_make_loader_num_samples(tmp_path: Path) -> None:
    dataset = build_dataset({"type": "synthetic", "num_samples": {"train": 6, "val": 2}, "size": 16}, "train")
    loader = make_loader(dataset, 4, shuffle=True, num_samples=4 * 5, drop_last=True)
    assert len(loader) == 5 and sum(len(b["name"]) for b in loader) == 20
    with pytest.raises(DataConfigError, match="num_samples"):
        make_loader(torch.utils.data.Subset(dataset, [0, 1]), 2, num_samples=4)
    with pytest.raises(ValueError, match="num_samples"):
        SeededSampler(3, True, num_samples=0)


def test_steps_per_epoch_is_checked() -> None:
    assert load_config(None, ["train.steps_per_epoch=250"]).train.steps_per_epoch == 250
    for value in ("0", "-1", "2.5"):
        with pytest.raises(ConfigError, match="train.steps_per_epoch"):
            load_config(None, [f"train.steps_per_epoch={value}"])


def test_an_epoch_is_steps_per_epoch_steps(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # 16 training images at batch 4 are 4 steps a pass; steps_per_epoch=3 makes epochs of 3 (not 4).
    config = config_from_dict(tiny_config(tmp_path / "run", epochs=2, steps_per_epoch=3, checkpoint_every=0,
                                          max_steps=None))
    run = setup_run(config)
    try:
        assert run.steps_per_epoch == 3 and run.total_steps == 6 and len(run.train_loader) == 3
    finally:
        run.close()
    with caplog.at_level(logging.INFO, logger="unetfamily"):
        summary = fit(config, overwrite=True)
    assert "epoch = 3 steps of 4 samples" in caplog.text
    assert summary.steps == 6 and [h["step"] for h in summary.history] == [3, 6]
    assert [h["epoch"] for h in summary.history] == [1, 2]
    more = config_from_dict(tiny_config(tmp_path / "run2", epochs=3, steps_per_epoch=7, checkpoint_every=0,
                                        max_steps=10))
    assert fit(more).steps == 10  # max_steps cuts the second 7-step epoch


def test_resume_mid_epoch_replays_the_same_steps(tmp_path: Path) -> None:
    # checkpoint_every=2 inside 5-step epochs; the run stops at step 7 (mid-epoch 2) and resumes to 10,
    # skipping the 2 batches of epoch 2 it trained on. A constant lr: the budget cut changes no lr.
    def config(out: str, **train: object):
        return config_from_dict({**tiny_config(tmp_path / out, epochs=2, steps_per_epoch=5, checkpoint_every=2,
                                               **train), "schedule": {"name": "constant"}})

    whole = fit(config("whole"))
    assert fit(config("cut", max_steps=7)).steps == 7
    resumed = fit(config("cut"), resume=True)
    assert whole.steps == resumed.steps == 10
    # The last checkpoints: a run folder means its best one, and the cut run also validated at step 7,
    # which the whole run never did, so their best checkpoints may rightly differ.
    a, b = (load_checkpoint(tmp_path / run / "checkpoints" / "last.safetensors") for run in ("whole", "cut"))
    assert a.step == b.step == 10
    assert_same_tensors(a.model_state, b.model_state)
    assert whole.history[-1]["dice"] == resumed.history[-1]["dice"]


def test_a_time_budget_holds_within_an_epoch(tmp_path, monkeypatch) -> None:
    """train.max_seconds ends the run after the step during which it ran out, not at the end of the epoch."""
    import time as _time

    from unetfamily.config import config_from_dict
    from unetfamily.engine import loop
    from unetfamily.engine.train import fit

    cfg = config_from_dict({
        "model": {"name": "unet", "kwargs": {"channels": [4, 8]}},
        "data": {"type": "synthetic", "num_samples": {"train": 40, "val": 2}, "size": 32},
        "loader": {"batch_size": 2}, "train": {"epochs": 3, "max_seconds": 5.0, "progress": False,
                                               "tensorboard": False, "device": "cpu"},
        "output_dir": str(tmp_path / "run")})
    clock = {"now": 0.0}
    real_step = loop.train_step

    def slow_step(*args, **kwargs):  # every step "takes" one second of a fake clock
        clock["now"] += 1.0
        return real_step(*args, **kwargs)

    monkeypatch.setattr(_time, "perf_counter", lambda: clock["now"])
    monkeypatch.setattr(loop, "train_step", slow_step)
    summary = fit(cfg)
    assert summary.steps == 5  # 20 steps per epoch; the budget ran out during step 5
    assert summary.metrics  # the cut epoch was still validated: the run ends with its scores


@pytest.mark.parametrize("follow_time", [False, True])
def test_follow_time_decays_by_the_time_budget(tmp_path, monkeypatch, follow_time: bool) -> None:
    """schedule.follow_time: a run its time budget cuts at a tenth of its steps still ends with a decayed rate."""
    import time as _time

    from unetfamily.config import config_from_dict
    from unetfamily.engine import loop
    from unetfamily.engine.train import fit

    cfg = config_from_dict({
        "model": {"name": "unet", "kwargs": {"channels": [4, 8]}},
        "data": {"type": "synthetic", "num_samples": {"train": 40, "val": 2}, "size": 32},
        "loader": {"batch_size": 2}, "optim": {"lr": 0.01},
        "schedule": {"name": "cosine", "min_lr_ratio": 0.0, "follow_time": follow_time},
        "train": {"epochs": 5, "max_seconds": 10.0, "progress": False, "tensorboard": False, "device": "cpu"},
        "output_dir": str(tmp_path / "run")})
    clock, rates = {"now": 0.0}, []
    real_step = loop.train_step

    def slow_step(*args, **kwargs):  # every step "takes" one second of a fake clock
        clock["now"] += 1.0
        result = real_step(*args, **kwargs)
        rates.append(result.lr)
        return result

    monkeypatch.setattr(_time, "perf_counter", lambda: clock["now"])
    monkeypatch.setattr(loop, "train_step", slow_step)
    assert fit(cfg).steps == 10  # of 100
    if follow_time:  # step k is set from the time the k previous steps took: k / 10 of the budget
        assert rates[-1] == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * 0.9)))
        assert rates == sorted(rates, reverse=True)
    else:
        assert rates[-1] == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * 9 / 100)))
