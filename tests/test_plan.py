"""The plan's rules at their boundaries, the fitting arithmetic, and the plan file's round trip (no training here)."""
from __future__ import annotations

import dataclasses
import math

import pytest
import yaml

from unetfamily.config import config_from_dict
from unetfamily.data.fingerprint import Fingerprint
from unetfamily.errors import ConfigError
from unetfamily.plan import Budget, FamilyFit, Plan, read_plan
from unetfamily.plan import fit as planfit
from unetfamily.plan import rules


def fingerprint(**changes: object) -> Fingerprint:
    """A binary dataset's fingerprint: 512x512 grey images, 10% foreground in 40 px blobs, no up."""
    base = dict(
        cases=20, channels=1, classes=["background", "fg"], size_median=[512, 512], size_min=[512, 512],
        size_max=[512, 512], intensity=[{"mean": 0.5, "std": 0.2, "p00_5": 0.0, "p99_5": 1.0}],
        intensity_foreground=[{"mean": 0.7, "std": 0.1, "p00_5": 0.4, "p99_5": 0.9}],
        class_fraction={"background": 0.9, "fg": 0.1}, class_presence={"background": 1.0, "fg": 1.0},
        objects={"fg": {"count": 200, "median_area": 1200, "p05_area": 300, "median_extent": 40}},
        boundary_fraction={"fg": 0.15}, vertical_asymmetry=0.02, pixels_total=20 * 512 * 512,
    )
    return Fingerprint(**{**base, **changes})


# -- scale -----------------------------------------------------------------------------------------
def test_scale_is_native_when_the_typical_object_fits_the_patch_twice() -> None:
    assert rules.scale(fingerprint(), patch=80).value == 1.0  # 2 x 40 px = 80: fits exactly
    assert rules.scale(fingerprint(), patch=79).value == 1.0  # 0.9875 rounds to 1: within 5%
    assert rules.scale(fingerprint(), patch=70).value == 0.9  # 0.875 rounded up to a step of 0.05


def test_scale_never_for_thin_structures() -> None:
    thin = fingerprint(boundary_fraction={"fg": rules.THIN_BOUNDARY},
                       objects={"fg": {"count": 3, "median_area": 9000, "p05_area": 5000, "median_extent": 500}})
    choice = rules.scale(thin, patch=64)
    assert choice.value == 1.0 and "thin" in choice.reason
    just_below = dataclasses.replace(thin, boundary_fraction={"fg": rules.THIN_BOUNDARY - 0.01})
    assert rules.scale(just_below, patch=64).value < 1.0
    narrow = dataclasses.replace(just_below, width={"fg": rules.THIN_WIDTH})  # membranes: few edges, 5 px wide
    assert rules.scale(narrow, patch=64).value == 1.0
    assert rules.scale(dataclasses.replace(narrow, width={"fg": rules.THIN_WIDTH + 1}), patch=64).value < 1.0


def test_scale_down_to_fit_large_objects_bounded_by_small_objects_and_the_image() -> None:
    big = {"fg": {"count": 20, "median_area": 40000, "p05_area": 10000, "median_extent": 256}}
    fp = fingerprint(objects=big)
    assert rules.scale(fp, patch=128).value == 0.25  # 128 / (2 x 256); bounded by 128/512 = 0.25 too
    two = {**big, "small": {"count": 20, "median_area": 256, "p05_area": 1, "median_extent": 16}}
    fractions = {"background": 0.5, "fg": 0.3, "small": 0.2}
    fp2 = fingerprint(classes=["background", "fg", "small"], objects=two, class_fraction=fractions)
    # the class with the smallest objects (median 256 px) keeps >= 64 px: factor >= sqrt(64/256) = 0.5
    assert rules.scale(fp2, patch=128).value == 0.5
    tiny = {**two, "small": {**two["small"], "median_area": 64}}
    assert "objects below 64 px" in rules.scale(dataclasses.replace(fp2, objects=tiny), patch=128).reason
    # the thinnest major class (width 8 px) keeps >= 4 px: factor >= 0.5
    assert rules.scale(dataclasses.replace(fp, width={"fg": 8.0}), patch=128).value == 0.5
    assert rules.scale(dataclasses.replace(fp, width={"fg": 3.0}), patch=128).value == 1.0


def test_scale_stops_where_the_median_image_fills_the_patch() -> None:
    huge = {"fg": {"count": 20, "median_area": 90000, "p05_area": 10000, "median_extent": 1000}}
    choice = rules.scale(fingerprint(objects=huge), patch=128)  # context wants 128 / 2000; 512 px images
    assert choice.value == 0.25 and "median image" in choice.reason


def test_scale_sizes_by_the_object_a_typical_pixel_belongs_to() -> None:
    # a noisy mask: most components are specks (median extent 3 px) but most pixels lie in 300 px regions
    noisy = {"fg": {"count": 900, "median_area": 4, "p05_area": 1, "median_extent": 3,
                    "pixel_area": 40000, "pixel_extent": 300}}
    choice = rules.scale(fingerprint(objects=noisy), patch=128)
    assert choice.value == 0.25 and "300 px" in choice.reason


def scene(**changes: object) -> Fingerprint:
    """A street scene: class 0 is sky (content), road and building are major, a thin pole holds 2%."""
    classes = ["sky", "road", "building", "pole"]
    objects = {"sky": {"count": 9, "median_area": 3, "p05_area": 1, "median_extent": 3, "pixel_area": 30000,
                       "pixel_extent": 300},
               "road": {"count": 9, "median_area": 50, "p05_area": 1, "median_extent": 13, "pixel_area": 60000,
                        "pixel_extent": 480},
               "building": {"count": 9, "median_area": 80, "p05_area": 1, "median_extent": 17, "pixel_area": 30000,
                            "pixel_extent": 230},
               "pole": {"count": 9, "median_area": 16, "p05_area": 2, "median_extent": 9, "pixel_area": 400,
                        "pixel_extent": 110}}
    base = dict(classes=classes, size_median=[360, 480], objects=objects,
                class_fraction={"sky": 0.2, "road": 0.48, "building": 0.3, "pole": 0.02},
                boundary_fraction={"sky": 0.08, "road": 0.02, "building": 0.04, "pole": 0.6},
                width={"sky": 17.0, "road": 107.0, "building": 67.0, "pole": 3.0}, vertical_asymmetry=0.86)
    return fingerprint(**{**base, **changes})


def test_content_classes_keep_a_scene_first_class_and_drop_a_background() -> None:
    assert rules.content_classes(scene()) == ["sky", "road", "building", "pole"]
    for name in ("background", "Background", "_background_", "bg"):
        fp = scene(classes=[name, "road", "building", "pole"])
        assert rules.content_classes(fp) == ["road", "building", "pole"]
    assert rules.content_classes(fingerprint(classes=["normal", "lesion"])) == ["lesion"]  # binary: 0 is background
    assert rules.major_classes(scene()) == ["sky", "road", "building"]  # pole: 2% < MAJOR_SHARE


def test_a_minor_thin_class_yields_to_the_context_of_a_scene() -> None:
    choice = rules.scale(scene(), patch=128)
    # road (480 px) wants 128/960; the image (360 px short side) stops at 0.356; pole keeps 400 px -> 64 px at 0.4
    assert choice.value == 0.4 and "road" in choice.reason
    major_pole = scene(class_fraction={"sky": 0.2, "road": 0.4, "building": 0.28, "pole": 0.12})
    assert rules.scale(major_pole, patch=128).value == 1.0  # a major thin class keeps native resolution


def test_scale_without_objects_is_native() -> None:
    empty = {"fg": {"count": 0, "median_area": None, "p05_area": None, "median_extent": None}}
    assert rules.scale(fingerprint(objects=empty), patch=64).value == 1.0


# -- normalisation, augmentation, oversampling, class weights, optimiser ------------------------------
def test_one_size_when_objects_grow_with_the_image_and_sizes_vary() -> None:
    sample = [[256, 256]] * 10 + [[520, 696]] * 6 + [[1024, 1360]] * 5  # sides vary 3.6x (10th..90th percentile)
    fp = fingerprint(size_sample=sample, size_follows={"background": 0.9, "fg": rules.SIZE_FOLLOWS})
    choice = rules.one_size(fp, (256, 256))
    assert choice.value == [256, 256] and "several magnifications" in choice.reason
    below = dataclasses.replace(fp, size_follows={"fg": rules.SIZE_FOLLOWS - 0.01})
    assert rules.one_size(below, (256, 256)).value is None
    assert "more, not larger" in rules.one_size(below, (256, 256)).reason
    # the sides must vary by SIZE_SPREAD between the 10th and 90th percentile
    narrow = dataclasses.replace(fp, size_sample=[[400, 400]] * 2 + [[400, 499]] * 17 + [[800, 800]] * 2)
    assert rules.one_size(narrow, (400, 400)).value is None  # sqrt(499/400) = 1.117 < 1.25
    assert rules.one_size(dataclasses.replace(fp, size_follows=None), (256, 256)).value is None
    # a minor class's correlation does not decide: only the major classes (>= 10% of the content) do
    classes = ["background", "fg", "speck"]
    minor = dataclasses.replace(fp, classes=classes, size_follows={"fg": 0.9, "speck": 0.0},
                                class_fraction={"background": 0.9, "fg": 0.095, "speck": 0.005})
    assert rules.one_size(minor, (256, 256)).value == [256, 256]


def test_a_plan_with_one_size_resizes_every_image_and_not_by_scale() -> None:
    one = dataclasses.replace(plan(), resize=[96, 80], scale=1.0)
    assert one.median_image == (96, 80)
    data = one.config_for("unet").data
    assert data["resize"] == [96, 80] and "scale" not in data
    assert Plan.from_dict(one.to_dict()).resize == [96, 80]


def test_layer_norm_is_instance_below_a_batch_of_eight() -> None:
    assert [rules.layer_norm(b).value for b in (2, 7, 8, 32)] == ["instance", "instance", "batch", "batch"]
    assert "batch 7 (< 8)" in rules.layer_norm(7).reason and "nnU-Net" in rules.layer_norm(2).reason


def test_normalization_is_the_dataset_z_score_and_clips_heavy_tails_only() -> None:
    choice = rules.normalization(fingerprint())
    assert choice.value == {"mean": [0.5], "std": [0.2], "clip": None}
    # 0.5-99.5 percentile range 0.5 < 3 std (0.2): outliers inflate the std -> clip to the percentiles
    heavy = fingerprint(intensity=[{"mean": 0.1, "std": 0.2, "p00_5": 0.0, "p99_5": 0.5}])
    assert rules.normalization(heavy).value["clip"] == [0.0, 0.5]
    edge = fingerprint(intensity=[{"mean": 0.1, "std": 0.2, "p00_5": 0.0, "p99_5": 0.61}])  # just over 3 std
    assert rules.normalization(edge).value["clip"] is None


def test_augmentation_follows_whether_images_have_an_up() -> None:
    assert rules.augmentation(fingerprint(vertical_asymmetry=rules.UP_ASYMMETRY)).value == "medical"
    assert rules.augmentation(fingerprint(vertical_asymmetry=rules.UP_ASYMMETRY + 0.01)).value == "natural"


def test_foreground_oversampling_only_when_patches_are_smaller_than_images() -> None:
    assert rules.foreground_oversampling((256, 256), (256, 200)).value == 0.0
    assert rules.foreground_oversampling((256, 256), (257, 200)).value == pytest.approx(1 / 3)


def test_class_weights_for_rare_classes_only() -> None:
    assert rules.class_weights(fingerprint()).value == {}
    rare = fingerprint(class_fraction={"background": 0.9975, "fg": 0.0025})
    assert rules.class_weights(rare).value == {"pos_weight": 2.0}  # sqrt(0.01 / 0.0025)
    multi = fingerprint(classes=["a", "b", "c"], class_fraction={"a": 0.5, "b": 0.4999, "c": 1e-7})
    assert rules.class_weights(multi).value == {"weight": [1.0, 1.0, rules.MAX_CLASS_WEIGHT]}
    edge = fingerprint(class_fraction={"background": 0.99, "fg": rules.RARE_FRACTION})
    assert rules.class_weights(edge).value == {}


def test_optimizer_learning_rate_by_schedule_length() -> None:
    assert rules.optimizer(4999).value["lr"] == 3e-3 and rules.optimizer(5000).value["lr"] == 1e-3
    assert rules.optimizer(1000).value["warmup_steps"] == 50


# -- fitting arithmetic (no measurement) ----------------------------------------------------------------
def cost(step_s: float = 0.1, peak: int = 2**20, batch: int = 2, side: int = 64) -> planfit.StepCost:
    return planfit.StepCost(batch, (side, side), step_s, step_s / 3, peak)


def test_patch_is_the_median_image_when_the_budget_allows() -> None:
    assert planfit.affordable_patch(cost(), (300, 500), Budget(steps=100), memory=2**40) == (320, 512)
    assert planfit.affordable_patch(cost(), (40, 40), Budget(steps=100), memory=2**40) == (64, 64)  # 64 at least


def test_patch_shrinks_to_the_memory_and_the_time_budget() -> None:
    c = cost(peak=2 * 64 * 64 * 100)  # 100 bytes per pixel of a batch
    assert planfit.affordable_patch(c, (1024, 1024), Budget(), memory=2 * 256 * 256 * 100) == (256, 256)
    # time: 0.1 s per 2 x 64 x 64 px; 400 steps at batch 2 in 0.8 x 60 s -> side sqrt(48/400/0.1) x 64 = 70 -> 64
    assert planfit.affordable_patch(c, (1024, 1024), Budget(seconds=60), memory=2**40) == (64, 64)
    # 6000 s: side sqrt(4800 / 400 / 0.1 x 2 x 64 x 64) / sqrt(2) = 701 -> 672 (multiples of 32, rounded down)
    assert planfit.affordable_patch(c, (1024, 1024), Budget(seconds=6000), memory=2**40) == (672, 672)


def test_batch_grows_until_a_limit_and_is_at_least_two() -> None:
    c = cost(peak=0)
    batch, why = planfit._batch(c, (64, 64), Budget(steps=10), memory=2**40, train_pixels=1e12)
    assert batch == planfit.MAX_BATCH
    batch, why = planfit._batch(c, (64, 64), Budget(steps=10), memory=2**40, train_pixels=0.05 ** -1 * 64 * 64 * 5)
    assert batch == 5 and "5%" in why
    batch, why = planfit._batch(c, (64, 64), Budget(steps=10), memory=2**40, train_pixels=1.0)
    assert batch == 2


def test_split_steps_of_a_step_budget_and_of_a_time_budget() -> None:
    assert planfit.split_steps(Budget(steps=2500), 1.0, 1.0)[:2] == (10, 250)
    assert planfit.split_steps(Budget(steps=100000), 1.0, 1.0)[:2] == (400, 250)
    assert planfit.split_steps(Budget(steps=5), 1.0, 1.0)[:2] == (5, 1)
    epochs, spe, _ = planfit.split_steps(Budget(seconds=100), step_s=0.1, val_s=1.0)
    assert (epochs, spe) == (10, 90)  # 10 validations (10 s) + 900 steps (90 s)
    epochs, spe, _ = planfit.split_steps(Budget(seconds=100), step_s=0.1, val_s=5.0)
    assert epochs == 4 and epochs * 5.0 <= planfit.VAL_SHARE * 100  # validation capped at 20% of the time
    assert spe == 200  # the rest of the time in fewer, longer epochs (not capped at 250 steps)
    epochs, spe, _ = planfit.split_steps(Budget(seconds=100), step_s=0.01, val_s=20.0)
    assert (epochs, spe) == (1, 8000)
    epochs, spe, _ = planfit.split_steps(Budget(seconds=10000), step_s=0.1, val_s=1.0)
    assert spe == 250 and epochs * (250 * 0.1 + 1.0) <= 10000


def test_the_shared_scale_follows_the_median_models_patch(monkeypatch: pytest.MonkeyPatch) -> None:
    from unetfamily.plan import make

    sides = {"a": 256, "b": 192, "c": 128, "d": 64}  # what each model affords at native size
    seen: list[int] = []
    monkeypatch.setattr(make, "probe", lambda name, *a, **k: name)
    monkeypatch.setattr(make, "affordable_patch", lambda cost, *a, **k: (sides[cost], sides[cost] + 32))
    monkeypatch.setattr(make.rules, "scale", lambda fp, patch: seen.append(patch) or rules.Choice(1.0, "native"))
    monkeypatch.setattr(make, "fit_family", lambda mid, name, *a, **k: FamilyFit(
        model=name, kwargs={}, patch=[sides[name]] * 2, window=[32, 32], batch_size=2, epochs=1, steps_per_epoch=1,
        step_seconds=0.1, validation_seconds=0.1, peak_memory_mb=1.0, reason="stub"))
    data = {"type": "synthetic", "num_samples": 4, "size": 32}
    make.make_plan(data, [(m, m, {}) for m in sides], budget=Budget(steps=4))
    assert seen == [128]  # the lower median of 256, 192, 128, 64: not the costliest model's 64
    seen.clear()
    make.make_plan(data, [("d", "d", {})], budget=Budget(steps=4))
    assert seen == [64]  # one model: its own patch


# -- the plan file ---------------------------------------------------------------------------------------
def plan() -> Plan:
    fit = FamilyFit(model="unet", kwargs={"base_width": 4}, patch=[64, 96], window=[128, 96], batch_size=3, epochs=2, steps_per_epoch=5,
                    step_seconds=0.1, validation_seconds=0.2, peak_memory_mb=10.0, reason="test")
    return Plan(data={"type": "synthetic", "size": 96, "resize": [32, 32]}, device="cpu",
                budget={"seconds": None, "steps": 10}, fingerprint=fingerprint().to_dict(), scale=0.5,
                normalization={"mean": [0.5], "std": [0.2], "clip": None}, augment="medical",
                foreground={"unet": 1 / 3}, loss={"name": "dice_ce", "kwargs": {"pos_weight": 2.0}},
                optimizer={"name": "adamw", "lr": 3e-3, "weight_decay": 1e-4, "warmup_steps": 1},
                families={"unet": fit}, reasons={"scale": "because"})


def test_plan_round_trips_through_yaml(tmp_path) -> None:
    path = plan().save(tmp_path / "plan.yaml")
    assert path.read_text().startswith("# unetfamily plan")
    assert yaml.safe_load(path.read_text())["families"]["unet"]["patch"] == [64, 96]
    again = read_plan(path)
    assert again.to_dict() == plan().to_dict()


def test_plan_makes_a_valid_training_config() -> None:
    cfg = plan().config_for("unet", output_dir="runs/x", seed=3)
    assert cfg.data == {"type": "synthetic", "size": 96, "scale": 0.5,
                        "augment": {"preset": "medical", "crop_size": [64, 96], "foreground": 1 / 3}}
    assert cfg.model.kwargs["input_norm"] == {"mean": [0.5], "std": [0.2], "clip": None}
    assert (cfg.loader.batch_size, cfg.train.epochs, cfg.train.steps_per_epoch) == (3, 2, 5)
    assert cfg.train.val_window == [128, 96] and cfg.train.seed == 3 and cfg.loss.kwargs == {"pos_weight": 2.0}
    assert config_from_dict(cfg.to_dict()) == cfg  # a plain config, loadable from YAML


def test_plan_errors_name_the_file_and_the_models(tmp_path) -> None:
    with pytest.raises(ConfigError, match="unet_plusplus.*unet"):
        plan().config_for("unet_plusplus")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: unet}\n")
    with pytest.raises(ConfigError, match=f"{bad}.*not a unetfamily plan"):
        read_plan(bad)
    damaged = plan().to_dict()
    damaged["families"]["unet"].pop("patch")
    (tmp_path / "d.yaml").write_text(yaml.safe_dump(damaged))
    with pytest.raises(ConfigError, match="damaged"):
        read_plan(tmp_path / "d.yaml")
    assert math.isfinite(plan().families["unet"].step_seconds)


def test_validation_window_is_the_median_image_unless_memory_forbids() -> None:
    c = cost(peak=2 * 64 * 64 * 30)  # 30 bytes per pixel of a training batch: about 10 for a forward pass
    assert planfit.window((500, 300), (64, 64), c, memory=2**40) == (512, 320)
    assert planfit.window((500, 300), (64, 64), c, memory=256 * 256 * 10) == (256, 256)
    assert planfit.window((500, 300), (288, 64), c, memory=256 * 256 * 10) == (288, 256)  # never below the patch


def test_a_step_that_measured_no_memory_rise_does_not_bound_the_patch() -> None:
    """A CPU step whose peak-memory rise reads 0 gives no memory limit (was int(nan): ValueError)."""
    assert planfit.affordable_patch(cost(peak=0), (300, 500), Budget(steps=100), memory=2**30) == (320, 512)
    assert planfit.window((300, 500), (64, 64), cost(peak=0), memory=2**30) == (320, 512)
