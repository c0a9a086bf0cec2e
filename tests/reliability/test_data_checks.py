"""Data errors surface before training, never after: every split checked first, properties decided once.

Classes (issue 13), each tried with real files:

1. dataset properties (in_channels, classes, sizes) decided once for all splits, and every split's
   files checked before the first training step (:func:`unetfamily.data.check_dataset`);
2. mask values whose meaning differs from the declaration are refused with the values found;
3. special files (FIFOs, sockets, devices, directories named like images) refused without opening;
4. every numeric or list key of every dataset type range-checked when the dataset is built;
5. split lists: leakage and repeats warned about (refused under ``strict: true``), a declared but
   broken split list is an error, never a fallback;
6. a corrupt file in ``val`` is found before step 1.
"""
from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from PIL import Image

from tests.reliability.conftest import finish, start
from unetfamily.data import (
    DataConfigError, DataError, UnknownSplitError, build_dataset, check_dataset,
)
from unetfamily.errors import ConfigError

RNG = np.random.default_rng(0)


def png(path: Path, array: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kw)
    return path


def gray(h: int = 16, w: int = 16) -> np.ndarray:
    return RNG.integers(0, 256, (h, w), dtype=np.uint8)


def rgb(h: int = 16, w: int = 16) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def mask(h: int = 16, w: int = 16, values: tuple[int, ...] = (0, 1)) -> np.ndarray:
    m = np.full((h, w), values[0], np.uint8)
    for k, v in enumerate(values[1:]):
        m[k * 2 : k * 2 + 2, :] = v
    return m


def folder(root: Path, images: dict[str, np.ndarray], masks: dict[str, np.ndarray] | None = None,
           **config) -> dict:
    """Write images/NAME.png and masks/NAME.png (0/1 masks by default); the folder config reading them."""
    for name, image in images.items():
        png(root / "images" / f"{name}.png", image)
        m = (masks or {}).get(name, mask(*image.shape[:2]))
        png(root / "masks" / f"{name}.png", m)
    return {"type": "folder", "root": str(root), **config}


def lists(root: Path, **splits: list[str]) -> dict:
    out = {}
    for split, names in splits.items():
        (root / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
        out[split] = f"{split}.txt"
    return out


def cli(*args: str, timeout: float = 60) -> tuple[int, str, str]:
    """Run ``unetfamily ARGS`` in a subprocess; a run past ``timeout`` fails the test as a hang."""
    proc = start([sys.executable, "-m", "unetfamily", *args])
    out, err = finish(proc, timeout)
    return proc.returncode, out, err


def cli_here(capsys, *args: str, fifo: Path | None = None, timeout: float = 30) -> tuple[int, str, str]:
    """Run ``unetfamily ARGS`` in this process, in a thread; past ``timeout`` it fails as a hang.

    A thread blocked opening ``fifo`` is released by opening the FIFO's other end, so a broken
    check fails the test instead of hanging it.
    """
    from unetfamily.cli import main

    capsys.readouterr()
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(main(list(args))), daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        if fifo is not None:
            with open(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK), "wb"):
                pass
        worker.join(10)
        raise AssertionError(f"unetfamily {' '.join(args)} still running after {timeout} s: a hang")
    captured = capsys.readouterr()
    return result[0], captured.out, captured.err


def error_line(err: str) -> str:
    """The CLI's one ``error:`` line (log lines before it are allowed); a traceback fails."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


# -- 1. properties decided once; every split checked before training ------------------------------


def test_gray_and_rgb_mixed_in_one_folder_are_refused_until_in_channels_is_declared(tmp_path, caplog):
    # val's images are all gray, train's first image is RGB: decided per split, val got in_channels=1
    images = {"a0": rgb(), "a1": gray(), "b0": gray(), "b1": gray()}
    config = folder(tmp_path, images, splits=lists(tmp_path, train=["a0", "a1"], val=["b0", "b1"]))
    for split in ("train", "val"):  # every split sees the whole folder
        with pytest.raises(DataError, match=r"do not share one channel count: 3 gray \(e.g. .*a1.png\); 1 colour "
                                            r"\(e.g. .*a0.png\); declare in_channels: 3 .* or in_channels: 1"):
            build_dataset(config, split)
    for channels in (1, 3):  # declared: the documented conversion, the same for every split
        declared = {**config, "in_channels": channels}
        assert check_dataset(declared).info.in_channels == channels
        assert build_dataset(declared, "val")[0]["image"].shape == (channels, 16, 16)
        assert build_dataset(declared, "train")[0]["image"].shape == (channels, 16, 16)


def test_splits_read_differently_are_refused_before_training(tmp_path):
    for split, image in (("train", rgb()), ("val", gray())):  # a {split} layout: one folder per split
        png(tmp_path / "images" / split / "x.png", image)
        png(tmp_path / "masks" / split / "x.png", mask())
    config = {"type": "folder", "root": str(tmp_path), "images": "images/{split}", "masks": "masks/{split}"}
    with pytest.raises(DataConfigError, match=r"splits 'train' and 'val' are read differently.*declare in_channels"):
        check_dataset(config)
    assert check_dataset({**config, "in_channels": 3}).samples == {"train": 1, "val": 1}


def test_channel_counts_that_cannot_convert_are_refused_naming_files(tmp_path):
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    five = RNG.integers(0, 255, (16, 16, 5), dtype=np.uint8)
    tifffile.imwrite(root / "images" / "five.tif", five, planarconfig="contig")
    png(root / "images" / "rgb.png", rgb())
    for name in ("five", "rgb"):
        png(root / "masks" / f"{name}.png", mask())
    with pytest.raises(DataError, match=r"do not share one channel count: 1 colour \(e.g. .*rgb.png\); 1 5-channel"):
        build_dataset({"type": "folder", "root": str(root)}, "all")
    with pytest.raises(DataError, match=r"five.tif: image has 5 channels; cannot convert to in_channels=3"):
        check_dataset({"type": "folder", "root": str(root), "in_channels": 3}, ["all"], optional=[])


def test_every_bad_file_of_every_split_is_listed_in_one_error(tmp_path):
    images = {f"s{i}": gray() for i in range(6)}
    masks = {"s4": mask(values=(0, 7))}  # a value outside the 2 classes
    config = folder(tmp_path, images, masks, in_channels=1,
                    splits=lists(tmp_path, train=["s0", "s1", "s2"], val=["s3", "s4", "s5"]))
    good = (tmp_path / "images" / "s5.png").read_bytes()
    (tmp_path / "images" / "s5.png").write_bytes(good[: len(good) // 2])  # truncated
    png(tmp_path / "masks" / "s1.png", mask(9, 9))  # wrong size
    with pytest.raises(DataError) as caught:
        check_dataset(config)
    text = str(caught.value)
    assert "data check: 3 bad file(s) among 12 (train 1, val 2), found before training" in text
    assert "s1.png is 16x16 (WxH) but its mask" in text and "s1.png is 9x9" in text
    assert "s4.png: values {0, 7} are not a binary mask" in text and "s5.png: cannot read image" in text


def test_images_of_several_sizes_need_resize_crop_or_batch_size_one(tmp_path):
    images = {"a": gray(16, 16), "b": gray(20, 24), "c": gray(16, 16), "d": gray(20, 24)}
    config = folder(tmp_path, images, splits=lists(tmp_path, train=["a", "b"], val=["c", "d"]))
    with pytest.raises(DataError, match=r"split 'train': images of 2 sizes \(HxW 16x16 \(a\), 20x24 \(b\)\) cannot be "
                                        r"stacked into batches of 2; set the dataset's 'resize'"):
        check_dataset(config, batch_sizes={"train": 2, "val": 1})
    check_dataset(config, batch_sizes={"train": 1, "val": 1})
    check_dataset({**config, "resize": 16}, batch_sizes={"train": 2, "val": 2})
    pytest.importorskip("kornia")
    cropped = {**config, "augment": {"preset": "light", "crop_size": 16}}  # crops train only
    check_dataset(cropped, batch_sizes={"train": 2, "val": 1})
    with pytest.raises(DataError, match="split 'val': images of 2 sizes"):
        check_dataset(cropped, batch_sizes={"train": 2, "val": 2})


def test_a_file_changed_on_disk_is_read_again(tmp_path):
    config = folder(tmp_path, {"a": gray(), "b": gray()}, in_channels=1, splits=lists(tmp_path, train=["a"], val=["b"]))
    check_dataset(config)
    png(tmp_path / "masks" / "b.png", mask(values=(0, 5)))  # the per-file cache keys on size and mtime
    with pytest.raises(DataError, match=r"b.png: values \{0, 5\} are not a binary mask"):
        check_dataset(config)


def test_dataset_check_command_reports_and_refuses_in_one_line(tmp_path, capsys):
    config = folder(tmp_path, {"a": gray(), "b": gray()}, splits=lists(tmp_path, train=["a"], val=["b"]))
    path = tmp_path / "data.yaml"
    path.write_text(yaml.safe_dump(config))
    code, out, err = cli_here(capsys, "dataset", "check", str(path))
    assert code == 0 and "data check passed: 4 file(s)" in out and "samples: train 1, val 1" in out, err
    png(tmp_path / "masks" / "b.png", mask(values=(0, 3)))
    code, out, err = cli_here(capsys, "dataset", "check", str(path))
    assert code == 2 and "data check: 1 bad file(s) among 4 (val 1)" in error_line(err)


# -- 2. mask values that do not fit the declaration ------------------------------------------------


@pytest.mark.parametrize("values, encoding, match", [
    ((0, 1, 2), "binary", r"binary mask values \{0, 1, 2\} are not \{0, 255\} or \{0, 1\}"),
    ((0, 1, 2), None, r"values \{0, 1, 2\} are not a binary mask"),
    ((0, 1, 255), "auto", r"values \{0, 1, 255\} are not a binary mask.*'index' if 255 means ignore"),
    ((0, 3), "index", r"mask values \{3\} are outside the classes 0..1 \(ignore_index=255\); found \{0, 3\}"),
    ((0, 5), {"kind": "map", "values": {0: 0, 255: 1}}, r"mask values \{5\} are not in mask_encoding 'values' "
                                                         r"\(declared: \[0, 255\]\)"),
])
def test_mask_values_that_do_not_fit_are_refused_with_values_and_declaration(tmp_path, values, encoding, match):
    config = folder(tmp_path, {"a": gray()}, {"a": mask(values=values)}, mask_encoding=encoding)
    with pytest.raises(DataError, match=match):
        check_dataset(config, ["all"], optional=[])


def test_0_255_masks_declared_as_class_indices_are_refused(tmp_path):
    # 'index' with 2 classes reads 255 as ignore_index: all foreground would be silently ignored
    config = folder(tmp_path, {"a": gray(), "b": gray()}, {n: mask(values=(0, 255)) for n in "ab"},
                    mask_encoding="index")
    with pytest.raises(DataError, match=r"no mask holds a class other than 0 \('background'\), but masks hold 255 "
                                        r"\(= ignore_index\).*declare mask_encoding: binary"):
        check_dataset(config, ["all"], optional=[])
    assert check_dataset({**config, "mask_encoding": "binary"}, ["all"], optional=[]).classes_found == [
        "background", "foreground"]


def test_auto_never_reads_255_as_foreground_in_one_file_and_ignore_in_another(tmp_path):
    masks = {"a": mask(values=(0, 1)), "b": mask(values=(0, 255)), "c": mask(values=(0,))}
    config = folder(tmp_path, {n: gray() for n in "abc"}, masks)
    with pytest.raises(DataError, match=r"a.png holds \{0, 1\}.*b.png holds \{0, 255\}.*255 cannot mean both"):
        check_dataset(config, ["all"], optional=[])
    for sub in ("images", "masks"):
        (tmp_path / sub / "a.png").unlink()
    check_dataset(config, ["all"], optional=[])  # all-0 masks fit either reading


def test_colours_outside_the_declared_table_and_palette_files_are_refused(tmp_path):
    colour = np.zeros((16, 16, 3), np.uint8)
    colour[:4] = (10, 200, 30)
    enc = {"kind": "rgb", "colors": {0: [0, 0, 0], 1: [255, 0, 0]}}
    config = folder(tmp_path / "rgb", {"a": gray()}, {"a": colour}, mask_encoding=enc)
    with pytest.raises(DataError, match=r"1 colour\(s\) not in the colour table, e.g. \[\(10, 200, 30\)\]"):
        check_dataset(config, ["all"], optional=[])
    palette = Image.new("P", (16, 16))
    palette.putdata(mask(values=(0, 1)).ravel().tolist())
    palette.putpalette([0, 0, 0, 255, 0, 0])
    root = tmp_path / "pal"
    png(root / "images" / "a.png", gray())
    (root / "masks").mkdir()
    palette.save(root / "masks" / "a.png")
    with pytest.raises(DataError, match=r"a palette PNG, whose pixels are palette indices \{0, 1\}.*encoding: index"):
        check_dataset({"type": "folder", "root": str(root), "mask_encoding": enc}, ["all"], optional=[])


def test_float_masks_must_hold_whole_numbers(tmp_path):
    root = tmp_path / "d"
    png(root / "images" / "a.png", gray())
    (root / "masks").mkdir()
    tifffile.imwrite(root / "masks" / "a.tif", np.where(mask() > 0, 0.5, 0.0).astype(np.float32))
    with pytest.raises(DataError, match=r"a.tif: float mask values \{0.5\} are not whole numbers"):
        check_dataset({"type": "folder", "root": str(root)}, ["all"], optional=[])


@pytest.mark.parametrize("encoding, match", [
    ({"kind": "rgb", "colors": {1: [0, 0, 0], 2: [0, 0, 0]}}, r"\[0, 0, 0\] is given to classes 1 and 2"),
    ({"kind": "rgb", "colors": {1: [0, 0, 300]}}, r"mask_encoding colors\[1\] must be between 0 and 255, got 300"),
    ({"kind": "rgb", "colors": {1: [0, 0]}}, r"is not an \[r, g, b\] triple"),
    ({"kind": "rgb", "colors": {5: [9, 9, 9]}}, r"colors maps to \[5\], which are neither classes 0..1"),
    ({"kind": "map", "values": {"x": 1}}, r"mask_encoding values key='x' is not a number; it must be at least 0"),
    ({"kind": "map", "values": {-1: 1}}, r"mask_encoding values key must be at least 0, got -1"),
    ({"kind": "map", "values": {0: 0, 255: 7}}, r"values maps to \[7\]"),
    ({"kind": "binary", "threshold": -1}, r"mask_encoding threshold must be at least 0, got -1"),
    ({"kind": "binary", "threshold": "high"}, r"mask_encoding threshold='high' is not a number"),
    ({"kind": "index", "threshold": 5}, r"'threshold' applies to binary masks"),
    ("binary-ish", r"mask_encoding kind: unknown value 'binary-ish'"),
])
def test_mask_encoding_tables_are_checked_when_built(tmp_path, encoding, match):
    config = folder(tmp_path, {"a": gray()}, mask_encoding=encoding)
    with pytest.raises(DataConfigError, match=match):
        build_dataset(config, "all")


# -- 3. special files ------------------------------------------------------------------------------


def _fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def test_fifo_named_like_an_image_is_refused_without_opening_it(tmp_path):
    config = folder(tmp_path, {"a": gray()})
    _fifo(tmp_path / "images" / "x.png")  # opening it for reading would block forever
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(config))
    code, _, err = cli("dataset", "info", str(tmp_path / "data.yaml"), timeout=60)  # a separate process
    assert code == 2 and "x.png: is a named pipe (FIFO), not a regular file" in error_line(err), err


@pytest.mark.parametrize("command", ["info", "check"])
@pytest.mark.parametrize("where", ["masks/a.png", "split list", "class list", "dataset config", "tiff stack"])
def test_fifo_in_place_of_any_file_the_data_layer_reads(tmp_path, capsys, where, command):
    config = folder(tmp_path, {"a": gray(), "b": gray()})
    if where == "masks/a.png":
        (tmp_path / "masks" / "a.png").unlink()
        fifo = _fifo(tmp_path / "masks" / "a.png")
    elif where == "split list":
        fifo = _fifo(tmp_path / "train.txt")
        config["splits"] = {"train": "train.txt"}
    elif where == "class list":
        fifo = _fifo(tmp_path / "classes.txt")
        config["classes"] = str(fifo)
    elif where == "dataset config":
        fifo = _fifo(tmp_path / "data.yaml")
    else:
        fifo = _fifo(tmp_path / "v.tif")
        config = {"type": "tiff_stack", "images": str(fifo), "labels": str(fifo)}
    path = str(fifo) if where == "dataset config" else _yaml(tmp_path, config)
    split = "train" if where == "split list" else "all"
    code, _, err = cli_here(capsys, "dataset", command, path, "--split", split, fifo=fifo)
    assert code == 2 and "is a named pipe (FIFO), not a regular file" in error_line(err), err


def _yaml(tmp_path: Path, config: dict) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_directories_sockets_devices_and_broken_links_named_like_images(tmp_path):
    config = folder(tmp_path, {"a": gray()})
    (tmp_path / "masks" / "d.png").mkdir()
    with pytest.raises(DataError, match=r"masks/d.png: is a directory, not a regular file"):
        build_dataset(config, "all")
    (tmp_path / "masks" / "d.png").rmdir()
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(tmp_path / "images" / "s.png"))
        with pytest.raises(DataError, match=r"images/s.png: is a socket"):
            build_dataset(config, "all")
    finally:
        server.close()
        (tmp_path / "images" / "s.png").unlink()
    (tmp_path / "images" / "z.png").symlink_to("/dev/zero")  # reading it would never end
    with pytest.raises(DataError, match=r"images/z.png: is a character device"):
        build_dataset(config, "all")
    (tmp_path / "images" / "z.png").unlink()
    (tmp_path / "images" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(DataError, match=r"gone.png: image not found \(a broken symbolic link\)"):
        build_dataset(config, "all")
    (tmp_path / "images" / "gone.png").unlink()
    (tmp_path / "images" / "link.png").symlink_to(tmp_path / "images" / "a.png")  # a link to a file is fine
    (tmp_path / "masks" / "link.png").symlink_to(tmp_path / "masks" / "a.png")
    assert len(build_dataset(config, "all")) == 2


# -- 4. numeric and list keys of every dataset type ------------------------------------------------


def _stack(tmp_path: Path, **keys) -> dict:
    tifffile.imwrite(tmp_path / "v.tif", RNG.integers(0, 255, (6, 8, 8), dtype=np.uint8))
    tifffile.imwrite(tmp_path / "l.tif", np.where(RNG.random((6, 8, 8)) < 0.5, 0, 255).astype(np.uint8))
    return {"type": "tiff_stack", "images": str(tmp_path / "v.tif"), "labels": str(tmp_path / "l.tif"),
            "mask_encoding": "binary", **keys}


SLICES = "give \\[start, stop\\] with 0 <= start < stop <= 6"


@pytest.mark.parametrize("slices, match", [
    ({"train": [5, 2]}, rf"slices.train=\[5, 2\] is invalid; {SLICES}"),
    ({"train": 5}, rf"slices.train=5 is invalid; {SLICES}"),
    ({"train": ["a", "b"]}, rf"slices.train=\['a', 'b'\] is invalid; {SLICES}"),
    ({"train": [-1, 3]}, r"slices.train=\[-1, 3\] is invalid"),
    ({"train": [0, 99]}, r"slices.train=\[0, 99\] is invalid; give \[start, stop\] with 0 <= start < stop <= 6 "
                         r"\(the stack has 6 slices"),
    ({"train": [3, 3]}, r"slices.train=\[3, 3\] is invalid"),
    ({"train": [0, 2.5]}, r"slices.train=\[0, 2.5\] is invalid"),
    ({"train": [0, 4], "val": [4, 60]}, r"slices.val=\[4, 60\] is invalid"),  # checked when train is built
    ([0, 4], r"slices=\[0, 4\] is invalid; give \{split: \[start, stop\], ...\}"),
    ({"val": [0, 2]}, r"tiff_stack split: unknown value 'train'"),
])
def test_tiff_stack_slices_are_refused_when_the_dataset_is_built(tmp_path, slices, match):
    with pytest.raises(DataConfigError, match=match):
        build_dataset(_stack(tmp_path, slices=slices), "train")


def test_malformed_slices_end_as_one_cli_line(tmp_path, capsys):
    code, _, err = cli_here(capsys, "dataset", "info", _yaml(tmp_path, _stack(tmp_path, slices={"train": [5, 2]})))
    assert code == 2 and "error: slices.train=[5, 2] is invalid; give [start, stop]" in error_line(err)


BAD_KEYS = [  # (type, key, value, message)
    ("synthetic", "num_samples", 0, r"num_samples must be between 1 and 10000000, got 0"),
    ("synthetic", "num_samples", "many", r"num_samples='many' is not a number; it must be between 1"),
    ("synthetic", "num_samples", True, r"num_samples=True is not a number"),
    ("synthetic", "num_samples", {"train": -2}, r"num_samples.train must be between 1 and 10000000, got -2"),
    ("synthetic", "size", 8, r"size must be between 16 and 4096, got 8"),
    ("synthetic", "size", "big", r"size='big' is not a number"),
    ("synthetic", "seed", -1, r"seed must be at least 0, got -1"),
    ("synthetic", "num_classes", 3, r"num_classes 2 or 4"),
    ("synthetic", "in_channels", 2, r"in_channels 1 or 3"),
    ("folder", "resize", 0, r"resize=0 is invalid; give a positive whole number"),
    ("folder", "resize", [0, 5], r"resize=\[0, 5\] is invalid"),
    ("folder", "resize", [8, 8, 8], r"resize=\[8, 8, 8\] is invalid"),
    ("folder", "resize", "big", r"resize='big' is invalid"),
    ("folder", "cache", "no", r"cache='no' is invalid; give true or false"),
    ("folder", "strict", "yes", r"strict='yes' is invalid; give true or false"),
    ("folder", "ignore_index", -1, r"ignore_index must be between 0 and 32767, got -1"),
    ("folder", "ignore_index", 1, r"ignore_index=1 is one of the classes 0..1 \('foreground'\)"),
    ("folder", "ignore_index", "none", r"ignore_index='none' is not a number"),
    ("folder", "in_channels", 0, r"in_channels must be between 1 and 1024, got 0"),
    ("folder", "classes", ["only"], r"classes=\['only'\] is invalid; give two or more class names"),
    ("folder", "classes", ["bg", "bg"], r"classes: \['bg'\] are listed twice"),
    ("folder", "classes", 5, r"classes=5 is invalid"),
    ("folder", "images", "images/{fold}", r"images='images/\{fold\}' is invalid; a template needs \{id\} exactly once"),
    ("folder", "masks", "masks/{", r"masks='masks/\{' is invalid; braces must enclose a placeholder"),
    ("folder", "mask_suffix", 5, r"mask_suffix=5 is invalid"),
    ("folder", "on_missing", "ignore", r"on_missing: unknown value 'ignore'"),
    ("folder", "splits", {"fractions": {"train": "most"}}, r"splits.fractions.train='most' is not a number; it must be between 0 and 1"),
    ("folder", "splits", {"fractions": {"train": 0.5}}, r"must be non-negative and sum to 1 \(sum is 0.5\)"),
    ("folder", "splits", {"fractions": {"train": 1.5, "val": -0.5}}, r"splits.fractions.train must be between 0 and 1, got 1.5"),
    ("folder", "splits", {"fractions": {"train": 0.99, "val": 0.01}}, r"split 'val' gets none of the 4 samples"),
    ("folder", "splits", {"folds": "five"}, r"splits.folds='five' is not a number; it must be a whole number"),
    ("folder", "splits", {"folds": 1}, r"folds >= 2"),
    ("folder", "splits", {"folds": 2, "fold": 2}, r"0 <= fold < folds"),
    ("folder", "splits", {"fractions": {"train": 1.0}, "fold": 0}, r"give either \{fractions"),
    ("folder", "splits", {"fractions": {"train": 1.0}, "seed": -3}, r"splits.seed must be at least 0, got -3"),
    ("folder", "splits", {"train": 5}, r"splits.train=5 is invalid; give the path of a list file"),
    ("folder", "splits", [0.8, 0.2], r"splits=\[0.8, 0.2\] is invalid"),
    ("folder", "augment", {"preset": "light", "crop_size": 0}, r"augment crop_size=0 is invalid"),
    ("folder", "augment", 5, r"augment=5 is invalid"),
    ("folder", "root", None, r"dataset type 'folder' needs 'root'"),
]


@pytest.mark.parametrize("kind, key, value, match", BAD_KEYS, ids=[f"{k}-{key}-{v!r}" for k, key, v, _ in BAD_KEYS])
def test_every_numeric_and_list_key_is_range_checked(tmp_path, kind, key, value, match):
    if key == "augment":
        pytest.importorskip("kornia")
    if kind == "synthetic":
        config = {"type": "synthetic", "num_samples": 4, "size": 16, key: value}
    else:
        config = {**folder(tmp_path, {f"s{i}": gray() for i in range(4)}, splits={"fractions": {"train": 1.0}}),
                  key: value}
    if key == "root":
        del config["root"]
    with pytest.raises(ConfigError, match=match):
        build_dataset(config, "train")


def test_missing_required_key_names_it(tmp_path):
    with pytest.raises(DataConfigError, match=r"dataset type 'tiff_stack' needs 'images', 'labels'"):
        build_dataset({"type": "tiff_stack"}, "train")


def _fake_named(tmp_path: Path, name: str) -> Path:
    """A tiny tree in the layout of a real dataset (for its key checks; no real data needed)."""
    root = tmp_path / name
    if name == "isbi2012_em":
        for i in range(8):
            png(root / "train" / "image" / f"{i}.png", gray())
            png(root / "train" / "label" / f"{i}.png", np.where(mask() > 0, 0, 255).astype(np.uint8))
    else:
        for i in range(2):
            png(root / "images" / f"k{i}.jpg", rgb())
            png(root / "masks" / f"k{i}.jpg", np.where(mask() > 0, 255, 0).astype(np.uint8))
        (root / "splits_medico2020").mkdir()
        (root / "splits_medico2020" / "train.txt").write_text("k0\n")
        (root / "splits_medico2020" / "val.txt").write_text("k1\n")
    return root


@pytest.mark.parametrize("name, key, value, match", [
    ("isbi2012_em", "val_slices", 0, r"val_slices must be between 1 and 7, got 0"),
    ("isbi2012_em", "val_slices", 8, r"val_slices must be between 1 and 7, got 8"),
    ("isbi2012_em", "val_slices", "6", r"val_slices='6' is not a number"),
    ("kvasir_seg", "threshold", 255, r"threshold must be between 0 and 254, got 255"),
    ("kvasir_seg", "threshold", -1, r"threshold must be between 0 and 254, got -1"),
])
def test_named_dataset_keys_are_range_checked(tmp_path, name, key, value, match):
    root = _fake_named(tmp_path, name)
    assert len(build_dataset({"type": name, "root": str(root)}, "train")) >= 1
    with pytest.raises(DataConfigError, match=match):
        build_dataset({"type": name, "root": str(root), key: value}, "train")


# -- 5. split lists: leakage, repeats, broken lists ------------------------------------------------


def test_a_sample_in_train_and_val_is_leakage_warned_or_refused_under_strict(tmp_path, caplog):
    config = folder(tmp_path, {f"s{i}": gray() for i in range(4)},
                    splits=lists(tmp_path, train=["s0", "s1", "s2"], val=["s2", "s3"]))
    with caplog.at_level(logging.WARNING):
        check = check_dataset(config)
    assert "split leakage: 1 sample(s) of 'train' are also in 'val', e.g. [('s2', 's2')]" in caplog.text
    assert any("split leakage" in w for w in check.warnings)
    with pytest.raises(DataError, match=r"split leakage: 1 sample\(s\) of 'train' are also in 'val'.*\(strict: true\)"):
        check_dataset({**config, "strict": True})


def test_the_same_image_under_two_names_in_two_splits_is_leakage(tmp_path, caplog):
    image = gray()
    config = folder(tmp_path, {"a": image, "b": gray(), "copy_of_a": image.copy()},
                    splits=lists(tmp_path, train=["a", "b"], val=["copy_of_a"]))
    with caplog.at_level(logging.WARNING):
        check_dataset(config)
    assert "of 'train' are also in 'val', e.g. [('a', 'copy_of_a')]" in caplog.text


def test_a_sample_listed_twice_is_warned_or_refused_under_strict(tmp_path, caplog):
    config = folder(tmp_path, {f"s{i}": gray() for i in range(3)}, splits=lists(tmp_path, train=["s0", "s1", "s0"],
                                                                                  val=["s2"]))
    with caplog.at_level(logging.WARNING):
        assert build_dataset(config, "train").names == ["s0", "s1", "s0"]
    assert "train.txt: 1 sample(s) are listed more than once, e.g. ['s0']" in caplog.text
    with pytest.raises(DataError, match=r"train.txt: 1 sample\(s\) are listed more than once.*strict: true"):
        build_dataset({**config, "strict": True}, "train")


def test_overlapping_tiff_stack_slices_are_leakage(tmp_path, caplog):
    config = _stack(tmp_path, slices={"train": [0, 4], "val": [3, 6]})
    with caplog.at_level(logging.WARNING):
        check_dataset(config)
    assert "of 'train' are also in 'val', e.g. [('v_003', 'v_003')]" in caplog.text
    with pytest.raises(DataError, match="split leakage"):
        check_dataset({**config, "strict": True})


@pytest.mark.parametrize("broken", ["missing", "empty", "unknown sample", "fifo", "not utf-8"])
def test_a_declared_but_broken_split_list_is_an_error_never_a_fallback(tmp_path, broken):
    config = folder(tmp_path, {f"s{i}": gray() for i in range(3)},
                    splits={**lists(tmp_path, train=["s0"], val=["s1"]), "test": "test.txt"})
    test_list = tmp_path / "test.txt"
    if broken == "empty":
        test_list.write_text("# nothing\n\n")
    elif broken == "unknown sample":
        test_list.write_text("s2\ns9\n")
    elif broken == "fifo":
        _fifo(test_list)
    elif broken == "not utf-8":
        test_list.write_bytes(b"\xff\xfe\x00s2")
    with pytest.raises(DataError, match="test.txt") as caught:
        build_dataset(config, "test")
    assert not isinstance(caught.value, UnknownSplitError)  # callers trying optional splits do not skip it
    with pytest.raises(DataError, match="test.txt"):
        check_dataset(config)  # 'test' is optional, but declared: checked, not skipped


def test_only_an_undefined_split_is_unknown(tmp_path):
    config = folder(tmp_path, {f"s{i}": gray() for i in range(2)}, splits=lists(tmp_path, train=["s0"], val=["s1"]))
    undefined = [config, {"type": "synthetic", "num_samples": {"train": 2}}, _stack(tmp_path, slices={"train": [0, 2]}),
                 {**config, "splits": {"fractions": {"train": 0.5, "val": 0.5}}}]
    for cfg in undefined:
        with pytest.raises(UnknownSplitError):
            build_dataset(cfg, "test")
    assert check_dataset(config).samples == {"train": 1, "val": 1}  # no test split: nothing to check


def test_splits_and_a_split_folder_layout_are_not_both_accepted(tmp_path):
    config = {"type": "folder", "root": str(tmp_path), "images": "images/{split}", "splits": {"train": "t.txt"}}
    with pytest.raises(DataConfigError, match=r"give either 'splits' or a \{split\} folder layout"):
        build_dataset(config, "train")


# -- 6. a corrupt file in val is found before step 1 -----------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP"])
def test_truncated_val_image_is_found_before_training_starts(tmp_path, fmt):
    suffix = {"PNG": "png", "JPEG": "jpg", "BMP": "bmp"}[fmt]
    root = tmp_path / "d"
    for i in range(4):
        png(root / "images" / f"s{i}.{suffix}", rgb(32, 32), format=fmt)
        png(root / "masks" / f"s{i}.png", mask(32, 32))
    bad = root / "images" / f"s3.{suffix}"
    bad.write_bytes(bad.read_bytes()[:-200])
    config = {"type": "folder", "root": str(root), "in_channels": 3,
              "splits": lists(root, train=["s0", "s1"], val=["s2", "s3"])}
    train, val = build_dataset(config, "train"), build_dataset(config, "val")  # lazy: nothing decoded yet
    with pytest.raises(DataError, match=rf"s3.{suffix}: cannot read image"):
        check_dataset(config, datasets={"train": train, "val": val})
    with pytest.raises(DataError, match=rf"s3.{suffix}: cannot read image"):
        val[1]  # without the check, this is where (and when) a run would have stopped: evaluating val


def test_truncated_mask_in_val_is_found_before_training_starts(tmp_path):
    config = folder(tmp_path, {f"s{i}": gray() for i in range(4)}, in_channels=1,
                    splits=lists(tmp_path, train=["s0", "s1"], val=["s2", "s3"]))
    m = tmp_path / "masks" / "s3.png"
    m.write_bytes(m.read_bytes()[:40])
    with pytest.raises(DataError, match=r"data check: 1 bad file\(s\).*s3.png: cannot read image"):
        check_dataset(config)


def _run_setup_checks_data() -> bool:
    from unetfamily.engine import run_setup

    return "check_dataset" in Path(run_setup.__file__).read_text()


@pytest.mark.skipif(not _run_setup_checks_data(), reason="setup_run does not call check_dataset yet")
def test_train_stops_before_step_one_on_a_corrupt_val_image(tmp_path):
    root = tmp_path / "d"
    for i in range(4):
        png(root / "images" / f"s{i}.png", gray(32, 32))
        png(root / "masks" / f"s{i}.png", mask(32, 32))
    bad = root / "images" / "s3.png"
    bad.write_bytes(bad.read_bytes()[:-100])
    data = {"type": "folder", "root": str(root), "in_channels": 1,  # declared: building reads no image
            "splits": lists(root, train=["s0", "s1"], val=["s2", "s3"])}
    config = {"model": {"name": "unet", "kwargs": {"channels": [4, 8]}}, "data": data, "loader": {"batch_size": 2},
              "train": {"epochs": 1, "checkpoint_every": 1, "progress": False, "tensorboard": False},
              "output_dir": str(tmp_path / "run")}
    code, _, err = cli("train", "--config", _yaml(tmp_path, config), timeout=300)
    assert code == 2 and "data check: 1 bad file(s)" in error_line(err) and "s3.png: cannot read image" in err
    assert not list((tmp_path / "run").glob("checkpoints/*.safetensors"))  # a checkpoint follows step 1


def test_float_tiff_images_outside_0_1_and_unread_formats(tmp_path, caplog):
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    tifffile.imwrite(root / "images" / "f.tif", RNG.random((16, 16)).astype(np.float32) * 4)  # not in [0, 1]
    png(root / "masks" / "f.png", mask())
    (root / "images" / "skipped.jp2").write_bytes(b"x")  # a format the folder readers skip
    with caplog.at_level(logging.WARNING):
        with pytest.raises(DataError, match=r"f.tif: float image with values in \[0.0\d+, 3.9\d+\]; rescale it to \[0, 1\]"):
            build_dataset({"type": "folder", "root": str(root)}, "all")
    assert "1 image(s) in" in caplog.text and "skipped.jp2" in caplog.text
    stack = _stack(tmp_path, slices={"train": [0, 3], "val": [3, 6]})
    tifffile.imwrite(tmp_path / "v.tif", -RNG.random((6, 8, 8)).astype(np.float32))
    with pytest.raises(DataError, match=r"v.tif slice 0: float image with values in \[-"):
        check_dataset(stack)


def test_nan_in_float_images_is_named_as_nan_by_the_folder_check_and_the_tiff_stack_check(tmp_path):
    """The audit's float32 TIFF with one NaN pixel was refused as 'float image with values in [nan, nan]'."""
    root = tmp_path / "d"
    image = RNG.random((16, 16)).astype(np.float32)
    image[3, 3] = np.nan
    (root / "images").mkdir(parents=True)
    tifffile.imwrite(root / "images" / "f.tif", image)
    png(root / "masks" / "f.png", mask())
    with pytest.raises(DataError, match=r"f.tif: float image contains 1 NaN value\(s\) \(of 256 values"):
        build_dataset({"type": "folder", "root": str(root)}, "all")
    stack = _stack(tmp_path, slices={"train": [0, 3], "val": [3, 6]})
    volume = RNG.random((6, 8, 8)).astype(np.float32)
    volume[4, 1, 1:3] = np.inf
    tifffile.imwrite(tmp_path / "v.tif", volume)
    with pytest.raises(DataError, match=r"v.tif slice 4: float image contains 2 infinite value\(s\) \(of 64 values"):
        check_dataset(stack)
