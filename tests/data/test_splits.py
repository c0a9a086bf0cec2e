"""Deterministic splits: fractions, k folds, list files."""

from __future__ import annotations

import pytest

from unetfamily.data import DataConfigError, DataError, build_dataset, kfold_split, random_split, read_split_file
from unetfamily.data.splits import select_split

NAMES = [f"img{i:03d}" for i in range(50)]


def test_random_split_is_a_seeded_partition():
    fractions = {"train": 0.7, "val": 0.2, "test": 0.1}
    a = random_split(NAMES, fractions, seed=3)
    assert {k: len(v) for k, v in a.items()} == {"train": 35, "val": 10, "test": 5}
    assert sorted(a["train"] + a["val"] + a["test"]) == NAMES
    assert random_split(list(reversed(NAMES)), fractions, seed=3) == a  # listing order does not matter
    assert random_split(NAMES, fractions, seed=4) != a
    assert a["val"][:3] == ["img027", "img029", "img008"]  # pinned: numpy PCG64 is stable across versions
    with pytest.raises(DataConfigError, match="sum to 1"):
        random_split(NAMES, {"train": 0.8, "val": 0.3})


def test_kfold_folds_partition_the_data():
    vals = [kfold_split(NAMES, 5, k, seed=0)["val"] for k in range(5)]
    assert sorted(sum(vals, [])) == NAMES and all(len(v) == 10 for v in vals)
    fold = kfold_split(NAMES, 5, 2, seed=0)
    assert not set(fold["train"]) & set(fold["val"]) and len(fold["train"]) == 40
    with pytest.raises(DataConfigError, match="0 <= fold < folds"):
        kfold_split(NAMES, 5, 5)


def test_read_split_file_formats(tmp_path):
    camvid = tmp_path / "train.txt"
    camvid.write_text("/SegNet/CamVid/train/0001TP_006690.png /SegNet/CamVid/trainannot/0001TP_006690.png\n\n")
    assert read_split_file(camvid) == ["0001TP_006690"]
    plain = tmp_path / "ids.txt"
    plain.write_text("# medico ids\ncju0qkwl35piu0993l0dewei2\nimg.v2\n")
    assert read_split_file(plain) == ["cju0qkwl35piu0993l0dewei2", "img.v2"]
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(DataError, match="empty.txt: split list is empty"):
        read_split_file(tmp_path / "empty.txt")


def test_select_split_from_lists_and_errors(tmp_path):
    (tmp_path / "val.txt").write_text("img001\nimg999\n")
    with pytest.raises(DataError, match=r"val.txt: 1 listed sample\(s\) have no image/mask pair, e.g. \['img999'\]"):
        select_split(NAMES, "val", {"val": "val.txt"}, tmp_path)
    with pytest.raises(DataConfigError, match="defines no 'splits'"):
        select_split(NAMES, "train", None)
    with pytest.raises(DataConfigError, match=r"split: unknown value 'test'; choose one of train, val$"):
        select_split(NAMES, "test", {"folds": 5, "fold": 0})
    with pytest.raises(DataConfigError, match=r"split: unknown value 'vall'; did you mean 'val'\?"):
        select_split(NAMES, "vall", {"train": "train.txt", "val": "val.txt"}, tmp_path)
    assert select_split(NAMES, "all", None) == NAMES


def test_folder_config_splits(pairs_dir):
    base = {"type": "folder", "root": str(pairs_dir), "mask_suffix": "_mask", "in_channels": 3}
    kfold = {**base, "splits": {"folds": 2, "fold": 1, "seed": 0}}
    train, val = build_dataset(kfold, "train"), build_dataset(kfold, "val")
    assert sorted(train.names + val.names) == ["s0", "s1", "s2", "s3"] and len(val) == 2
    (pairs_dir / "test.txt").write_text("s2\ns0\n")
    assert build_dataset({**base, "splits": {"test": "test.txt"}}, "test").names == ["s2", "s0"]
