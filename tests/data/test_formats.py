"""Folder pairs, Pascal VOC and TIFF stacks, including every bad-input case."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from unetfamily.data import DataError, build_dataset, pair_folder
from unetfamily.data.formats import VOC_CLASSES

from .conftest import save, tiff_stack_config


def test_folder_pairs_by_stem_with_suffix_over_mixed_formats(pairs_dir):
    config = {"type": "folder", "root": str(pairs_dir), "mask_suffix": "_mask"}
    with pytest.raises(DataError, match=r"1 gray \(e.g. .*s2.bmp\); 3 colour .*declare in_channels"):
        build_dataset(config, split="all")  # gray among colour: the user chooses in_channels
    ds = build_dataset({**config, "in_channels": 3}, split="all")
    assert ds.names == ["s0", "s1", "s2", "s3"]
    assert ds.info.in_channels == 3 and ds.info.classes == ["background", "foreground"]
    for i in range(4):
        s = ds[i]
        assert s["image"].dtype == torch.float32 and s["image"].shape == (3, 20 + i, 24)
        assert 0.0 <= s["image"].min() and s["image"].max() <= 1.0
        assert s["mask"].dtype == torch.int64 and s["mask"].sum() == (4 + i) * 6
    gray = ds[2]["image"]  # the BMP is grayscale: repeated into three equal channels
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[0], gray[2])


def test_in_channels_one_converts_rgb(pairs_dir):
    ds = build_dataset({"type": "folder", "root": str(pairs_dir), "mask_suffix": "_mask", "in_channels": 1}, "all")
    assert ds[0]["image"].shape == (1, 20, 24)


def test_resize_and_cache_give_identical_samples(pairs_dir):
    config = {"type": "folder", "root": str(pairs_dir), "mask_suffix": "_mask", "resize": [16, 12], "in_channels": 3}
    plain, cached = build_dataset(config, "all"), build_dataset({**config, "cache": True}, "all")
    for i in range(4):
        a, b, again = plain[i], cached[i], cached[i]
        assert a["image"].shape == (3, 16, 12) and a["mask"].shape == (16, 12)
        assert torch.equal(a["image"], b["image"]) and torch.equal(b["image"], again["image"])
        assert torch.equal(a["mask"], b["mask"]) and set(a["mask"].unique().tolist()) <= {0, 1}


def test_missing_mask_is_an_error_or_a_counted_skip(pairs_dir, caplog):
    (pairs_dir / "masks" / "s1_mask.png").unlink()
    with pytest.raises(DataError, match=r"s1.jpg: id 's1' has no mask matching '.*masks/\{id\}_mask\.\*'.*on_missing"):
        pair_folder(pairs_dir / "images", pairs_dir / "masks", mask_suffix="_mask")
    with caplog.at_level(logging.WARNING, logger="unetfamily.data"):
        pairs = pair_folder(pairs_dir / "images", pairs_dir / "masks", mask_suffix="_mask", on_missing="skip")
    assert [p.name for p in pairs] == ["s0", "s2", "s3"]
    assert "skipped 1 image(s) without a mask" in caplog.text and "s1.jpg" in caplog.text


def test_size_mismatch_names_both_files(pairs_dir):
    save(pairs_dir / "masks" / "s0_mask.png", np.zeros((7, 7), np.uint8))
    ds = build_dataset({"type": "folder", "root": str(pairs_dir), "mask_suffix": "_mask", "in_channels": 3}, "all")
    with pytest.raises(DataError, match=r"s0.png is 24x20 \(WxH\) but its mask .*s0_mask.png is 7x7"):
        ds[0]


def test_corrupt_image_in_a_dataset(pairs_dir):
    (pairs_dir / "images" / "s3.tif").write_bytes(b"not a tiff at all")
    config = {"type": "folder", "root": str(pairs_dir), "mask_suffix": "_mask"}
    with pytest.raises(DataError, match="s3.tif: cannot read TIFF"):  # in_channels is read from every image's header
        build_dataset(config, "all")
    ds = build_dataset({**config, "in_channels": 3}, "all")
    with pytest.raises(DataError, match="s3.tif: cannot read TIFF"):
        ds[3]


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "images" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"images: no images \(.png, .jpg"):
        pair_folder(tmp_path / "images", tmp_path / "masks")
    with pytest.raises(DataError, match="nowhere: folder not found"):
        pair_folder(tmp_path / "nowhere", tmp_path / "masks")


def test_duplicate_stems_are_refused(pairs_dir, rng):
    save(pairs_dir / "images" / "s0.bmp", rng.integers(0, 256, (20, 24), dtype=np.uint8))
    with pytest.raises(DataError, match="s0.bmp and s0.png both give sample 's0'"):
        pair_folder(pairs_dir / "images", pairs_dir / "masks", mask_suffix="_mask")


def _voc_palette() -> list[int]:
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r, g, b = r | ((c & 1) << (7 - j)), g | (((c >> 1) & 1) << (7 - j)), b | (((c >> 2) & 1) << (7 - j))
            c >>= 3
        pal += [r, g, b]
    return pal


@pytest.fixture
def voc_root(tmp_path, rng):
    """A tiny VOC2012-layout tree: JPEG images, palette PNG masks with 255 borders, split lists."""
    for i, name in enumerate(["2007_000032", "2007_000039", "2007_000063"]):
        save(tmp_path / "JPEGImages" / f"{name}.jpg", rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
        mask = np.zeros((24, 32), np.uint8)
        mask[4:20, 6:26] = 255  # object boundary band, ignored
        mask[6:18, 8:24] = [1, 15, 20][i]
        im = Image.fromarray(mask)
        im.putpalette(_voc_palette())
        (tmp_path / "SegmentationClass").mkdir(exist_ok=True)
        im.save(tmp_path / "SegmentationClass" / f"{name}.png")
    lists = tmp_path / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("2007_000032\n2007_000039\n")
    (lists / "val.txt").write_text("2007_000063\n")
    return tmp_path


def test_voc_layout(voc_root):
    assert Image.open(voc_root / "SegmentationClass" / "2007_000032.png").mode == "P"
    train = build_dataset({"type": "voc", "root": str(voc_root)}, "train")
    val = build_dataset({"type": "voc", "root": str(voc_root)}, "val")
    assert len(train) == 2 and len(val) == 1 and train.info.classes == VOC_CLASSES
    assert train.info.ignore_index == 255 and train.info.num_model_outputs == 21
    assert train[1]["mask"].unique().tolist() == [0, 15, 255]  # person, border ignored
    assert val[0]["image"].shape == (3, 24, 32)
    with pytest.raises(DataError, match=r"trainval.txt: no such split list; available: \['train', 'val'\]"):
        build_dataset({"type": "voc", "root": str(voc_root)}, "trainval")


def test_tiff_stack_slices_and_split(tmp_path, rng):
    images = rng.integers(0, 256, (5, 16, 18), dtype=np.uint8)
    labels = np.where(rng.random((5, 16, 18)) < 0.3, 0, 255).astype(np.uint8)
    config = tiff_stack_config(tmp_path, images, labels, {"train": [0, 4], "val": [4, 5]})
    train, val = build_dataset(config, "train"), build_dataset(config, "val")
    assert len(train) == 4 and len(val) == 1 and val.names == ["train-volume_004"]
    s = val[0]
    assert s["image"].shape == (1, 16, 18)
    assert torch.equal(s["image"][0], torch.from_numpy(images[4]).float() / 255)
    assert torch.equal(s["mask"], torch.from_numpy((labels[4] == 0).astype(np.int64)))
    tifffile.imwrite(tmp_path / "short.tif", labels[:3], photometric="minisblack")
    with pytest.raises(DataError, match="same slice count"):
        build_dataset({**config, "labels": str(tmp_path / "short.tif")}, "train")


def test_voc_all_is_every_listed_sample_once(voc_root):
    # docs/data.md: split "all" always returns every sample; VOC has no all.txt, so it is the union of its lists
    (voc_root / "ImageSets" / "Segmentation" / "trainval.txt").write_text("2007_000032\n2007_000039\n2007_000063\n")
    every = build_dataset({"type": "voc", "root": str(voc_root)}, "all")
    assert every.names == ["2007_000032", "2007_000039", "2007_000063"]  # in list order, each once
