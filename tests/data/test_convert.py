"""``dataset convert``: any dataset -> plain images/ + masks/ (+ roi/) folders and a data.yaml that reads them back."""

from __future__ import annotations

import argparse
import errno
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from unetfamily.cli import dataset_convert
from unetfamily.data import DataConfigError, DataError, UnknownSplitError, build_dataset
from unetfamily.data.convert import convert_dataset, file_name
from unetfamily.data.io import image_to_float
from unetfamily.files import WriteError

from .conftest import save

H, W = 12, 16


def same_samples(source, converted_config, split: str, *, float_images: bool = False) -> None:
    """Every sample of ``source`` and of the converted dataset's ``split`` has the same name, image, mask and ROI."""
    converted = build_dataset(converted_config, split)
    assert sorted(converted.names) == sorted(source.names)  # in natural name order, as folders are read
    at = {name: j for j, name in enumerate(converted.names)}
    for i in range(len(source)):
        j = at[source.sample_name(i)]
        (image, mask), (got_image, got_mask) = source.read(i), converted.read(j)
        assert np.array_equal(got_mask, mask), source.sample_name(i)
        if float_images:
            assert np.abs(image_to_float(got_image, "converted") - image).max() <= 0.5 / 65535 + 1e-7
        else:
            assert got_image.dtype == image.dtype and np.array_equal(got_image, image), source.sample_name(i)
        roi, got_roi = source.read_roi(i), converted.read_roi(j)
        assert (roi is None and got_roi is None) or np.array_equal(got_roi, roi if roi is not None else True)


@pytest.mark.parametrize("in_channels", [1, 3])
def test_synthetic_round_trip(tmp_path, in_channels):
    cfg = {"type": "synthetic", "num_samples": {"train": 3, "val": 2}, "size": 16, "num_classes": 4,
           "in_channels": in_channels}
    report = convert_dataset(cfg, tmp_path / "out")
    assert report["splits"] == {"train": 3, "val": 2} and not report["roi"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["data.yaml", "train", "val"]  # no staging left
    suffix = ".png" if in_channels == 1 else ".tif"  # float images -> 16 bit: gray PNG, RGB TIFF
    assert [p.suffix for p in (tmp_path / "out" / "val" / "images").iterdir()] == [suffix, suffix]
    for split in ("train", "val"):
        same_samples(build_dataset(cfg, split), report["config"], split, float_images=True)
    with pytest.raises(UnknownSplitError, match="'test'; choose one of train, val"):
        build_dataset(report["config"], "test")  # only the converted splits are named in data.yaml


@pytest.fixture
def odd_formats(tmp_path: Path, rng: np.random.Generator) -> Path:
    """A folder dataset as real ones ship: LZW TIFF and JPEG images, palette GIF masks, 3 classes."""
    root = tmp_path / "src"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(3):
        rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        if i == 2:
            Image.fromarray(rgb).save(root / "images" / f"{i}.jpg", quality=90)
        else:
            Image.fromarray(rgb).save(root / "images" / f"{i}.tif", compression="tiff_lzw")
        labels = np.zeros((H, W), np.uint8)
        labels[i : i + 5, 2:9] = 1
        labels[8:, 10:] = 2
        labels[0, 0] = 255  # ignored
        mask = Image.fromarray(labels, "P")
        mask.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [9] * 759)
        mask.save(root / "masks" / f"{i}.gif", optimize=False)  # Pillow's default optimisation renumbers indices
    return root


def test_folder_of_tiff_jpeg_and_gif_round_trips_as_pngs(tmp_path, odd_formats):
    (odd_formats / "train.txt").write_text("0\n1\n")
    (odd_formats / "val.txt").write_text("2\n")
    cfg = {"type": "folder", "root": str(odd_formats), "classes": ["bg", "a", "b"],
           "splits": {"train": "train.txt", "val": "val.txt"}}
    report = convert_dataset(cfg, tmp_path / "out")
    assert report["splits"] == {"train": 2, "val": 1} and report["in_channels"] == 3
    masks = sorted((tmp_path / "out" / "train" / "masks").iterdir())
    assert [p.name for p in masks] == ["0.png", "1.png"] and Image.open(masks[0]).mode == "L"
    assert Image.open(tmp_path / "out" / "val" / "images" / "2.png").mode == "RGB"
    for split in ("train", "val"):
        same_samples(build_dataset(cfg, split), report["config"], split)


def test_regions_of_interest_are_written_and_read_back(tmp_path, rng):
    root = tmp_path / "src"
    for i in range(3):
        save(root / "images" / f"s{i}.png", rng.integers(0, 65536, (H, W), dtype=np.uint16))  # 16-bit stays
        save(root / "masks" / f"s{i}.png", (rng.random((H, W)) > 0.5).astype(np.uint8))
        fov = np.zeros((H, W), np.uint8)
        fov[: 4 + 2 * i] = 255
        save(root / "fov" / f"s{i}.png", fov)
    cfg = {"type": "folder", "root": str(root), "roi": "fov", "mask_encoding": "index"}
    report = convert_dataset(cfg, tmp_path / "out")
    assert report["splits"] == {"all": 3} and report["roi"]
    assert Image.open(tmp_path / "out" / "all" / "roi" / "s1.png").mode == "L"
    assert Image.open(tmp_path / "out" / "all" / "images" / "s1.png").mode in ("I;16", "I")
    same_samples(build_dataset(cfg, "all"), report["config"], "all")


@pytest.mark.parametrize(("channels", "dtype"), [(2, np.uint8), (3, np.uint16), (5, np.uint16)])
def test_images_no_png_holds_are_written_as_tiff(tmp_path, rng, channels, dtype):
    root = tmp_path / "src"
    (root / "images").mkdir(parents=True)
    for i in range(2):
        pixels = rng.integers(0, np.iinfo(dtype).max, (H, W, channels)).astype(dtype)
        tifffile.imwrite(root / "images" / f"{i}.tif", pixels, photometric="rgb" if channels == 3 else "minisblack",
                         planarconfig="contig")
        save(root / "masks" / f"{i}.png", (rng.random((H, W)) > 0.5).astype(np.uint8))
    cfg = {"type": "folder", "root": str(root), "in_channels": channels}
    report = convert_dataset(cfg, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out" / "all" / "images").iterdir()) == ["0.tif", "1.tif"]
    same_samples(build_dataset(cfg, "all"), report["config"], "all")


def test_masks_past_255_are_16_bit(tmp_path, rng):
    root = tmp_path / "src"
    for i in range(2):
        save(root / "images" / f"{i}.png", rng.integers(0, 256, (H, W), dtype=np.uint8))
        mask = rng.integers(0, 2, (H, W)).astype(np.uint16)
        mask[0] = 1000
        save(root / "masks" / f"{i}.png", mask)
    cfg = {"type": "folder", "root": str(root), "mask_encoding": "index", "ignore_index": 1000}
    report = convert_dataset(cfg, tmp_path / "out")
    assert report["ignore_index"] == 1000
    assert np.asarray(Image.open(tmp_path / "out" / "all" / "masks" / "0.png")).max() == 1000
    same_samples(build_dataset(cfg, "all"), report["config"], "all")


def test_an_out_that_holds_files_is_refused_and_overwrite_replaces_only_the_splits(tmp_path, odd_formats):
    cfg = {"type": "folder", "root": str(odd_formats), "classes": ["bg", "a", "b"]}
    out = tmp_path / "out"
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match=r"out is not empty .*nothing was written.*--overwrite"):
        convert_dataset(cfg, out)
    assert sorted(p.name for p in out.iterdir()) == ["notes"]
    convert_dataset(cfg, out, overwrite=True)
    (odd_formats / "images" / "1.tif").unlink()  # the source loses a sample: no stale file may stay behind
    (odd_formats / "masks" / "1.gif").unlink()
    convert_dataset(cfg, out, overwrite=True)
    assert sorted(p.name for p in (out / "all" / "images").iterdir()) == ["0.png", "2.png"]
    assert (out / "notes" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["all", "data.yaml", "notes"]


def test_a_failed_move_puts_the_earlier_conversion_back(tmp_path, odd_formats, monkeypatch):
    cfg = {"type": "folder", "root": str(odd_formats), "classes": ["bg", "a", "b"]}
    out = tmp_path / "out"
    convert_dataset(cfg, out)
    before = {p.name: p.read_bytes() for p in (out / "all" / "images").iterdir()}
    (odd_formats / "images" / "1.tif").unlink()
    (odd_formats / "masks" / "1.gif").unlink()
    replace = os.replace

    def refuse_config(src, dst):
        if Path(dst) == out / "data.yaml":
            raise PermissionError(errno.EACCES, "Permission denied")
        return replace(src, dst)

    monkeypatch.setattr(os, "replace", refuse_config)
    with pytest.raises(WriteError, match=r"could not write .*out/data.yaml: Permission denied"):
        convert_dataset(cfg, out, overwrite=True)
    assert {p.name: p.read_bytes() for p in (out / "all" / "images").iterdir()} == before
    assert sorted(p.name for p in out.iterdir()) == ["all", "data.yaml"]  # no hidden staging folder left


def test_overwrite_never_replaces_the_source_files(tmp_path, odd_formats):
    layout = odd_formats / "all"
    layout.mkdir()
    for kind in ("images", "masks"):
        (odd_formats / kind).rename(layout / kind)
    cfg = {"type": "folder", "root": str(odd_formats), "images": "all/images", "masks": "all/masks",
           "classes": ["bg", "a", "b"]}
    with pytest.raises(DataError, match=r"--overwrite would replace .*all/images, which holds the source file"):
        convert_dataset(cfg, odd_formats, overwrite=True)
    assert sorted(p.name for p in (layout / "images").iterdir()) == ["0.tif", "1.tif", "2.jpg"]


def test_a_bad_source_file_leaves_no_output(tmp_path, odd_formats):
    (odd_formats / "images" / "1.tif").write_bytes(b"II*\x00" + b"\x00" * 64)
    cfg = {"type": "folder", "root": str(odd_formats), "classes": ["bg", "a", "b"], "in_channels": 3}
    with pytest.raises(DataError, match=r"1.tif"):
        convert_dataset(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(DataError, match=r"out: exists and is not a folder"):
        (tmp_path / "out").write_text("x")
        convert_dataset(cfg, tmp_path / "out")


def test_sample_names_become_safe_unique_file_names(tmp_path, rng):
    assert [file_name(n) for n in ("a/b", "c\\d", ".hidden", "", "e\x00f")] == ["a_b", "c_d", "_hidden", "_", "e_f"]
    root = tmp_path / "src"
    for name in ("Case", "case"):
        save(root / "images" / f"{name}.png", rng.integers(0, 256, (H, W), dtype=np.uint8))
        save(root / "masks" / f"{name}.png", np.eye(H, W, dtype=np.uint8))
    with pytest.raises(DataError, match=r"samples 'Case' and 'case' would both be written as 'case'"):
        convert_dataset({"type": "folder", "root": str(root)}, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_all_with_other_splits_is_refused(tmp_path):
    with pytest.raises(DataConfigError, match=r"'all' holds every sample; give it alone"):
        convert_dataset({"type": "synthetic", "size": 16}, tmp_path / "out", splits=["all", "train"])


def test_the_command_prints_what_it_wrote(tmp_path, capsys):
    source = tmp_path / "synthetic.yaml"
    source.write_text("type: synthetic\nsize: 16\nnum_samples: {train: 3, val: 2}\n")
    parser = argparse.ArgumentParser()
    dataset_convert.add_parser(parser.add_subparsers())
    args = parser.parse_args(["convert", str(source), "--out", str(tmp_path / "out"), "--split", "val"])
    converted = tmp_path / "out" / "data.yaml"
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "wrote 2 sample(s)" in text and "(val 2)" in text and f"load with: {converted}" in text
    assert f"from {source}" in converted.read_text() and len(build_dataset(str(converted), "val")) == 2
