"""A recipe from the data (issue 15): `unetfamily plan`, `train --plan` and `compare --plan` under bad input.

Every refusal happens before any training; the plans the cases need are written by their setups
(a valid one-model plan for the tiny synthetic data, a damaged one, a config that is not a plan).
Data with no foreground at all, and 1-pixel-wide images, are planned or refused by name, never a
traceback from the rules' arithmetic.
"""
from __future__ import annotations

from .build import COMPARE_DATA, case, compare_data, steps
from .checks import absent, files_exist
from .model import either, refused, succeeds
from .workspace import Ctx

OWNER = "plan"  # python tools/hostile.py --only plan
K = "traceback_or_hang"
PLAN = ["plan", "cmp.yaml", "--models", "unet", "--base-width", "4", "--steps", "2"]
COMPARE = ["compare", "--data", "cmp.yaml", "--models", "unet", "--seeds", "1", "--steps", "2", "--base-width", "4",
           "--no-costs", "--out", "rep"]


def _plan_file(ctx: Ctx) -> None:
    """``p.yaml``: a one-model plan for ``cmp.yaml`` (written directly, as `unetfamily plan` would)."""
    from unetfamily.plan import FamilyFit, Plan

    fit = FamilyFit(model="unet", kwargs={"channels": [4, 8]}, patch=[32, 32], window=[32, 32], batch_size=2,
                    epochs=1, steps_per_epoch=2, step_seconds=0.01, validation_seconds=0.01, peak_memory_mb=1.0,
                    reason="hostile case")
    Plan(data=COMPARE_DATA, device="cpu", budget={"seconds": None, "steps": 2}, fingerprint={}, scale=1.0,
         normalization={"mean": [0.5], "std": [0.25], "clip": None}, augment="light", foreground={"unet": 0.0},
         loss={"name": "dice_ce", "kwargs": {}}, optimizer={"name": "adamw", "lr": 1e-3, "weight_decay": 0.0,
                                                          "warmup_steps": 1},
         families={"unet": fit}).save(ctx.p("p.yaml"))


def _damaged_plan(ctx: Ctx) -> None:
    ctx.yaml("p.yaml", {"version": 1, "families": {"unet": {"patch": [32, 32]}}, "data": {}, "device": "cpu",
                        "budget": {}, "fingerprint": {}, "scale": 1.0, "normalization": {}, "augment": "light",
                        "foreground": {}, "loss": {}, "optimizer": {}})


def _no_foreground(ctx: Ctx) -> None:
    ctx.yaml("empty.yaml", ctx.folder_data(mask_values=(0, 0)))  # the drawn disc is background too


def _thin_images(ctx: Ctx) -> None:
    ctx.yaml("thin.yaml", ctx.folder_data(size=(40, 1)))  # type: ignore[arg-type]


def _unchanged(rel: str, text: str):
    def check(ctx: Ctx, result: object) -> str | None:
        return None if ctx.p(rel).read_text() == text else f"{rel} was replaced"
    return check


def _two_sided_crop(ctx: Ctx) -> None:
    ctx.yaml("crop.yaml", {**ctx.folder_data(test=2), "augment": {"preset": "light", "crop_size": [48, 64]}})


CASES = [
    case("plan_data_missing", K, "plan", ["plan", "./nothere/"], refused("nothere"), owner=OWNER),
    case("plan_minutes_0", K, "plan", [*PLAN[:-2], "--minutes", "0"], refused("--minutes"), compare_data, owner=OWNER),
    case("plan_steps_negative", K, "plan", [*PLAN[:-2], "--steps", "-3"], refused("--steps"), compare_data,
         owner=OWNER),
    case("plan_model_misspelled", K, "plan", [*PLAN, "--models", "unett"], refused("unett"), compare_data, owner=OWNER),
    case("plan_out_exists", "data_loss", "plan", [*PLAN, "--out", "p.yaml"],
         refused("--overwrite", check=_unchanged("p.yaml", "mine\n")),
         steps(compare_data, lambda c: c.text("p.yaml", "mine\n")), owner=OWNER),
    case("plan_writes_into_a_new_folder", K, "plan", [*PLAN, "--out", "plans/a/p.yaml"],
         succeeds(files_exist("plans/a/p.yaml")), compare_data, owner=OWNER, timeout=180),
    case("plan_data_without_foreground", K, "plan", ["plan", "empty.yaml", "--models", "unet", "--base-width", "4",
                                                     "--steps", "2"], either("foreground", check=files_exist("plan.yaml")),
         _no_foreground, owner=OWNER, timeout=180),
    case("plan_one_pixel_wide_images", K, "plan", ["plan", "thin.yaml", "--models", "unet", "--base-width", "4",
                                                   "--steps", "2"], either("size", check=files_exist("plan.yaml")),
         _thin_images, owner=OWNER, timeout=180),
    case("train_plan_missing", K, "plan", "train --plan nothere.yaml", refused("nothere.yaml"), owner=OWNER),
    case("train_plan_not_a_plan", K, "plan", "train --plan c.yaml", refused("c.yaml", "not a unetfamily plan"),
         lambda c: c.config(), owner=OWNER),
    case("train_plan_damaged", K, "plan", "train --plan p.yaml", refused("p.yaml", "damaged"), _damaged_plan,
         owner=OWNER),
    case("train_plan_unknown_model", K, "plan", "train --plan p.yaml --model unet_3plus", refused("unet_3plus", "unet"),
         _plan_file, owner=OWNER),
    case("train_plan_with_config", K, "plan", "train --plan p.yaml --config c.yaml", refused("--config"),
         steps(_plan_file, lambda c: c.config()), owner=OWNER),
    case("train_model_without_plan", K, "plan", "train --config c.yaml --model unet", refused("--model"),
         lambda c: c.config(), owner=OWNER),
    case("compare_plan_auto_with_size", K, "plan", [*COMPARE, "--plan", "auto", "--size", "32"], refused("--size"),
         compare_data, owner=OWNER),
    case("compare_plan_missing_file", K, "plan", [*COMPARE, "--plan", "nothere.yaml"],
         refused("nothere.yaml", check=absent("rep/runs")), compare_data, owner=OWNER),
    case("compare_plan_without_the_model", K, "plan", [*COMPARE[:4], "unet,fcn8s", *COMPARE[5:], "--plan", "p.yaml"],
         refused("fcn8s"), steps(compare_data, _plan_file), owner=OWNER),
    case("compare_size_with_a_two_sided_crop", K, "plan",
         ["compare", "--data", "crop.yaml", "--models", "unet", "--seeds", "1", "--steps", "1", "--base-width", "4",
          "--size", "32", "--batch-size", "2", "--no-costs", "--out", "rep"], succeeds(files_exist("rep/report.md")),
         _two_sided_crop, owner=OWNER, timeout=240, note="CamVid's config has crop_size [352, 480]"),
]
