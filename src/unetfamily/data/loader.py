"""DataLoader construction: seeded order, seeded per-sample augmentation, a size-checking collate.

:func:`make_loader` uses :class:`SeededSampler`, which yields ``(index, sample_seed)`` pairs.
:class:`~unetfamily.data.base.SegmentationDataset` runs its transform under that seed, so the
batches, augmentation included, depend only on ``seed`` and the epoch: the same with 0, 1 or 8
workers, and the same after a restart.

``make_loader(..., timed=True)`` also says how long each batch took to make where it was made (in
its worker process, or in the training process with 0 workers): the batch's ``data_seconds``
(:data:`DATA_SECONDS`), a float covering the samples' reading, augmenting and collating. The
training loop takes it out of the batch and reports what the loader can deliver against what the
steps consume (:mod:`unetfamily.engine.throughput`).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from unetfamily.data.base import SegmentationDataset
from unetfamily.data.errors import DataConfigError, DataError

__all__ = ["SeededSampler", "collate", "make_loader", "DATA_SECONDS"]

#: Key of a timed loader's batches (``make_loader(..., timed=True)``): seconds spent making the batch.
DATA_SECONDS = "data_seconds"

log = logging.getLogger(__name__)


class SeededSampler(Sampler[tuple[int, int]]):
    """Yield ``(index, sample_seed)`` for one epoch; each ``iter()`` starts the next epoch.

    Order and seeds are drawn from ``torch.Generator`` seeded with ``(seed, epoch)``. With
    ``world_size > 1`` each rank takes every ``world_size``-th entry of the same permutation
    (padded by wrapping so every rank gets the same count), as DistributedSampler does.

    With ``num_samples`` (per rank) an epoch is that many samples instead of one pass: the
    epochs are consecutive pieces of one endless stream of permutations of the dataset
    (permutation ``j`` and its per-position sample seeds drawn from a generator seeded with
    ``(seed, j)``), so every sample is drawn equally often over time whatever the dataset's size,
    and epoch ``e`` still depends only on ``seed`` and ``e``.
    """

    def __init__(self, size: int, shuffle: bool, seed: int = 0, *, rank: int = 0, world_size: int = 1,
                 num_samples: int | None = None) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} must be in [0, world_size={world_size})")
        if num_samples is not None and (num_samples < 1 or size < 1):
            raise ValueError(f"num_samples={num_samples} must be >= 1 (or None for one pass over the data), "
                             f"and the dataset must not be empty (size {size})")
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size, self.num_samples = rank, world_size, num_samples
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch the next ``iter()`` yields (otherwise epochs count up by themselves)."""
        self.epoch = epoch

    def __len__(self) -> int:
        if self.num_samples is not None:
            return self.num_samples
        return -(-self.size // self.world_size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.num_samples is not None:
            return self._stream()
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        order = torch.randperm(self.size, generator=g) if self.shuffle else torch.arange(self.size)
        seeds = torch.randint(0, 2**62, (self.size,), generator=g)
        total = len(self) * self.world_size
        if total > self.size:  # pad by wrapping so every rank gets len(self) samples
            order = torch.cat([order, order[: total - self.size]])
        picked = order[self.rank : total : self.world_size].tolist()
        return iter([(i, int(seeds[i])) for i in picked])

    def _stream(self) -> Iterator[tuple[int, int]]:
        """This epoch's ``num_samples`` entries of the endless stream of seeded permutations (this rank's share)."""
        assert self.num_samples is not None
        total = self.num_samples * self.world_size
        begin, self.epoch = self.epoch * total, self.epoch + 1
        first, last = begin // self.size, (begin + total - 1) // self.size  # the permutations this epoch touches
        orders, seeds = [], []
        for j in range(first, last + 1):
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + j) ^ _STREAM_SALT)
            orders.append(torch.randperm(self.size, generator=g) if self.shuffle else torch.arange(self.size))
            seeds.append(torch.randint(0, 2**62, (self.size,), generator=g))
        offset = begin - first * self.size
        order = torch.cat(orders)[offset : offset + total]
        seed = torch.cat(seeds)[offset : offset + total]
        picked = range(self.rank, total, self.world_size)
        return iter([(int(order[p]), int(seed[p])) for p in picked])


#: Keeps the generators of the stream of permutations (``num_samples``) apart from the per-epoch ones.
_STREAM_SALT = 0x5DEECE66D


def collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack sample dicts into ``{"image": (N, C, H, W), "mask": (N, H, W), "name": list[str]}``."""
    shapes = {tuple(s["image"].shape) for s in samples}
    if len(shapes) > 1:
        names = [s.get("name", "?") for s in samples[:4]]
        raise DataError(
            f"samples in one batch differ in size {sorted(shapes)} (e.g. {names}); set the dataset's "
            "'resize', use an augmentation 'crop_size', or use batch_size=1"
        )
    out: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        out[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return out


class _Samples(list):
    """The samples of one batch, and the seconds spent making them (``seconds``)."""

    seconds = 0.0


class _TimedDataset(Dataset):
    """``dataset`` whose batches of samples (``__getitems__``, which DataLoader calls) carry their making time."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: Any) -> Any:
        return self.dataset[key]

    def __getitems__(self, keys: Iterable[Any]) -> _Samples:
        start = time.perf_counter()
        samples = _Samples(self.dataset[key] for key in keys)
        samples.seconds = time.perf_counter() - start
        return samples


def _timed_collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """:func:`collate`, with the seconds spent making the batch (samples and collating) as ``data_seconds``."""
    start = time.perf_counter()
    batch = collate(samples)
    batch[DATA_SECONDS] = getattr(samples, "seconds", 0.0) + time.perf_counter() - start
    return batch


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = False,
    num_workers: int = 0,
    seed: int = 0,
    *,
    drop_last: bool = False,
    pin_memory: bool | None = None,
    rank: int = 0,
    world_size: int = 1,
    prefetch_factor: int | None = None,
    num_samples: int | None = None,
    timed: bool = False,
) -> DataLoader:
    """A DataLoader whose batches (order and augmentation) are fixed by ``seed``.

    Batches are dicts: ``image`` (N, C, H, W) float32, ``mask`` (N, H, W) int64, ``name`` list[str].
    ``pin_memory`` defaults to ``torch.cuda.is_available()``. Worker processes persist across
    epochs, and a dataset built with ``cache=True`` is decoded once in the main process before the
    workers fork, so they share the decoded samples instead of each decoding its own copy.
    ``rank``/``world_size`` shard the data for DistributedDataParallel. ``num_samples`` (per rank;
    None: one pass over the data) makes every epoch that many samples (:class:`SeededSampler`).
    ``timed``: each batch also holds ``data_seconds``, the seconds spent making it (module docstring).
    """
    if batch_size < 1:
        raise DataConfigError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(dataset, SegmentationDataset):
        sampler: Sampler = SeededSampler(len(dataset), shuffle, seed, rank=rank, world_size=world_size,
                                         num_samples=num_samples)
        if dataset.cache and num_workers > 0:
            dataset.preload(num_threads=num_workers)
        generator = None
    else:  # a foreign dataset (e.g. a torch Subset): seeded order, global-RNG transforms
        if num_samples is not None:
            raise DataConfigError(f"num_samples (train.steps_per_epoch) needs a unetfamily dataset; got a "
                                  f"{type(dataset).__name__}: build it with unetfamily.data.build_dataset")
        if world_size > 1:
            from torch.utils.data.distributed import DistributedSampler

            sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed)
        else:
            sampler = None  # type: ignore[assignment]
        generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        _TimedDataset(dataset) if timed else dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=_timed_collate if timed else collate,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        drop_last=drop_last,
        worker_init_fn=_seed_worker if num_workers > 0 else None,
        generator=generator,
        persistent_workers=num_workers > 0,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
    )
