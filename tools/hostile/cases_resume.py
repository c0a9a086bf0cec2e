"""Silently wrong runs: --resume with a changed budget or config, and non-finite numbers.

A resumed run must honour a new budget (train.epochs, max_steps, ...) and refuse any change
to what it computes, naming the key; it must never train from scratch when asked to resume.
NaN and Inf must never end in a checkpoint, in a score, or pass as an image.
"""
from __future__ import annotations

import numpy as np

from .build import case, config_with, poison_checkpoint, steps, trained, with_images
from .checks import absent, finite_checkpoints, no_checkpoint, step_is
from .model import either, refused, succeeds
from .workspace import Ctx

K = "silently_wrong"
RESUME = "train --config c.yaml --resume"


def _protect(*rels: str):
    return lambda ctx: ctx.protect(*rels)


def _resume_refused(name: str, overrides: str, fragment: str | tuple[str, ...], **options):
    return case(name, K, "budget", f"{RESUME} {overrides}", refused(fragment),
                steps(trained, _protect("exp1")), owner="A", **options)


def _resume_budget(name: str, overrides: str, step: int, **options):
    return case(name, K, "budget", f"{RESUME} {overrides}", succeeds(step_is("exp1", step)), trained, owner="A",
                timeout=180, **options)


def _changed_data_config(ctx: Ctx) -> None:
    ctx.trained()
    ctx.config("c2.yaml", {"type": "synthetic", "num_samples": {"train": 4, "val": 2}, "size": 48})
    ctx.protect("exp1")


def _drop_last(ctx: Ctx) -> None:
    ctx.trained()
    ctx.p("exp1/checkpoints/last.safetensors").unlink()


def _float_tiff(values: str, name: str = "s1"):
    """A folder dataset whose image ``name`` is a float32 TIFF holding NaN, Inf or values up to 200."""
    def run(ctx: Ctx) -> None:
        data = ctx.folder_data()
        ctx.p(f"data/images/{name}.png").unlink()
        img = np.full((32, 32), 0.5, np.float32)
        img[3:6, 3:6] = {"nan": np.nan, "inf": np.inf, "255": 200.0}[values]
        ctx.array(f"data/images/{name}.tif", img)
        ctx.config(data=data, train={"checkpoint_every": 1})  # a run that trains first leaves a checkpoint
    return run


def _float_input(value: float):
    def run(ctx: Ctx) -> None:
        ctx.trained()
        img = np.full((32, 32), 0.5, np.float32)
        img[2:5, 2:5] = value
        ctx.array("imgs/x.tif", img)
    return run


EXPLODE = {"optim": {"lr": 1e30}, "train": {"epochs": 3, "grad_clip": None}}

CASES = [
    _resume_budget("resume_more_epochs", "train.epochs=2", 4, note="the budget grows: 2 more steps"),
    _resume_budget("resume_max_steps", "train.epochs=5 train.max_steps=3", 3),
    _resume_budget("resume_max_seconds", "train.epochs=2 train.max_seconds=600", 4),
    _resume_budget("resume_early_stop_patience", "train.epochs=2 train.early_stop_patience=5", 4),
    _resume_budget("resume_on_cpu", "train.epochs=2 train.device=cpu", 4),
    case("resume_log_every", K, "budget", f"{RESUME} train.epochs=2 train.log_every=1",
         either("train.log_every", check=step_is("exp1", 4)), trained, owner="A", timeout=180,
         note="a logging setting may change on resume (or be refused as having no effect)"),
    _resume_refused("resume_changed_lr", "train.epochs=2 optim.lr=0.5", "optim.lr"),
    _resume_refused("resume_changed_model", "model.kwargs.channels=[8,16]", "model.kwargs"),
    _resume_refused("resume_changed_batch_size", "train.epochs=2 loader.batch_size=1", "loader.batch_size"),
    _resume_refused("resume_changed_seed", "train.epochs=2 train.seed=3", "train.seed"),
    _resume_refused("resume_changed_loss", "train.epochs=2 loss.name=focal", "loss.name"),
    _resume_refused("resume_changed_augment", "train.epochs=2 data.augment=light", "augment"),
    _resume_refused("resume_changed_schedule", "train.epochs=2 schedule.name=constant", "schedule.name"),
    _resume_refused("resume_other_output_dir", "output_dir=exp2", "exp2", note="nothing to resume in exp2"),
    _resume_refused("resume_and_overwrite", "--overwrite", ("--overwrite",)),
    case("resume_changed_data_config", K, "budget", "train --config c2.yaml --resume", refused("data"),
         _changed_data_config, owner="A", note="a second config with other data, same output_dir"),
    case("resume_without_a_run", K, "budget", RESUME, refused("exp1", check=no_checkpoint("exp1")), config_with(),
         owner="A", note="--resume where nothing was trained: no silent fresh start"),
    case("resume_last_checkpoint_missing", K, "budget", RESUME,
         refused("last.safetensors", check=absent("exp1/checkpoints/last.safetensors")), _drop_last, owner="A"),
    case("resume_finished_run", K, "budget", RESUME, either(check=step_is("exp1", 2)), trained, owner="A",
         timeout=180),
    case("resume_budget_below_progress", K, "budget", f"{RESUME} train.max_steps=1",
         either("train.max_steps", check=step_is("exp1", 2)), trained, owner="A", timeout=180,
         note="the run is at step 2 already"),
    # --- non-finite numbers -------------------------------------------------------------------
    case("train_exploding_lr_stop", K, "nan", "train --config c.yaml",
         refused(("non-finite", "nan", "optim.lr"), check=finite_checkpoints("exp1")), config_with(**EXPLODE),
         owner="B", timeout=180, note="lr 1e30 makes the weights overflow"),
    case("train_exploding_lr_skip", K, "nan", "train --config c.yaml",
         refused(("skipped", "max_skipped_fraction", "optim.lr"), check=finite_checkpoints("exp1")),
         config_with(**{**EXPLODE, "train": {**EXPLODE["train"], "nan_policy": "skip"}}), owner="B", timeout=180,
         note="nan_policy skip must stop once most steps are skipped"),
    case("train_exploding_lr_skip_all_allowed", K, "nan", "train --config c.yaml",
         either(check=finite_checkpoints("exp1"), check_refusal=True),
         config_with(**{**EXPLODE, "train": {**EXPLODE["train"], "nan_policy": "skip", "max_skipped_fraction": 1.0}}),
         owner="B", timeout=180),
    case("resume_nonfinite_checkpoint", K, "nan", f"{RESUME} train.epochs=2",
         refused("last.safetensors", ("non-finite", "nan")),
         steps(trained, poison_checkpoint("exp1/checkpoints/last.safetensors")), owner="B"),
    case("eval_nonfinite_checkpoint", K, "nan", "eval --checkpoint exp1/checkpoints/best.safetensors",
         refused("best.safetensors", ("non-finite", "nan")),
         steps(trained, poison_checkpoint("exp1/checkpoints/best.safetensors")), owner="B"),
    case("eval_infinite_checkpoint", K, "nan", "eval --checkpoint exp1/checkpoints/best.safetensors",
         refused("best.safetensors", ("non-finite", "inf")),
         steps(trained, poison_checkpoint("exp1/checkpoints/best.safetensors", float("inf"))), owner="B"),
    case("predict_nonfinite_checkpoint", K, "nan", "predict --checkpoint exp1 imgs --out pred",
         refused(("non-finite", "nan"), check=absent("pred/a0.png")),
         steps(trained, with_images("imgs/a0.png"), poison_checkpoint("exp1/checkpoints/best.safetensors"),
               poison_checkpoint("exp1/checkpoints/last.safetensors")), owner="B"),
    case("export_nonfinite_checkpoint", K, "nan", "export --checkpoint exp1 --out m.onnx --size 32 32",
         refused(("non-finite", "nan")),
         steps(trained, poison_checkpoint("exp1/checkpoints/best.safetensors"),
               poison_checkpoint("exp1/checkpoints/last.safetensors")), owner="B", timeout=240),
    case("train_image_with_nan", K, "nan", "train --config c.yaml", refused("s1.tif", check=no_checkpoint("exp1")),
         _float_tiff("nan"), owner="D", note="a float TIFF with NaN pixels"),
    case("train_image_with_inf", K, "nan", "train --config c.yaml", refused("s1.tif", check=no_checkpoint("exp1")),
         _float_tiff("inf"), owner="D"),
    case("train_float_image_0_255", K, "nan", "train --config c.yaml", refused("s1.tif", check=no_checkpoint("exp1")),
         _float_tiff("255"), owner="D", note="float pixels must already be in [0, 1]"),
    case("predict_image_with_nan", K, "nan", "predict --checkpoint exp1 imgs/x.tif --out pred", refused("x.tif"),
         _float_input(float("nan")), owner="D"),
    case("predict_image_with_inf", K, "nan", "predict --checkpoint exp1 imgs/x.tif --out pred", refused("x.tif"),
         _float_input(float("-inf")), owner="D"),
    case("train_nan_in_val_split", K, "nan", "train --config c.yaml", refused("s5.tif", check=no_checkpoint("exp1")),
         _float_tiff("nan", "s5"), owner="D", note="found before training, not at the first validation"),
]
