"""`unetfamily plan` on data nobody tuned for (audit P): each recipe value is usable and its reason true.

Found by planning small odd folders (8x8 images, 16x1200 strips, one image 20x larger than the rest,
a class never present, masks with no background) and running `compare --plan` on them:

- images smaller than the patch under ``natural`` augmentation were stretched to the patch (a 2x2
  object of an 8x8 image trained as ~400 px, validated as 4);
- the patch's reason said "the largest the budget affords" when the 1024 px cap cut it, and never said
  that a side was padded (16 px strips trained on 64 px patches);
- class weights named a class with no pixels as "rare", and a rare class 0 of a binary task as weighted
  while ``pos_weight`` left it unweighted;
- "the image sizes barely vary" for a set with one image 20x larger;
- ``compare --plan FILE --steps 3`` trained the plan's 100 steps, silently.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from unetfamily.cli import main
from unetfamily.data.augment import build_augmentation
from unetfamily.data.fingerprint import Fingerprint
from unetfamily.plan import Budget, FamilyFit, Plan
from unetfamily.plan import fit as planfit
from unetfamily.plan import rules


def fingerprint(**changes: object) -> Fingerprint:
    """A binary dataset of 48x48 images with 10% foreground in 19 px blobs."""
    base = dict(
        cases=6, channels=1, classes=["background", "fg"], size_median=[48, 48], size_min=[48, 48],
        size_max=[48, 48], intensity=[{"mean": 0.5, "std": 0.2, "p00_5": 0.0, "p99_5": 1.0}],
        intensity_foreground=None, class_fraction={"background": 0.9, "fg": 0.1},
        class_presence={"background": 1.0, "fg": 1.0},
        objects={"fg": {"count": 12, "median_area": 250, "p05_area": 200, "median_extent": 19}},
        boundary_fraction={"fg": 0.15}, vertical_asymmetry=0.02, pixels_total=6 * 48 * 48,
    )
    return Fingerprint(**{**base, **changes})


# -- natural augmentation never stretches an image to a larger patch ---------------------------------
@pytest.mark.parametrize(("image", "patch"), [((8, 8), (64, 64)), ((12, 20), (64, 64)), ((48, 64), (64, 64)),
                                              ((160, 216), (192, 224))])
def test_natural_augmentation_trains_objects_at_the_plans_scale(image: tuple[int, int], patch: tuple[int, int]) -> None:
    fg = rules.foreground_oversampling(patch, image, "natural").value
    aug = build_augmentation("natural", ignore_index=255, crop_size=list(patch), in_channels=1, foreground=fg)
    mask = torch.zeros(image, dtype=torch.long)
    mask[image[0] // 2: image[0] // 2 + 2, image[1] // 2: image[1] // 2 + 2] = 1  # a 2x2 object
    torch.manual_seed(0)
    for _ in range(20):
        out = aug({"image": mask[None].float(), "mask": mask, "name": "x"})
        assert out["mask"].shape == patch
        # the preset's own scale jitter (at most x1.5 per side) and resampling, never a stretch to the patch
        assert int((out["mask"] == 1).sum()) <= 4 * 1.5**2 + 6


def test_medical_augmentation_keeps_no_oversampling_when_a_patch_holds_the_image() -> None:
    assert rules.foreground_oversampling((64, 64), (8, 8), "medical").value == 0.0
    assert rules.foreground_oversampling((64, 64), (8, 8)).value == 0.0


# -- the patch's reason is true of each side ------------------------------------------------------------
def _fit(monkeypatch: pytest.MonkeyPatch, image: tuple[int, int], budget: Budget, memory: int) -> FamilyFit:
    def fake_step(name, kwargs, in_channels, outputs, batch, patch, device):  # noqa: ANN001, ANN202
        pixels = batch * patch[0] * patch[1]
        return planfit.StepCost(batch, tuple(patch), 1e-7 * pixels, 1e-8, 1000 * pixels)

    monkeypatch.setattr(planfit, "measure_step", fake_step)
    probe = fake_step("unet", {}, 1, 1, 2, (64, 64), None)
    return planfit.fit_family("unet", "unet", {}, probe, image, in_channels=1, outputs=1, device=torch.device("cpu"),
                              budget=budget, memory=memory, train_pixels=1e9, val_cases=1)


@pytest.mark.parametrize(("image", "budget", "memory", "said", "unsaid"), [
    ((16, 1200), Budget(steps=10), 1 << 40, ["at most 1024 px per side", "height 16 to 64 px"], ["budget affords"]),
    ((1200, 16), Budget(steps=10), 1 << 40, ["at most 1024 px per side", "width 16 to 64 px"], ["budget affords"]),
    ((8, 8), Budget(steps=10), 1 << 40, ["whole median image 8x8", "height 8 to 64 px, width 8 to 64 px"], []),
    ((48, 64), Budget(steps=10), 1 << 40, ["whole median image 48x64", "height 48 to 64 px"], ["width 64"]),
    ((512, 512), Budget(steps=10), 2 * 1000 * 256 * 256, ["the largest memory affords"], ["padded"]),
    ((512, 512), Budget(seconds=6.0), 1 << 40, ["the largest the time budget"], ["padded"]),
])
def test_the_patch_reason_says_what_cut_it_and_what_is_padded(monkeypatch: pytest.MonkeyPatch, image, budget, memory,
                                                               said, unsaid) -> None:  # noqa: ANN001
    fit = _fit(monkeypatch, image, budget, memory)
    for words in said:
        assert words in fit.reason, fit.reason
    for words in unsaid:
        assert words not in fit.reason, fit.reason
    assert all(p % rules.DIVISOR == 0 and p >= planfit.MIN_PATCH for p in fit.patch)


# -- class weights: absent classes, a rare class 0 --------------------------------------------------------
def test_a_class_with_no_pixels_is_said_absent_and_gets_no_weight() -> None:
    fp = fingerprint(classes=["background", "a", "c"], class_fraction={"background": 0.8, "a": 0.2, "c": 0.0})
    choice = rules.class_weights(fp)
    assert choice.value == {} and "c has no pixels" in choice.reason and "rare" not in choice.reason
    rare = fingerprint(classes=["background", "a", "b", "c"],
                       class_fraction={"background": 0.8, "a": 0.1975, "b": 0.0025, "c": 0.0})
    choice = rules.class_weights(rare)
    assert choice.value == {"weight": [1.0, 1.0, 2.0, 1.0]} and "rare classes b;" in choice.reason


@pytest.mark.parametrize(("fractions", "weights"), [({"background": 0.0, "fg": 1.0}, {}),
                                                    ({"background": 0.0025, "fg": 0.9975}, {"pos_weight": 0.5})])
def test_a_binary_task_with_rare_or_absent_class_0(fractions: dict, weights: dict) -> None:
    choice = rules.class_weights(fingerprint(class_fraction=fractions))
    assert choice.value == weights, choice.reason
    named = "background has no pixels" if not weights else "rare class background"
    assert named in choice.reason


# -- one size: the reason holds for every image -------------------------------------------------------------
def test_the_one_size_reason_names_an_outlier_image() -> None:
    sample = [[32, 32]] * 19 + [[640, 640]] * 2  # 6 images of 32 px, one of 640 (as the fingerprint samples them)
    fp = fingerprint(cases=7, size_median=[32, 32], size_min=[32, 32], size_max=[640, 640], size_sample=sample)
    choice = rules.one_size(fp, (32, 32))
    assert choice.value is None and "640x640" in choice.reason and "x20" in choice.reason
    assert "every image is 48x48" in rules.one_size(fingerprint(), (48, 48)).reason


# -- compare --plan FILE and a budget it was not fitted to ---------------------------------------------------
def _plan_file(path: Path, data: dict) -> None:
    fit = FamilyFit(model="unet", kwargs={"channels": [4, 8]}, patch=[32, 32], window=[32, 32], batch_size=2,
                    epochs=1, steps_per_epoch=2, step_seconds=0.01, validation_seconds=0.01, peak_memory_mb=1.0,
                    reason="test")
    Plan(data=data, device="cpu", budget={"seconds": None, "steps": 2}, fingerprint={}, scale=1.0,
         normalization={"mean": [0.5], "std": [0.25], "clip": None}, augment="light", foreground={"unet": 0.0},
         loss={"name": "dice_ce", "kwargs": {}}, optimizer={"name": "adamw", "lr": 1e-3, "weight_decay": 0.0,
                                                          "warmup_steps": 1},
         families={"unet": fit}).save(path)


@pytest.mark.parametrize("budget", [["--steps", "3"], ["--minutes", "1"], ["--epochs", "3"]])
def test_compare_refuses_a_budget_the_plan_file_was_not_fitted_to(tmp_path: Path, budget: list[str],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    data = {"type": "synthetic", "num_samples": {"train": 4, "val": 2, "test": 2}, "size": 32}
    (tmp_path / "d.yaml").write_text(yaml.safe_dump(data))
    _plan_file(tmp_path / "p.yaml", data)
    out = tmp_path / "rep"
    argv = ["compare", "--data", str(tmp_path / "d.yaml"), "--models", "unet", "--seeds", "1", *budget,
            "--base-width", "4", "--no-costs", "--plan", str(tmp_path / "p.yaml"), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{budget[0]} {budget[1]}" in err and "fitted to 2 steps per run" in err
    assert not (out / "runs").exists()


def test_a_budget_equal_to_the_plan_files_is_accepted(tmp_path: Path) -> None:
    from unetfamily.compare.config import CompareConfig
    from unetfamily.compare.planned import _check_budget
    from unetfamily.plan import read_plan

    _plan_file(tmp_path / "p.yaml", {"type": "synthetic"})
    plan = read_plan(tmp_path / "p.yaml")
    for cfg in (CompareConfig(data="synthetic", steps=2, plan=str(tmp_path / "p.yaml")),
                CompareConfig(data="synthetic", plan=str(tmp_path / "p.yaml"))):
        _check_budget(cfg, plan)
    assert math.isclose(plan.budget["steps"], 2)
