"""Unclear messages: a refusal is right, and its one line must name what to fix.

The fragments are what a user needs to act: the missing file, folder, sample or label, the
flag or key. Wording is free.
"""
from __future__ import annotations

import json

import numpy as np

from .build import bench_argv, case, compare_argv, config_with, labelme_doc, labelme_folder, steps, trained, with_images
from .cases_data import corrupt, data_then, write
from .model import either, refused
from .checks import files_exist
from .workspace import Ctx

K = "unclear"
TRAIN = "train --config c.yaml"


def _notes(ctx: Ctx) -> None:
    ctx.text("notes.txt", "my notes\n")


def _plain_safetensors(ctx: Ctx) -> None:
    from safetensors.numpy import save_file

    save_file({"weight": np.zeros((3, 3), np.float32)}, str(ctx.p("plain.safetensors")))


def _labelme_doc(**doc: object):
    def run(ctx: Ctx) -> None:
        ctx.image("ann/a.png")
        ctx.text("ann/a.json", json.dumps(labelme_doc(**doc)))
    return run


def _no_mask(ctx: Ctx) -> None:
    ctx.p("data/masks/s3.png").unlink()


def _jpeg_mask(ctx: Ctx) -> None:
    ctx.p("data/masks/s1.png").unlink()
    ctx.mask("data/masks/s1.jpg")


def _no_masks_folder(ctx: Ctx) -> None:
    import shutil

    shutil.rmtree(ctx.p("data/masks"))


def _mask_size(ctx: Ctx) -> None:
    ctx.mask("data/masks/s1.png", 24)


PREDICT = "predict --checkpoint exp1"

CASES = [
    case("train_missing_config", K, "messages", "train --config nope.yaml", refused("nope.yaml")),
    case("eval_missing_checkpoint", K, "messages", "eval --checkpoint run_nope", refused("run_nope")),
    case("predict_missing_input", K, "messages", f"{PREDICT} ghost.png --out pred", refused("ghost.png"), trained),
    case("predict_empty_folder", K, "messages", f"{PREDICT} emptyimgs --out pred", refused("emptyimgs"),
         steps(trained, lambda c: c.p("emptyimgs").mkdir())),
    case("predict_text_file_input", K, "messages", f"{PREDICT} notes.txt --out pred", refused("notes.txt"),
         steps(trained, _notes)),
    case("predict_out_under_a_file", K, "messages", f"{PREDICT} imgs --out notes.txt/pred", refused("notes.txt"),
         steps(trained, with_images("imgs/a0.png"), _notes)),
    case("eval_data_missing_yaml", K, "messages", "eval --checkpoint exp1 --data nodata.yaml", refused("nodata.yaml"),
         trained),
    case("eval_split_not_in_data", K, "messages", "eval --checkpoint exp1 --split test", refused("test"), trained,
         note="the run's synthetic data has train and val only"),
    case("eval_out_under_a_file", K, "messages", "eval --checkpoint exp1 --out notes.txt/e.json", refused("notes.txt"),
         steps(trained, _notes)),
    case("dataset_info_missing_yaml", K, "messages", "dataset info nodata.yaml", refused("nodata.yaml")),
    case("foreign_safetensors_checkpoint", K, "messages", "eval --checkpoint plain.safetensors",
         refused("plain.safetensors"), _plain_safetensors),
    case("labelme_missing_path", K, "messages", "dataset labelme nothere --out conv", refused("nothere")),
    case("labelme_labels_file_missing", K, "messages", "dataset labelme ann --out conv --labels nolabels.txt",
         refused("nolabels.txt"), labelme_folder()),
    case("labelme_unlisted_label", K, "messages", "dataset labelme ann --out conv --labels labels.txt",
         refused("tumour"), steps(labelme_folder(label="tumour"),
                                  lambda c: c.text("labels.txt", "__ignore__\n_background_\ncell\n"))),
    case("labelme_image_missing", K, "messages", "dataset labelme ann --out conv", refused("ghost.png"),
         _labelme_doc(image="ghost.png")),
    case("train_output_dir_under_a_file", K, "messages", f"{TRAIN} output_dir=notes.txt/run", refused("notes.txt"),
         steps(config_with(), _notes)),
    case("train_data_root_missing", K, "messages", TRAIN, refused("nothere"),
         config_with(data={"type": "folder", "root": "nothere", "splits": {"fractions": {"train": 0.5, "val": 0.5}}})),
    case("image_without_mask", K, "messages", TRAIN, refused("s3"), data_then(_no_mask), owner="D"),
    case("mask_size_mismatch", K, "messages", TRAIN, refused("s1"), data_then(_mask_size), owner="D"),
    case("corrupt_image_in_train", K, "messages", TRAIN, refused("s1.png"), data_then(corrupt("images/s1.png")),
         owner="D"),
    case("jpeg_mask_without_threshold", K, "messages", TRAIN, refused("s1.jpg"), data_then(_jpeg_mask),
         owner="D"),
    case("masks_folder_missing", K, "messages", TRAIN, refused("masks"), data_then(_no_masks_folder),
         owner="D"),
    case("classes_file_missing", K, "messages", TRAIN, refused("classes.txt"),
         data_then(lambda c: None, classes="data/classes.txt"), owner="D"),
    case("classes_single_class", K, "messages", TRAIN, refused("classes"),
         data_then(lambda c: None, classes=["background"]), owner="D"),
    case("empty_val_list", K, "messages", TRAIN, refused("val.txt"), data_then(write("lists/val.txt", "# later\n")),
         owner="D"),
    case("list_names_unknown_sample", K, "messages", TRAIN, refused("s99"),
         data_then(write("lists/train.txt", "s0\ns1\ns99\n")), owner="D"),
    case("split_fractions_do_not_sum_to_1", K, "messages", TRAIN, refused("fractions"),
         data_then(lambda c: None, splits={"fractions": {"train": 0.5, "val": 0.2}}), owner="D"),
    case("compare_data_folder_without_masks", K, "messages", compare_argv(data="photos"), refused("masks"),
         lambda c: c.image("photos/images/p0.png")),
    case("bench_json_folder_missing", K, "messages", bench_argv("--json", "nodir/b.json"),
         either("nodir", check=files_exist("nodir/b.json")), timeout=240),
    case("export_out_folder_missing", K, "messages", "export --checkpoint exp1 --out nodir/m.onnx --size 32 32",
         either("nodir", check=files_exist("nodir/m.onnx")), trained, timeout=240),
]
