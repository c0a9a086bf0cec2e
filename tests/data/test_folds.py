"""Cross-validation: stratified fold assignment and the cv_fold dataset type over any base type."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.data.conftest import real_dataset, save, tiff_stack_config
from unetfamily.data import DataConfigError, DataError, FoldDataset, build_dataset, stratified_folds

SYNTHETIC = {"type": "synthetic", "num_samples": {"train": 9, "val": 4, "test": 2}, "size": 32}


# -- stratified_folds -----------------------------------------------------------------------
@pytest.mark.parametrize("n,folds", [(10, 2), (23, 5), (30, 5), (7, 7), (41, 3)])
def test_folds_are_balanced_overall_and_per_stratum(n: int, folds: int) -> None:
    names = [f"case{i:03d}" for i in range(n)]
    strata = [("fg" if i % 3 else "empty", i % 2) for i in range(n)]  # four strata of uneven sizes
    assignment = stratified_folds(names, strata, folds, seed=1)
    assert list(assignment) == names and set(assignment.values()) == set(range(folds))
    sizes = Counter(assignment.values())
    assert max(sizes.values()) - min(sizes.values()) <= 1
    for stratum in set(strata):
        counts = Counter(assignment[m] for m, s in zip(names, strata) if s == stratum)
        per_fold = [counts.get(k, 0) for k in range(folds)]
        assert max(per_fold) - min(per_fold) <= 1, (stratum, per_fold)


def test_folds_depend_on_the_seed_not_the_order() -> None:
    names = [f"img{i:02d}" for i in range(30)]
    strata = [i % 4 == 0 for i in range(30)]
    assignment = stratified_folds(names, strata, 5, seed=0)
    pairs = list(zip(names, strata))
    random.Random(7).shuffle(pairs)
    shuffled = stratified_folds([n for n, _ in pairs], [s for _, s in pairs], 5, seed=0)
    assert shuffled == assignment and list(shuffled) == [n for n, _ in pairs]
    assert stratified_folds(names, strata, 5, seed=0) == assignment
    assert stratified_folds(names, strata, 5, seed=1) != assignment


def test_one_stratum_per_fold_when_strata_are_rare() -> None:
    # 3 cases with foreground among 20: one in each of 3 folds of 5, never two together.
    names = [f"s{i}" for i in range(20)]
    strata = [i in (4, 11, 17) for i in range(20)]
    assignment = stratified_folds(names, strata, 5)
    assert len({assignment[n] for n, s in zip(names, strata) if s}) == 3


@pytest.mark.parametrize(
    "names,strata,folds,match",
    [
        (["a", "b", "c"], [0, 0, 0], 1, "2 <= folds"),
        (["a", "b", "c"], [0, 0, 0], 4, r"folds=4: .*\(3\)"),
        (["a", "b", "c"], [0, 0, 0], True, "folds=True"),
        (["a", "b", "a"], [0, 0, 0], 2, r"duplicate sample names \['a'\]"),
        (["a", "b", "c"], [0, 0], 2, "3 names but 2 strata"),
    ],
)
def test_bad_fold_requests_are_named(names, strata, folds, match) -> None:
    with pytest.raises(DataConfigError, match=match):
        stratified_folds(names, strata, folds)


# -- cv_fold ------------------------------------------------------------------------------------
def _pool(base: dict, pool=("train", "val")) -> list:
    return [build_dataset(base, split) for split in pool]


def _fold_config(base: dict, assignment: dict, fold: int, **outer) -> dict:
    return {"type": "cv_fold", "base": base, "assignment": assignment, "fold": fold, **outer}


def _assign(parts: list, folds: int) -> dict[str, int]:
    names = [n for part in parts for n in part.names]
    masks = [part.read(i)[1] for part in parts for i in range(len(part))]
    return stratified_folds(names, [bool((m == 1).any()) for m in masks], folds, seed=0)


def _assert_same_samples(fold_ds, parts: list) -> None:
    """Each of the fold's samples equals, tensor for tensor, the base split's sample of that name."""
    where = {n: (part, i) for part in parts for i, n in enumerate(part.names)}
    for i in range(len(fold_ds)):
        mine = fold_ds[i]
        part, j = where[mine["name"]]
        theirs = part[j]
        assert torch.equal(mine["image"], theirs["image"]) and mine["image"].dtype == theirs["image"].dtype
        assert torch.equal(mine["mask"], theirs["mask"]) and mine["mask"].dtype == torch.int64


def _check_folds_partition(base: dict, folds: int, **outer) -> list:
    parts = _pool(base)
    pooled = [n for part in parts for n in part.names]
    assignment = _assign(parts, folds)
    held_out = []
    for k in range(folds):
        train = build_dataset(_fold_config(base, assignment, k, **outer), "train")
        val = build_dataset(_fold_config(base, assignment, k, **outer), "val")
        assert isinstance(val, FoldDataset) and val.info == parts[0].info
        assert not set(train.names) & set(val.names)
        assert sorted(train.names + val.names) == sorted(pooled)
        assert all(assignment[n] == k for n in val.names)
        held_out += val.names
    assert sorted(held_out) == sorted(pooled)  # every case evaluated out of fold exactly once
    return parts


def test_synthetic_folds_cover_the_pool_once_and_keep_the_samples() -> None:
    parts = _check_folds_partition(SYNTHETIC, 3)
    assignment = _assign(parts, 3)
    val = build_dataset(_fold_config(SYNTHETIC, assignment, 1), "val")
    _assert_same_samples(val, parts)
    assert not any(n.startswith("synthetic_test") for n in val.names)  # only the pool's splits


def test_augment_applies_to_the_training_folds_only() -> None:
    pytest.importorskip("kornia")
    assignment = _assign(_pool(SYNTHETIC), 3)
    config = _fold_config(SYNTHETIC, assignment, 0, augment="light")
    train, val = build_dataset(config, "train"), build_dataset(config, "val")
    assert train.transform is not None and val.transform is None
    seeded = [train[(i, 5)]["image"] for i in range(len(train))]
    plain = [build_dataset(_fold_config(SYNTHETIC, assignment, 0), "train")[i]["image"] for i in range(len(train))]
    assert any(not torch.equal(a, b) for a, b in zip(seeded, plain))
    with pytest.raises(DataConfigError, match="'base' has 'augment'; move it to the cv_fold config"):
        build_dataset(_fold_config({**SYNTHETIC, "augment": "light"}, assignment, 0), "train")


def _tiny_folder(root: Path, per_split: bool = False) -> dict:
    """Six gray PNG images of different sizes and their 0/255 masks (two of them empty)."""
    rng = np.random.default_rng(0)
    for i in range(6):
        sub = ("train" if i < 4 else "val") if per_split else ""
        h, w = 20 + 3 * i, 26 - i
        save(root / "images" / sub / f"c{i}.png", rng.integers(0, 256, (h, w), dtype=np.uint8))
        mask = np.zeros((h, w), np.uint8)
        if i not in (1, 4):
            mask[3 : 9 + i, 2:12] = 255
        save(root / "masks" / sub / f"c{i}.png", mask)
    if per_split:
        return {"type": "folder", "root": str(root), "images": "images/{split}", "masks": "masks/{split}"}
    return {"type": "folder", "root": str(root), "splits": {"fractions": {"train": 0.5, "val": 0.5}, "seed": 0}}


@pytest.mark.parametrize("resize_on", ["base", "outer"])
def test_folder_folds_resize_exactly_like_the_base(tmp_path, resize_on: str) -> None:
    plain = _tiny_folder(tmp_path)
    resized = {**plain, "resize": [16, 18]}
    outer = {"resize": [16, 18]} if resize_on == "outer" else {}
    parts = _check_folds_partition(resized if resize_on == "base" else plain, 2, **outer)
    assignment = _assign(parts, 2)
    for k in range(2):
        for split in ("train", "val"):
            ds = build_dataset(_fold_config(resized if resize_on == "base" else plain, assignment, k, **outer), split)
            assert ds.resize == (16, 18) and all(ds[i]["image"].shape == (1, 16, 18) for i in range(len(ds)))
            _assert_same_samples(ds, _pool(resized))


def test_outer_resize_must_not_contradict_the_base(tmp_path) -> None:
    base = {**_tiny_folder(tmp_path), "resize": 16}
    assignment = _assign(_pool(base), 2)
    assert len(build_dataset(_fold_config(base, assignment, 0, resize=[16, 16]), "val")) > 0  # same size, spelt twice
    with pytest.raises(DataConfigError, match=r"resize=\[24, 24\] contradicts the base's resize=16"):
        build_dataset(_fold_config(base, assignment, 0, resize=[24, 24]), "val")
    with pytest.raises(DataConfigError, match="unknown key 'resize' for dataset type 'synthetic'"):
        build_dataset(_fold_config(SYNTHETIC, _assign(_pool(SYNTHETIC), 2), 0, resize=16), "val")


def test_tiff_stack_folds(tmp_path) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (8, 24, 24), dtype=np.uint8)
    labels = np.where(rng.random((8, 24, 24)) < 0.3, 0, 255).astype(np.uint8)
    base = tiff_stack_config(tmp_path, images, labels, {"train": [0, 6], "val": [6, 8]})
    parts = _check_folds_partition(base, 4)
    _assert_same_samples(build_dataset(_fold_config(base, _assign(parts, 4), 3), "train"), parts)


def test_isbi2012_em_five_folds() -> None:
    real_dataset("isbi2012_em")  # skips with the reason when the data is absent
    base = {"type": "isbi2012_em", "resize": 64}
    parts = _check_folds_partition(base, 5)
    assert sum(map(len, parts)) == 30
    val = build_dataset(_fold_config(base, _assign(parts, 5), 4), "val")
    assert len(val) == 6
    _assert_same_samples(val, parts)


def test_bad_assignments_and_splits_are_named(tmp_path) -> None:
    assignment = _assign(_pool(SYNTHETIC), 3)
    missing = dict(list(assignment.items())[1:])
    first = next(iter(assignment))
    with pytest.raises(DataError, match=rf"1 lack a fold, e.g. \['{first}'\]"):
        build_dataset(_fold_config(SYNTHETIC, missing, 0), "train")
    with pytest.raises(DataError, match=r"1 are not in the pool, e.g. \['ghost'\]"):
        build_dataset(_fold_config(SYNTHETIC, {**assignment, "ghost": 0}, 0), "val")
    with pytest.raises(DataConfigError, match=r"fold=3 is not a fold of the assignment, which uses \[0, 1, 2\]"):
        build_dataset(_fold_config(SYNTHETIC, assignment, 3), "val")
    with pytest.raises(DataConfigError, match=r"fold indices must be integers >= 0"):
        build_dataset(_fold_config(SYNTHETIC, {**assignment, first: -1}, 0), "val")
    with pytest.raises(DataConfigError, match=r"cv_fold split: unknown value 'test'; choose one of train, val"):
        build_dataset(_fold_config(SYNTHETIC, assignment, 0), "test")
    with pytest.raises(DataError, match="split 'train' of fold 0 has no samples"):
        build_dataset(_fold_config(SYNTHETIC, dict.fromkeys(assignment, 0), 0), "train")
    with pytest.raises(DataConfigError, match="pool=.* distinct split names"):
        build_dataset(_fold_config(SYNTHETIC, assignment, 0, pool=["train", "train"]), "val")


def test_a_name_in_two_pooled_splits_is_refused(tmp_path) -> None:
    base = _tiny_folder(tmp_path, per_split=True)
    for i in (0, 1):  # c0 and c1 now also in the val folders
        for kind in ("images", "masks"):
            (tmp_path / kind / "val" / f"c{i}.png").write_bytes((tmp_path / kind / "train" / f"c{i}.png").read_bytes())
    names = [f"c{i}" for i in range(6)]
    with pytest.raises(DataError, match=r"2 sample name\(s\) occur in more than one pooled split, e.g. \['c0', 'c1'\]"):
        build_dataset(_fold_config(base, dict(zip(names, [0, 1] * 3)), 0), "val")
