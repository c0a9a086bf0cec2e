"""Data-loading and augmentation throughput, in samples per second, on a real dataset.

    python benchmarks/data.py                                  # Kvasir-SEG, 96 samples, 256x256
    python benchmarks/data.py --dataset isbi2012_em --size 0   # native size (512x512)
    python benchmarks/data.py --dataset synthetic --size 128  # generation speed of the built-in set
    python benchmarks/data.py --json reports/data_bench.json

Each number has its baseline measured in the same process:

- load: decode + resize, uncached (first pass) vs from the cache (second pass);
- loader: a DataLoader over the uncached dataset with 0 vs ``--workers`` worker processes, first
  epoch (worker start-up included) and second epoch (persistent workers);
- augment: each preset per sample (as in DataLoader workers) and on a collated batch (as on a
  GPU), against ``load_cached`` (the same samples without augmentation).

Falls back to the synthetic dataset when the real data is absent (say so in the output).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from unetfamily.data import DataError, SyntheticShapes, build_augmentation, build_dataset, make_loader
from unetfamily.data.augment import PRESETS
from unetfamily.files import write_json


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def read_all(dataset, n: int) -> None:
    for i in range(n):
        dataset[i]


def apply_each(aug, items) -> None:
    for item in items:
        aug(item)


def make_dataset(name: str, size: int, cache: bool):
    resize = None if size == 0 else size
    if name == "synthetic":  # generated, so "uncached" loading measures generation
        return SyntheticShapes(512, size=size or 96, in_channels=3, cache=cache), name
    try:
        return build_dataset({"type": name, "resize": resize, "cache": cache}, "train"), name
    except DataError as e:
        print(f"# {name} unavailable ({e}); using synthetic data instead")
        return SyntheticShapes(512, size=size or 96, in_channels=3, cache=cache), "synthetic"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="kvasir_seg", help="a named dataset type (default: kvasir_seg)")
    parser.add_argument("--samples", type=int, default=96, help="samples per measurement (default: 96)")
    parser.add_argument("--size", type=int, default=256, help="resize to SIZE x SIZE; 0 keeps the native size")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for the parallel run")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the main process (workers use 1)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[str, float] = {}

    cached, name = make_dataset(args.dataset, args.size, cache=True)
    n = min(args.samples, len(cached))
    print(
        f"dataset {name}: {len(cached)} train samples, measuring {n}, resize={args.size or 'native'}, "
        f"torch threads={torch.get_num_threads()}"
    )
    results["load_uncached"] = rate(n, timed(read_all, cached, n))
    results["load_cached"] = rate(n, timed(read_all, cached, n))  # also the baseline for augmentation

    plain, _ = make_dataset(args.dataset, args.size, cache=False)
    subset = torch.utils.data.Subset(plain, range(n))
    for workers in (0, args.workers):
        loader = make_loader(subset, batch_size=args.batch_size, num_workers=workers, seed=0)
        results[f"loader_uncached_workers{workers}_epoch1"] = rate(n, timed(list, loader))  # incl. worker start
        results[f"loader_uncached_workers{workers}_epoch2"] = rate(n, timed(list, loader))

    samples = [cached[i] for i in range(min(n, 32))]
    same_size = len({tuple(s["image"].shape) for s in samples}) == 1
    for preset in PRESETS:
        aug = build_augmentation(preset, ignore_index=cached.info.ignore_index, in_channels=cached.info.in_channels)
        torch.manual_seed(0)
        results[f"augment_{preset}_per_sample"] = rate(len(samples), timed(apply_each, aug, samples))
        if same_size:
            batch = {k: torch.stack([s[k] for s in samples[: args.batch_size]]) for k in ("image", "mask")}
            aug(batch)  # warm-up
            batches = [batch] * max(1, len(samples) // args.batch_size)
            results[f"augment_{preset}_batched"] = rate(len(batches) * args.batch_size, timed(apply_each, aug, batches))

    for key, value in results.items():
        print(f"{key:<34} {value:10.1f} samples/s")
    if args.json:
        write_json(args.json, {"dataset": name, "samples": n, "size": args.size, **results}, indent=2)


if __name__ == "__main__":
    main()
