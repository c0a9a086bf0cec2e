"""Data loss: a command that overwrites, deletes or clobbers what the user already has.

Every case protects the user's files (``ctx.protect``) and the runner compares them after the
command, whatever it answered. Most expect a refusal that names the folder or file at stake.
"""
from __future__ import annotations

import json

from .build import (
    case,
    compare_argv,
    compare_data,
    config_with,
    labelme_doc,
    labelme_folder,
    steps,
    trained,
    with_images,
)
from .checks import file_count, files_exist, step_is
from .model import either, refused, succeeds
from .workspace import Ctx, tiny_config

K = "data_loss"


def _protect(*rels: str):
    return lambda ctx: ctx.protect(*rels)


def _user_config_in_cwd(output_dir: str):
    def run(ctx: Ctx) -> None:
        ctx.yaml("config.yaml", tiny_config(output_dir=output_dir))
        ctx.text("notes.txt", "my notes\n")
        ctx.protect("config.yaml", "notes.txt")
    return run


def _user_folder(ctx: Ctx) -> None:
    ctx.text("photos/train.log", "my own log\n")
    ctx.text("photos/config.yaml", "camera: nikon\n")
    ctx.image("photos/pic.png")
    ctx.config(output_dir="photos")
    ctx.protect("photos")


def _notes(ctx: Ctx) -> None:
    ctx.text("notes.txt", "my notes\n")


def _other_config_same_folder(ctx: Ctx) -> None:
    ctx.config("c2.yaml", model={"kwargs": {"channels": [8, 16]}})


def _previous_conversion(ctx: Ctx) -> None:
    ctx.image("converted/images/old.png")
    ctx.mask("converted/masks/old.png", values=(0, 1))
    ctx.text("converted/classes.txt", "background\ncell\n")


def _labelme_with_labels(ctx: Ctx) -> None:
    ctx.text("polyps_ann/classes.txt", "my own class notes\n")
    ctx.image("polyps_ann/images/keep.png", seed=3)


def _stems(*names: str):
    def run(ctx: Ctx) -> None:
        for i, name in enumerate(names):
            ctx.image(name, seed=i)
    return run


PREDICT = "predict --checkpoint exp1 imgs --out"

CASES = [
    case("train_again_without_resume", K, "runs", "train --config c.yaml",
         refused("exp1", ("--resume", "--overwrite")), steps(trained, _protect("exp1", "c.yaml")), owner="A",
         note="the same command twice: the second must not train over the finished run"),
    case("train_again_with_budget_override", K, "runs", "train --config c.yaml train.epochs=2",
         refused("exp1", ("--resume", "--overwrite")), steps(trained, _protect("exp1")), owner="A"),
    case("train_other_config_same_output_dir", K, "runs", "train --config c2.yaml",
         refused("exp1"), steps(trained, _other_config_same_folder, _protect("exp1")), owner="A",
         note="another experiment pointed at the same output_dir"),
    case("train_output_dir_is_cwd_with_user_config", K, "runs", "train --config config.yaml",
         either(("output_dir", "config.yaml")), _user_config_in_cwd("."), owner="A",
         note="output_dir '.' holds the user's own config.yaml"),
    case("train_output_dir_empty_string", K, "runs", "train --config config.yaml",
         either(("output_dir", "config.yaml")), _user_config_in_cwd(""), owner="C"),
    case("train_output_dir_user_folder", K, "runs", "train --config c.yaml",
         either("photos"), _user_folder, owner="A", note="a folder of the user's with a train.log and config.yaml"),
    case("train_output_dir_is_a_file", K, "runs", "train --config c.yaml",
         refused("notes.txt"), steps(_notes, config_with(output_dir="notes.txt"), _protect("notes.txt"))),
    case("train_overwrite_keeps_other_files", K, "runs", "train --config c.yaml --overwrite",
         succeeds(step_is("exp1", 2)),
         steps(trained, lambda c: c.text("exp1/my_notes.txt", "keep me\n"), _protect("exp1/my_notes.txt")), owner="A",
         note="--overwrite replaces the run's files only"),
    case("predict_into_input_folder", K, "predict", f"{PREDICT} imgs",
         refused("imgs"), steps(trained, with_images("imgs/a0.png", "imgs/a1.png"), _protect("imgs")),
         owner="A"),
    case("predict_over_previous_results", K, "predict", f"{PREDICT} pred",
         refused("pred"), steps(trained, with_images("imgs/a0.png", "imgs/a1.png", "pred/a0.png"), _protect("pred")),
         owner="A", note="pred/ already holds a0.png from an earlier run"),
    case("predict_out_with_unrelated_files", K, "predict", f"{PREDICT} pred",
         either("pred", check=files_exist("pred/a0.png", "pred/a1.png")),
         steps(trained, with_images("imgs/a0.png", "imgs/a1.png"), lambda c: c.text("pred/notes.txt", "mine\n"),
               _protect("pred")), owner="A"),
    case("predict_out_is_a_file", K, "predict", f"{PREDICT} notes.txt",
         refused("notes.txt"), steps(trained, with_images("imgs/a0.png"), _notes, _protect("notes.txt")),
         owner="A"),
    case("predict_same_stem_two_folders", K, "predict", "predict --checkpoint exp1 a b --out pred",
         refused("cell7"), steps(trained, _stems("a/cell7.png", "b/cell7.png")), owner="A"),
    case("predict_same_stem_two_formats", K, "predict", "predict --checkpoint exp1 imgs --out pred",
         refused("cell7"), steps(trained, _stems("imgs/cell7.png", "imgs/cell7.jpg")), owner="A"),
    case("predict_mask_over_user_file", K, "predict", "predict --checkpoint exp1 imgs/cell7.jpg --out imgs",
         refused("cell7.png"), steps(trained, _stems("imgs/cell7.jpg", "imgs/cell7.png"), _protect("imgs")),
         owner="A", note="imgs/cell7.png is not an input but would be the mask of cell7.jpg"),
    case("predict_overlay_clobbers_other_mask", K, "predict",
         "predict --checkpoint exp1 imgs --out pred --overlay",
         either("a_overlay", check=file_count("pred", "*.png", 4)),
         steps(trained, _stems("imgs/a.png", "imgs/a_overlay.png")),
         owner="A", note="a's overlay and a_overlay's mask are both pred/a_overlay.png"),
    case("predict_probability_png_clobbers_other_mask", K, "predict",
         "predict --checkpoint exp1 imgs --out pred --probabilities png",
         either("a_prob", check=file_count("pred", "*.png", 4)),
         steps(trained, _stems("imgs/a.png", "imgs/a_prob.png")),
         owner="A"),
    case("labelme_into_previous_conversion", K, "labelme", "dataset labelme ann --out converted",
         refused("converted"), steps(labelme_folder(), _previous_conversion, _protect("converted")),
         owner="A"),
    case("labelme_out_is_input_folder", K, "labelme", "dataset labelme polyps_ann --out polyps_ann",
         refused("polyps_ann"), steps(labelme_folder("polyps_ann"), _labelme_with_labels, _protect("polyps_ann")),
         owner="A"),
    case("labelme_out_is_a_file", K, "labelme", "dataset labelme ann --out notes.txt",
         refused("notes.txt"), steps(labelme_folder(), _notes, _protect("notes.txt")), owner="A"),
    case("labelme_second_json_same_stem", K, "labelme", "dataset labelme ann --out conv",
         either("cell9", check=file_count("conv/masks", "*.png", 2)),
         steps(lambda c: c.image("ann/x/cell9.png"), lambda c: c.image("ann/y/cell9.png", seed=1),
               lambda c: c.text("ann/x/cell9.json", json.dumps(labelme_doc("cell9.png"))),
               lambda c: c.text("ann/y/cell9.json", json.dumps(labelme_doc("cell9.png", "nucleus")))),
         owner="A", note="two annotation folders with the same file name: one mask must not replace the other"),
    case("export_over_checkpoint", K, "export",
         "export --checkpoint exp1 --out exp1/checkpoints/best.safetensors --size 32 32",
         refused("best.safetensors"), steps(trained, _protect("exp1")), timeout=240),
    case("export_out_is_run_folder", K, "export", "export --checkpoint exp1 --out exp1 --size 32 32",
         refused("exp1"), steps(trained, _protect("exp1")), timeout=240),
    case("eval_out_over_checkpoint", K, "eval", "eval --checkpoint exp1 --out exp1/checkpoints/last.safetensors",
         refused("last.safetensors"), steps(trained, _protect("exp1"))),
    case("eval_out_over_run_config", K, "eval", "eval --checkpoint exp1 --out exp1/config.yaml",
         refused("config.yaml"), steps(trained, _protect("exp1"))),
    case("compare_out_user_folder", K, "compare", compare_argv(out="docs"),
         either("docs"), steps(compare_data, lambda c: c.text("docs/report.md", "# my report\n"), _protect("docs")),
         timeout=300, note="--out names a folder of the user's that holds a report.md"),
    case("compare_out_is_a_file", K, "compare", compare_argv(out="notes.txt"),
         refused("notes.txt"), steps(compare_data, _notes, _protect("notes.txt"))),
]
