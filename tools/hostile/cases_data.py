"""Silently wrong data: masks that do not match their encoding, mixed channels, leaking splits.

Every split is checked before training starts (a bad validation or test file must not surface
after an epoch, nor be skipped); a sample in two splits, or listed twice, is refused under
``strict: true`` and warned about otherwise; a broken test list is an error, never a silent
fall-back to the validation split.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .build import case, compare_argv, steps, trained
from .checks import no_checkpoint, nothing_written, stderr_mentions
from .model import either, refused, succeeds
from .workspace import Ctx, mask_array, pattern

K = "silently_wrong"
TRAIN = "train --config c.yaml"
NOT_TRAINED = no_checkpoint("exp1")
#: A checkpoint after the first step: a run that trains before it fails shows it (see NOT_TRAINED).
CHECKPOINT_EARLY = {"checkpoint_every": 1}


def data_then(change: Any, config: bool = True, **folder: Any):
    """A folder dataset (``**folder``: :meth:`Ctx.folder_data`), ``change(ctx)``, then ``c.yaml`` and ``data.yaml``."""
    def run(ctx: Ctx) -> None:
        data = ctx.folder_data(**folder)
        change(ctx)
        ctx.yaml("data.yaml", data)
        if config:
            ctx.config(data=data, train=CHECKPOINT_EARLY)
    return run


def rgb(name: str):
    return lambda ctx: ctx.image(f"data/images/{name}.png", channels=3)


def bad_mask(name: str, values: tuple):
    return lambda ctx: ctx.array(f"data/masks/{name}.png", mask_array(32, values, 1))


def corrupt(rel: str):
    return lambda ctx: ctx.data(f"data/{rel}", b"\x89PNG\r\n\x1a\n" + b"\0" * 40)


def write(rel: str, text: str):
    return lambda ctx: ctx.text(f"data/{rel}", text)


def _mixed_sizes(ctx: Ctx) -> None:
    ctx.array("data/images/s1.png", pattern(40, 1, 1))
    ctx.array("data/masks/s1.png", mask_array(40, (0, 255), 1))


def _other_size(name: str):
    return lambda ctx: ctx.array(f"data/images/{name}.png", pattern(40, 1, 0))


def _stack(slices: Any, strict: bool | None = None, labels: int = 6, label_size: int = 32):
    def run(ctx: Ctx) -> None:
        ctx.tiff_stack(slices=6)
        if labels != 6 or label_size != 32:
            ctx.array("lab.tif", np.stack([mask_array(label_size, (0, 255), i) for i in range(labels)]))
        data = {"type": "tiff_stack", "images": "vol.tif", "labels": "lab.tif", "slices": slices}
        if strict is not None:
            data["strict"] = strict
        ctx.config(data=data, train=CHECKPOINT_EARLY)
    return run


MAP = {"kind": "map", "values": {0: 0, 255: 1}}
RGB = {"kind": "rgb", "colors": {0: [0, 0, 0], 1: [255, 0, 0]}}
LEAK = write("lists/val.txt", "cell4\ncell5\ncell0\n")
TWICE = write("lists/train.txt", "cell0\ncell1\ncell2\ncell3\ncell0\n")
CMP = compare_argv(data="data.yaml")
TEST_SPLIT = {"test": 2}


def DROP_TEST(ctx: Ctx) -> None:  # noqa: N802 - used like the constants beside it
    """The test list the config names is gone."""
    ctx.p("data/lists/test.txt").unlink()


DATA = [
    case("mixed_gray_rgb_train", K, "data", TRAIN, refused("in_channels", check=NOT_TRAINED), data_then(rgb("s2")),
         owner="D", note="s2 is RGB among gray images, in_channels not given"),
    case("mixed_gray_rgb_val", K, "data", TRAIN, refused("in_channels", check=NOT_TRAINED), data_then(rgb("s5")),
         owner="D"),
    case("mixed_gray_rgb_declared", K, "data", "dataset info data.yaml --samples 4", succeeds(),
         data_then(rgb("s2"), in_channels=3), owner="D", note="with in_channels: 3 the mix is fine"),
    case("binary_mask_three_values", K, "data", TRAIN, refused("s2"),
         data_then(bad_mask("s2", (0, 1, 2)), mask_encoding="binary"), owner="D"),
    case("binary_mask_0_128", K, "data", TRAIN, refused("s2"),
         data_then(bad_mask("s2", (0, 128)), mask_encoding="binary"), owner="D"),
    case("map_mask_unmapped_value", K, "data", TRAIN, refused("s2", "128"),
         data_then(bad_mask("s2", (0, 255, 128)), mask_encoding=MAP), owner="D"),
    case("rgb_mask_unknown_colour", K, "data", TRAIN, refused("s2"),
         data_then(bad_mask("s2", ((0, 0, 0), (255, 0, 0), (0, 255, 0))), mask_values=((0, 0, 0), (255, 0, 0)),
                   mask_encoding=RGB), owner="D"),
    case("index_mask_value_above_classes", K, "data", TRAIN, refused("s2"),
         data_then(bad_mask("s2", (0, 1, 2)), mask_values=(0, 1), mask_encoding="index"), owner="D"),
    case("auto_mask_0_1_255", K, "data", TRAIN, refused("s2"), data_then(bad_mask("s2", (0, 1, 255))),
         owner="D"),
    case("bad_mask_in_val", K, "data", TRAIN, refused("s5", check=NOT_TRAINED),
         data_then(bad_mask("s5", (0, 1, 2)), mask_encoding="binary"), owner="D",
         note="found before training, not after the first epoch"),
    case("corrupt_image_in_val", K, "data", TRAIN, refused("s5", check=NOT_TRAINED),
         data_then(corrupt("images/s5.png")), owner="D"),
    case("size_mismatch_in_val", K, "data", TRAIN, refused("s5", check=NOT_TRAINED), data_then(_other_size("s5")),
         owner="D"),
    case("mixed_sizes_without_resize", K, "data", TRAIN, refused("resize", check=NOT_TRAINED),
         data_then(_mixed_sizes), owner="D", note="a batch of 32 and 40 px images"),
    case("leak_train_val_strict", K, "data", TRAIN, refused("cell0", check=NOT_TRAINED),
         data_then(LEAK, prefix="cell", strict=True), owner="D"),
    case("leak_train_val_warns", K, "data", TRAIN, succeeds(stderr_mentions("cell0")),
         data_then(LEAK, prefix="cell"), owner="D", timeout=180),
    case("listed_twice_strict", K, "data", TRAIN, refused("cell0", check=NOT_TRAINED),
         data_then(TWICE, prefix="cell", strict=True), owner="D"),
    case("listed_twice_warns", K, "data", TRAIN, succeeds(stderr_mentions("cell0")),
         data_then(TWICE, prefix="cell"), owner="D", timeout=180),
    case("tiff_slices_reversed", K, "data", TRAIN, refused("slices"), _stack({"train": [5, 2], "val": [4, 6]}),
         owner="D"),
    case("tiff_slices_scalar", K, "data", TRAIN, refused("slices"), _stack({"train": 5, "val": [4, 6]}),
         owner="D"),
    case("tiff_slices_letters", K, "data", TRAIN, refused("slices"), _stack({"train": ["a", "b"], "val": [4, 6]}),
         owner="D"),
    case("tiff_slices_three_numbers", K, "data", TRAIN, refused("slices"), _stack({"train": [0, 4, 6], "val": [4, 6]}),
         owner="D"),
    case("tiff_slices_fraction", K, "data", TRAIN, refused("slices"), _stack({"train": [0, 2.5], "val": [4, 6]}),
         owner="D"),
    case("tiff_slices_past_the_end", K, "data", TRAIN, refused("slices"), _stack({"train": [0, 100], "val": [4, 6]}),
         owner="D"),
    case("tiff_slices_negative", K, "data", TRAIN, refused("slices"), _stack({"train": [-3, 2], "val": [4, 6]}),
         owner="D"),
    case("tiff_slices_overlap_strict", K, "data", TRAIN, refused(("slices", "vol_00"), check=NOT_TRAINED),
         _stack({"train": [0, 4], "val": [2, 6]}, strict=True), owner="D"),
    case("tiff_slices_overlap_warns", K, "data", TRAIN, succeeds(stderr_mentions(("vol_002", "overlap", "both"))),
         _stack({"train": [0, 4], "val": [2, 6]}), owner="D", timeout=180),
    case("tiff_labels_fewer_slices", K, "data", TRAIN, refused("lab.tif"),
         _stack({"train": [0, 4], "val": [4, 6]}, labels=5), owner="D"),
    case("tiff_labels_other_size", K, "data", TRAIN, refused("lab.tif"),
         _stack({"train": [0, 4], "val": [4, 6]}, label_size=24), owner="D"),
    case("compare_broken_test_list", K, "data", CMP, refused("test.txt", check=nothing_written("rep")),
         data_then(DROP_TEST, config=False, **TEST_SPLIT), owner="D", timeout=240,
         note="the test list is gone: no silent fall-back to val"),
    case("compare_test_list_unknown_sample", K, "data", CMP, refused("test.txt", check=nothing_written("rep")),
         data_then(write("lists/test.txt", "s6\ns77\n"), config=False, **TEST_SPLIT), owner="D",
         timeout=240),
    case("compare_test_list_empty", K, "data", CMP, refused("test.txt", check=nothing_written("rep")),
         data_then(write("lists/test.txt", "# none yet\n"), config=False, **TEST_SPLIT), owner="D",
         timeout=240),
    case("compare_corrupt_test_image", K, "data", CMP, refused("s6", check=nothing_written("rep")),
         data_then(corrupt("images/s6.png"), config=False, **TEST_SPLIT), owner="D", timeout=240),
    case("compare_test_leaks_into_train_strict", K, "data", CMP, refused("cell0", check=nothing_written("rep")),
         data_then(write("lists/test.txt", "cell6\ncell0\n"), config=False, prefix="cell", strict=True, **TEST_SPLIT),
         owner="D", timeout=240),
    case("eval_broken_test_list", K, "data", "eval --checkpoint exp1 --data data.yaml --split test",
         refused("test.txt"), steps(trained, data_then(DROP_TEST, config=False, **TEST_SPLIT)), owner="D"),
    case("dataset_info_broken_test_list", K, "data", "dataset info data.yaml --split test", refused("test.txt"),
         data_then(DROP_TEST, config=False, **TEST_SPLIT), owner="D"),
    case("crlf_list_files", K, "data", "dataset info data.yaml --samples 4", succeeds(),
         data_then(write("lists/train.txt", "s0\r\ns1\r\ns2\r\ns3\r\n")), owner="D",
         note="list files saved on Windows"),
    case("bom_list_file", K, "data", "dataset info data.yaml --samples 4", either("train.txt"),
         data_then(write("lists/train.txt", "\ufeffs0\ns1\ns2\ns3\n")), owner="D"),
]


CASES = DATA
