"""Pairing images and masks by sample id: templates, regexes, per-split mappings, and every refusal."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from unetfamily.data import DataConfigError, DataError, UnknownSplitError, build_dataset, pair_folder
from unetfamily.data.pattern import config_pattern, find_files

from .conftest import save

#: The issue's layout: names differ by a per-split tag, masks are GIFs.
TEMPLATES = {"images": "{split}/images/{id}_{tag}.tif", "masks": "{split}/labels/{id}_label.gif"}


def mask_of(i: int, h: int = 12, w: int = 16) -> np.ndarray:
    """A 0/255 mask whose foreground area depends on ``i``."""
    mask = np.zeros((h, w), np.uint8)
    mask[1 : 2 + i % 8, 2:9] = 255
    return mask


@pytest.fixture
def issue_root(tmp_path: Path, rng: np.random.Generator) -> Path:
    """``train/images/{2,7,10}_train.tif`` + ``train/labels/N_label.gif``; ``test/images/3_eval.tif`` + label."""
    for split, tag, ids in (("train", "train", (10, 2, 7)), ("test", "eval", (3,))):
        for i in ids:
            save(tmp_path / split / "images" / f"{i}_{tag}.tif", rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
            save(tmp_path / split / "labels" / f"{i}_label.gif", mask_of(i))
    return tmp_path


def config(root: Path, **keys) -> dict:
    return {"type": "folder", "root": str(root), **TEMPLATES, **keys}


def test_issue_layout_pairs_by_template_in_natural_order(issue_root):
    train, test = build_dataset(config(issue_root), "train"), build_dataset(config(issue_root), "test")
    assert train.names == ["2", "7", "10"] and test.names == ["3"]
    assert [s.mask.name for s in train.samples] == ["2_label.gif", "7_label.gif", "10_label.gif"]
    for ds in (train, test):
        for i, name in enumerate(ds.names):
            sample = ds[i]
            assert sample["image"].shape == (3, 12, 16)
            assert torch.equal(sample["mask"], torch.from_numpy(mask_of(int(name)) // 255).long())


def test_per_split_mapping_gives_each_split_its_tag(issue_root):
    images = {"train": "train/images/{id}_train.tif", "test": "test/images/{id}_eval.tif"}
    cfg = config(issue_root, images=images)
    assert build_dataset(cfg, "train").names == ["2", "7", "10"] and build_dataset(cfg, "test").names == ["3"]
    with pytest.raises(UnknownSplitError, match=r"images split: unknown value 'val'; choose one of test, train"):
        build_dataset(cfg, "val")
    with pytest.raises(DataConfigError, match=r"give either 'splits' or a \{split\} folder layout"):
        build_dataset({**cfg, "splits": {"fractions": {"train": 1.0}}}, "train")


def test_regex_pairing_with_named_id_group(issue_root):
    cfg = {"type": "folder", "root": str(issue_root), "images": "{split}/images", "masks": "{split}/labels",
           "image_regex": r"(?P<id>\d+)_(train|eval)\.tif$", "mask_regex": r"^(?P<id>\d+)_label"}
    assert build_dataset(cfg, "train").names == ["2", "7", "10"] and build_dataset(cfg, "test").names == ["3"]
    with pytest.raises(DataConfigError, match=r"mask_regex='\(\\\\d\+\)_label' has no named group 'id'"):
        build_dataset({**cfg, "mask_regex": r"(\d+)_label"}, "train")
    with pytest.raises(DataConfigError, match=r"image_regex='\(\?P<id>' is not a valid regular expression"):
        build_dataset({**cfg, "image_regex": "(?P<id>"}, "train")
    with pytest.raises(DataConfigError, match="give mask_suffix or mask_regex, not both"):
        build_dataset({**cfg, "mask_suffix": "_label"}, "train")
    with pytest.raises(DataError, match=r"7_train.tif: image_regex .* gives an empty id"):
        build_dataset({**cfg, "image_regex": r"(?P<id>x*)7_train"}, "train")


def test_regex_searches_subfolders(tmp_path, rng):
    for i, sub in ((1, "a"), (2, "b")):
        save(tmp_path / "images" / sub / f"img{i}.png", rng.integers(0, 256, (8, 8), dtype=np.uint8))
        save(tmp_path / "masks" / f"m{i}.png", mask_of(i, 8, 8))
    cfg = {"type": "folder", "root": str(tmp_path), "image_regex": r"^[ab]/img(?P<id>\d)", "mask_regex": r"m(?P<id>\d)"}
    ds = build_dataset(cfg, "all")
    assert ds.names == ["1", "2"] and ds.samples[1].image == tmp_path / "images" / "b" / "img2.png"


def test_id_in_a_folder_name(tmp_path, rng):
    """A DSB2018-like tree: ``{id}/image.png`` next to ``{id}/mask.png``; wildcards in folders are walked."""
    for name in ("case10", "case2"):
        save(tmp_path / "cases" / name / "image.png", rng.integers(0, 256, (8, 8), dtype=np.uint8))
        save(tmp_path / "cases" / name / "mask.png", mask_of(3, 8, 8))
    (tmp_path / "cases" / "notes.png").write_bytes(b"")  # a file where folders are expected: not walked into
    ds = build_dataset({"type": "folder", "root": str(tmp_path), "images": "cases/{id}/image.png",
                        "masks": "cases/{id}/mask.png"}, "all")
    assert ds.names == ["case2", "case10"]


def test_folder_form_equals_its_template(pairs_dir):
    by_folder = pair_folder(pairs_dir / "images", pairs_dir / "masks", mask_suffix="_mask")
    cfg = {"type": "folder", "root": str(pairs_dir), "images": "images/{id}.*", "masks": "masks/{id}_mask.*",
           "in_channels": 3}
    assert build_dataset(cfg, "all").samples == by_folder


def test_extensions_match_in_any_case_and_hidden_files_are_skipped(tmp_path, rng):
    save(tmp_path / "img" / "a.PNG", rng.integers(0, 256, (8, 8), dtype=np.uint8))
    save(tmp_path / "img" / ".b.png", rng.integers(0, 256, (8, 8), dtype=np.uint8))
    save(tmp_path / "lbl" / "a-gt.png", mask_of(2, 8, 8))
    pattern = config_pattern("images", "img/{id}.png", tmp_path, "all")
    assert list(find_files(pattern)) == ["a"]
    assert build_dataset({"type": "folder", "root": str(tmp_path), "images": "img/{id}", "masks": "lbl/{id}-gt"},
                         "all").names == ["a"]


def test_unpaired_image_shows_its_id_and_the_pattern(issue_root):
    (issue_root / "train" / "labels" / "7_label.gif").unlink()
    with pytest.raises(DataError, match=r"train/images/7_train.tif: id '7' has no mask matching "
                                        r"'.*train/labels/\{id\}_label.gif' \(1 image\(s\) lack one\)"):
        build_dataset(config(issue_root), "train")
    assert build_dataset(config(issue_root, on_missing="skip"), "train").names == ["2", "10"]


def test_two_files_with_one_id_are_both_named(issue_root, rng):
    save(issue_root / "train" / "images" / "7_old.tif", rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    with pytest.raises(DataError, match=r"7_old.tif and 7_train.tif both give sample '7'; keep one"):
        build_dataset(config(issue_root), "train")


def test_a_template_matching_nothing_shows_a_file_that_is_there(issue_root):
    with pytest.raises(DataError, match=r"labels: no masks .* matching '.*train/labels/\{id\}_lbl.gif'; "
                                        r"e.g. '2_label.gif' is there; check 'masks'"):
        build_dataset(config(issue_root, masks="{split}/labels/{id}_lbl.gif"), "train")
    with pytest.raises(DataError, match=r"no images .* matching '.*/\{x\}/\{id\}.png'; e.g. 'test/images/3_eval.tif'"):
        build_dataset(config(issue_root, images="{x}/{id}.png"), "train")


BAD_TEMPLATES = [
    ("images", "images/{tag}.png", r"images='images/\{tag\}.png' is invalid; a template needs \{id\} exactly once"),
    ("masks", "{id}/{id}.png", r"masks='\{id\}/\{id\}.png' is invalid; a template needs \{id\} exactly once.*found 2"),
    ("images", "images/{}.png", r"images='images/\{\}.png' is invalid; \{\} is not a placeholder"),
    ("images", "images/{0}_{id}.png", r"\{0\} is not a placeholder"),
    ("images", "images/{id:>3}.png", r"\{id:>3\} is not a placeholder"),
    ("masks", "masks/{id}}.png", r"masks='masks/\{id\}\}.png' is invalid; braces must enclose a placeholder"),
    ("masks", "masks/{", r"masks='masks/\{' is invalid; braces must enclose a placeholder"),
    ("images", "/abs/{id}.png", r"images='/abs/\{id\}.png' is invalid; give a path relative to 'root'"),
    ("images", "C:/data/{id}.png", r"give a path relative to 'root'"),
    ("images", "images\\{id}.png", r"give a path relative to 'root' with / between folders"),
    ("masks", "../other/{id}.png", r"masks='../other/\{id\}.png' is invalid; '..' leads out of 'root'"),
    ("masks", "masks/{id}.jp2", r"masks='masks/\{id\}.jp2' is invalid; .jp2 files are not read"),
    ("images", "images/7.png", r"images='images/7.png' is invalid; it names a file: .*'images/\{id\}.png'"),
    ("images", 5, r"images=5 is invalid; give a folder, a template"),
]


@pytest.mark.parametrize("key, value, match", BAD_TEMPLATES, ids=[repr(v) for _, v, _ in BAD_TEMPLATES])
def test_bad_templates_name_the_key(pairs_dir, key, value, match):
    with pytest.raises(DataConfigError, match=match):
        suffix = {"mask_suffix": "_mask"} if key == "images" else {}
        build_dataset({"type": "folder", "root": str(pairs_dir), **suffix, key: value}, "all")


def test_suffix_with_a_template_is_refused(pairs_dir):
    with pytest.raises(DataConfigError, match=r"mask_suffix applies only when 'masks' names a folder"):
        build_dataset({"type": "folder", "root": str(pairs_dir), "masks": "masks/{id}.png", "mask_suffix": "_m"}, "all")


def test_split_layouts_refuse_split_all_and_absent_splits(issue_root):
    with pytest.raises(UnknownSplitError, match="split 'all' needs one folder of images"):
        build_dataset(config(issue_root), "all")
    with pytest.raises(UnknownSplitError, match=r"split 'val': none of .*val/images, .*val/labels exists"):
        build_dataset(config(issue_root), "val")
    with pytest.raises(UnknownSplitError, match=r"split '../train' cannot name a folder"):
        build_dataset(config(issue_root), "../train")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_named_like_an_image_is_refused_without_opening(issue_root):
    os.mkfifo(issue_root / "train" / "labels" / "5_label.gif")
    with pytest.raises(DataError, match=r"5_label.gif: is a named pipe \(FIFO\), not a regular file"):
        build_dataset(config(issue_root), "train")


CONTROL_NAMES = ["a\nb", "c\td", "e\rf", "g\x0bh", "i\x85j", "k\u2028l", "plain"]


@pytest.mark.parametrize("layout", [
    {"mask_suffix": "_m"},
    {"images": "images/{id}.png", "masks": "masks/{id}_m.*"},
    {"image_regex": r"(?P<id>.+)\.png", "mask_regex": r"(?P<id>.+)_m\.png"},
], ids=["folder", "template", "regex"])
def test_names_with_a_newline_or_other_control_characters_pair_like_any_other(tmp_path, rng, layout):
    """A newline in a file name dropped the sample silently ('.' without DOTALL stops at it)."""
    for name in CONTROL_NAMES:
        save(tmp_path / "images" / f"{name}.png", rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
        save(tmp_path / "masks" / f"{name}_m.png", mask_of(len(name)))
    ds = build_dataset({"type": "folder", "root": str(tmp_path), **layout}, "all")
    assert sorted(ds.names) == sorted(CONTROL_NAMES)
    assert all(s.image.stem == s.name and s.mask.stem == f"{s.name}_m" for s in ds.samples)
