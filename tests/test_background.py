"""A class 0 that is content, not background (CamVid's sky): the data's ``background`` key, decided from the class
names when not declared, and every score that averages "the foreground" following it.

Before, every score left class 0 out: on CamVid the headline Dice, the per-case statistics and a comparison's
verdict ignored the sky, and an image of sky alone counted as empty.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.conftest import FixedLabels
from unetfamily.cli import main
from unetfamily.data import DataConfigError, DatasetInfo, build_dataset
from unetfamily.data.base import class0_is_background
from unetfamily.engine.evaluate import evaluate
from unetfamily.metrics import SegmentationMetrics, per_image_scores, scores_from_confusion


@pytest.mark.parametrize("classes,declared,expected", [
    (["background", "cell"], None, True), (["sky", "ground"], None, True),  # binary: class 1 is the foreground
    (["background", "road", "car"], None, True), (["_Background_", "road", "car"], None, True),
    (["void", "road", "car"], None, True), (["sky", "road", "car"], None, False),
    (["sky", "road", "car"], True, True), (["background", "road", "car"], False, False),
    (["background", "cell"], False, False),
])
def test_class_0_is_a_background_as_declared_else_by_its_name(classes, declared, expected) -> None:
    assert class0_is_background(classes, declared) is expected
    assert DatasetInfo(classes, background=declared).has_background is expected


@pytest.mark.parametrize("value", ["no", 1, "false", [True]])
def test_a_background_that_is_not_a_boolean_is_refused_naming_the_key(value) -> None:
    with pytest.raises(DataConfigError, match="background=") as err:
        build_dataset({"type": "synthetic", "background": value}, "val")
    assert "true" in str(err.value) and "auto" in str(err.value)


@pytest.mark.parametrize("value,expected", [(None, True), ("auto", True), (True, True), (False, False)])
def test_every_dataset_type_takes_the_background_key(tmp_path: Path, value, expected) -> None:
    from tests.data.conftest import save

    for name in ("a", "b"):
        save(tmp_path / "images" / f"{name}.png", np.zeros((8, 8), np.uint8))
        save(tmp_path / "masks" / f"{name}.png", np.eye(8, dtype=np.uint8) * 2)
    cfgs = [{"type": "synthetic", "num_classes": 4},
            {"type": "folder", "root": str(tmp_path), "classes": ["background", "a", "b"], "mask_encoding": "index"}]
    for cfg in cfgs:
        split = "train" if cfg["type"] == "synthetic" else "all"
        ds = build_dataset(cfg if value is None else {**cfg, "background": value}, split)
        assert ds.info.has_background is expected, cfg["type"]


def _confusion(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.long)


def test_the_foreground_means_average_class_0_when_it_is_content() -> None:
    cm = _confusion([[8, 2, 0], [1, 5, 0], [0, 0, 4]])  # rows: target, columns: prediction
    left_out, scored = scores_from_confusion(cm), scores_from_confusion(cm, include_background=True)
    per_class = left_out["per_class_dice"]
    assert left_out["dice"].item() == pytest.approx(per_class[1:].mean().item())
    assert scored["dice"].item() == pytest.approx(per_class.mean().item())
    assert scored["dice"].item() != pytest.approx(left_out["dice"].item())
    for name in ("iou", "precision", "recall"):
        assert scored[name].item() == pytest.approx(scored[f"per_class_{name}"].mean().item())
    assert scored["miou"].item() == left_out["miou"].item()  # mIoU always averages every class
    metric = SegmentationMetrics(3, include_background=True)
    metric.update(torch.tensor([[[0, 0, 1]]]), torch.tensor([[[0, 1, 1]]]))
    assert metric.compute()["dice"].item() == pytest.approx((2 / 3 + 2 / 3) / 2)


def test_an_image_of_class_0_alone_is_not_empty_when_class_0_is_scored() -> None:
    target = torch.zeros(2, 8, 8, dtype=torch.long)
    target[1, :2] = 2
    pred = target.clone()
    pred[0, :, :3] = 1  # image 0 holds only class 0 (sky), and the model calls some of it class 1
    kw = dict(describe=True, nsd_tolerance=1.0, with_cldice=True)
    left_out = per_image_scores(pred, target, 3, **kw)
    scored = per_image_scores(pred, target, 3, include_background=True, **kw)
    assert left_out["target_empty"].tolist() == [True, False]
    assert scored["target_empty"].tolist() == [False, False] and scored["prediction_empty"].tolist() == [False, False]
    assert left_out["dice"][0].item() == 0.0  # class 1 predicted where none is: the only class scored
    sky = 2 * 40 / (64 + 40)
    assert scored["dice"][0].item() == pytest.approx((sky + 0.0) / 2)
    for key in ("per_class_nsd", "per_class_cldice"):
        assert math.isnan(left_out[key][0, 0].item()) and not math.isnan(scored[key][0, 0].item())
    assert scored["nsd"][1].item() == pytest.approx(1.0) and scored["cldice"][1].item() == pytest.approx(1.0)


def test_evaluate_scores_the_classes_the_data_says() -> None:
    masks = torch.zeros(2, 8, 8, dtype=torch.long)
    masks[:, 4:] = 1
    masks[:, :, 6:] = 2
    pred = masks.clone()
    pred[:, :2] = 1  # half of the sky called road
    loader = [{"image": torch.zeros(2, 1, 8, 8), "mask": masks, "name": ["a", "b"]}]
    model = FixedLabels(pred, 3)
    left_out = evaluate(model, loader, "cpu", 3, per_image=True)
    scored = evaluate(model, loader, "cpu", 3, per_image=True, include_background=True)
    assert scored["dice"] == pytest.approx(sum(scored["per_class_dice"]) / 3)
    assert left_out["dice"] == pytest.approx(sum(left_out["per_class_dice"][1:]) / 2)
    assert scored["per_image"][0]["dice"] == pytest.approx(scored["dice"])


def _scene(root: Path, count: int = 12) -> None:
    """``count`` 32 x 32 scenes of sky (0) over road (1) with a car (2): no class is a background."""
    from tests.data.conftest import save

    rng = np.random.default_rng(0)
    for i in range(count):
        mask = np.zeros((32, 32), np.uint8)
        mask[12 + i % 5:] = 1
        x = int(rng.integers(2, 20))
        mask[20:28, x:x + 10] = 2
        save(root / "masks" / f"s{i}.png", mask)
        save(root / "images" / f"s{i}.png", (mask * 90 + rng.integers(0, 30, mask.shape)).astype(np.uint8))


def test_a_comparison_of_data_whose_class_0_is_content_scores_it_and_says_so(tmp_path: Path) -> None:
    _scene(tmp_path / "scenes")
    spec = {"type": "folder", "root": str(tmp_path / "scenes"), "classes": ["sky", "road", "car"],
            "mask_encoding": "index", "splits": {"fractions": {"train": 0.5, "val": 0.25, "test": 0.25}, "seed": 0}}
    args = ["compare", "--models", "fcn8s", "--seeds", "1", "--steps", "2", "--batch-size", "4", "--no-costs",
            "--base-width", "4", "--lr", "0.005", "--folds", "1"]
    data = tmp_path / "data.yaml"
    data.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    assert main([*args, "--data", str(data), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["protocol"]["background"] is False
    test = results["runs"][0]["test"]
    per_class = [v for v in test["per_class_dice"] if v is not None and math.isfinite(v)]
    assert len(per_class) == 3 and test["dice"] == pytest.approx(sum(per_class) / 3)
    assert "class 0 (sky) is not a background" in (out / "report.md").read_text()
    # a run scored by the code before (class 0 left out), or trained with crops that never targeted class 0, lacks
    # the field in its fingerprint: it is stale, not reused
    (fingerprint,) = (out / "runs").rglob("fingerprint.json")
    saved = json.loads(fingerprint.read_text())
    for key in ("run.scores_class0", "run.crops_class0"):
        assert saved[key] is True
        fingerprint.write_text(json.dumps({k: v for k, v in saved.items() if k != key}))
        assert main([*args, "--data", str(data), "--out", str(out)]) == 2


def test_the_plan_takes_the_declared_background() -> None:
    from unetfamily.data.fingerprint import fingerprint_dataset
    from unetfamily.plan.rules import content_classes

    spec = {"type": "synthetic", "num_classes": 4, "size": 32, "num_samples": 4}
    assert content_classes(fingerprint_dataset(build_dataset(spec, "train"))) == ["blob", "polygon", "vessel"]
    content = content_classes(fingerprint_dataset(build_dataset({**spec, "background": False}, "train")))
    assert content == ["background", "blob", "polygon", "vessel"]


def test_train_validates_and_eval_scores_by_the_datas_background(tmp_path: Path, capsys) -> None:
    from unetfamily.engine.checkpoint import load_checkpoint
    from unetfamily.engine.pretrained import checkpoint_card

    data = {"type": "synthetic", "num_classes": 4, "size": 32, "num_samples": {"train": 4, "val": 4},
            "background": False}
    cfg = {"model": {"name": "unet", "kwargs": {"channels": [4, 8]}}, "data": data, "loader": {"batch_size": 4},
           "train": {"epochs": 1, "progress": False, "loggers": []}, "output_dir": str(tmp_path / "run")}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(path)]) == 0
    (validated,) = load_checkpoint(tmp_path / "run").extra["history"]
    assert load_checkpoint(tmp_path / "run").extra["background"] is False
    card = checkpoint_card(load_checkpoint(tmp_path / "run"), tmp_path / "run")
    assert card.training_data["class 0"] == "scored like the other classes"
    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(tmp_path / "run"), "--out", str(out)]) == 0
    assert "mean over all 4 classes (class 0, background, is scored like the others)" in capsys.readouterr().out
    result = json.loads(out.read_text())
    per_class = [v for v in result["per_class_dice"] if v is not None and math.isfinite(v)]
    assert result["background"] is False and result["dice"] == pytest.approx(sum(per_class) / len(per_class))
    assert validated["dice"] == pytest.approx(result["dice"])  # validation scored the same classes


# -- pictures and crops: a content class 0 is painted and oversampled like every class --------------------------
def test_overlays_paint_a_content_class_0_in_its_own_colour_and_keep_the_other_colours() -> None:
    from unetfamily.overlay import CLASS_COLORS, CONTENT_CLASS0_COLOR, class_colors, overlay, overlay_rows

    image = np.full((1, 2, 4), 100, np.uint8)
    mask = np.array([[0, 1, 2, 255], [0, 14, 0, 3]])
    background, content = overlay(image, mask), overlay(image, mask, background=False)
    assert tuple(background[0, 0]) == (100, 100, 100)  # a background class 0 is never painted
    assert tuple(content[0, 0]) == tuple((np.array([100] * 3) + CONTENT_CLASS0_COLOR) // 2)
    assert np.array_equal(content[mask != 0], background[mask != 0])  # classes 1.. and ignored pixels: as before
    assert tuple(class_colors(np.array(0))) == (0, 0, 0) and tuple(class_colors(np.array(0), False)) == (250, 190, 212)
    assert CONTENT_CLASS0_COLOR not in [tuple(c) for c in CLASS_COLORS] + [(128, 128, 128)]
    assert np.array_equal(class_colors(np.arange(1, 40), False), class_colors(np.arange(1, 40)))
    rows = overlay_rows(image[None], mask[None], np.zeros_like(mask)[None], background=False)
    assert tuple(rows[0, 0]) == (100, 100, 100)  # the first column is the image alone
    assert np.array_equal(rows[:, 4:8], content) and (rows[:, 8:] != 100).all()


def test_training_images_paint_class_0_as_the_data_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tensorboard")
    from unetfamily.engine import loop

    seen = []
    monkeypatch.setattr(loop, "overlay_rows", lambda *a: seen.append(a[3]) or np.zeros((4, 6, 3), np.uint8))
    for background in (False, True):
        data = {"type": "synthetic", "num_classes": 4, "size": 16, "num_samples": {"train": 2, "val": 2},
                "background": background}
        cfg = {"model": {"name": "unet", "kwargs": {"channels": [4, 8]}}, "data": data, "loader": {"batch_size": 2},
               "train": {"max_steps": 1, "progress": False, "loggers": ["tensorboard"], "image_every": 1},
               "output_dir": str(tmp_path / f"run{background}")}
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
        assert main(["train", "--config", str(tmp_path / "c.yaml")]) == 0
    assert seen == [False, True]


def test_the_foreground_crop_oversamples_class_0_when_the_data_says_it_is_content(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("kornia")
    from unetfamily.plan import data_cost

    _scene(tmp_path / "scenes", count=4)
    folder = {"type": "folder", "root": str(tmp_path / "scenes"), "mask_encoding": "index",
              "splits": {"fractions": {"train": 0.5, "val": 0.5}, "seed": 0},
              "augment": {"preset": "light", "crop_size": 8, "foreground": 1.0}}
    for classes, declared, expected in [(["sky", "road", "car"], None, False), (["sky", "road", "car"], True, True),
                                        (["background", "road", "car"], None, True),
                                        (["background", "road", "car"], False, False)]:
        config = {**folder, "classes": classes, **({} if declared is None else {"background": declared})}
        ds = build_dataset(config, "train")
        assert ds.transform.crop.background is expected, (classes, declared)
        built = []
        monkeypatch.setattr(data_cost, "build_augmentation", lambda *a, **k: built.append(k) or None)
        data_cost.measure_data_cost(ds, scale=1.0, preset="light", patch=(8, 8), foreground=1.0, cached=False)
        assert built[0]["background"] is expected  # the plan times the crop training will run
        monkeypatch.undo()
