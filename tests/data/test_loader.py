"""make_loader: deterministic batches (augmentation included) whatever the worker count."""

from __future__ import annotations

import pytest
import torch

from unetfamily.data import DataError, SeededSampler, SyntheticShapes, collate, make_loader


def _epoch(loader):
    return [(b["name"], b["image"], b["mask"]) for b in loader]


def _same(a, b):
    return all(
        na == nb and torch.equal(ia, ib) and torch.equal(ma, mb)
        for (na, ia, ma), (nb, ib, mb) in zip(a, b, strict=True)
    )


def test_batches_are_collated_dicts():
    loader = make_loader(SyntheticShapes(10, size=32), batch_size=4, shuffle=False)
    batches = list(loader)
    assert [len(b["name"]) for b in batches] == [4, 4, 2]
    assert batches[0]["image"].shape == (4, 1, 32, 32) and batches[0]["mask"].shape == (4, 32, 32)
    assert batches[0]["name"][0] == "synthetic_train_00000" and not loader.pin_memory


def test_seed_fixes_order_and_augmentation_across_worker_counts():
    pytest.importorskip("kornia")
    from unetfamily.data import build_augmentation

    ds = SyntheticShapes(12, size=32, num_classes=4, transform=build_augmentation("medical", in_channels=1))
    serial = make_loader(ds, batch_size=4, shuffle=True, num_workers=0, seed=5)
    parallel = make_loader(ds, batch_size=4, shuffle=True, num_workers=2, seed=5)
    first, second = _epoch(serial), _epoch(serial)
    assert _same(first, _epoch(parallel))  # same batches with 0 or 2 workers
    assert _same(second, _epoch(parallel))  # and the next epoch too
    assert not _same(first, second)  # epochs differ from each other
    assert not _same(first, _epoch(make_loader(ds, batch_size=4, shuffle=True, seed=6)))


def test_sampler_shards_for_distributed_training():
    shards = [list(SeededSampler(10, shuffle=True, seed=1, rank=r, world_size=3)) for r in range(3)]
    assert all(len(s) == 4 for s in shards)
    indices = [i for s in shards for i, _ in s]
    assert set(indices) == set(range(10))  # 12 slots: two samples repeat, as DistributedSampler pads


def test_collate_explains_size_mismatch():
    a = {"image": torch.zeros(1, 8, 8), "mask": torch.zeros(8, 8, dtype=torch.long), "name": "a"}
    b = {"image": torch.zeros(1, 9, 8), "mask": torch.zeros(9, 8, dtype=torch.long), "name": "b"}
    with pytest.raises(DataError, match=r"differ in size.*'resize'.*crop_size.*batch_size=1"):
        collate([a, b])


def test_cached_dataset_is_preloaded_before_workers_fork():
    ds = SyntheticShapes(6, size=32, cache=True)
    make_loader(ds, batch_size=2, num_workers=1)
    assert len(ds._cache) == 6
