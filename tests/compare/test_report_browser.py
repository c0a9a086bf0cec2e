"""The report page's parts that need no browser: per-case artifacts of any size, error maps, thumbnails,
the case files beside the page, the runs table with its links."""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetfamily.compare.artifacts import load_cases, save_cases
from unetfamily.compare.report import write_report
from unetfamily.compare.report_browser import ERROR_COLORS, MIN_SIDE, THUMB_SIDE, error_png, mask_png, thumb_side
from unetfamily.compare.results import CompareResults
from unetfamily.overlay import CONTENT_CLASS0_COLOR, class_colors


def _rgba(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))


def test_cases_of_several_sizes_round_trip(tmp_path: Path) -> None:
    arrays = [np.full((3, 4, 5), 7, np.uint8), np.arange(12, dtype=np.uint8).reshape(3, 2, 2)]
    save_cases(tmp_path / "ragged.npz", ["a.png", "b.png"], images=arrays)
    back = load_cases(tmp_path / "ragged.npz", ("images",))
    assert back["names"] == ["a.png", "b.png"] and all(np.array_equal(x, y) for x, y in zip(back["images"], arrays))
    same = [np.zeros((2, 3), np.uint8), np.ones((2, 3), np.uint8)]
    save_cases(tmp_path / "stacked.npz", ["a", "b"], pred=same)
    with np.load(tmp_path / "stacked.npz") as f:
        assert sorted(f.files) == ["names", "pred"] and f["pred"].shape == (2, 2, 3)  # one size: one array
    with pytest.raises(ValueError, match="pred: 1 arrays for 2 names"):
        save_cases(tmp_path / "bad.npz", ["a", "b"], pred=same[:1])


def test_error_map_marks_false_positives_and_negatives_in_two_colours() -> None:
    truth = np.array([[0, 0, 1, 1, 2, 255]], np.uint8)
    pred = np.array([[0, 1, 1, 0, 1, 1]], np.uint8)
    rgba = _rgba(error_png(pred, truth, side=64))[0]
    assert rgba[0, 3] == 0 and rgba[2, 3] == 0  # right: transparent
    assert tuple(rgba[1, :3]) == ERROR_COLORS["false positive"] and rgba[1, 3] == 255  # truth background
    assert tuple(rgba[3, :3]) == ERROR_COLORS["false negative"]  # missed foreground
    assert tuple(rgba[4, :3]) == ERROR_COLORS["false negative"]  # foreground given another class
    assert rgba[5, 3] == 0  # ignored pixels are never errors


def test_masks_in_class_colours_transparent_background_on_the_page_black_in_files() -> None:
    mask = np.array([[0, 1, 2, 255]], np.uint8)
    page, file = _rgba(mask_png(mask, 64, transparent=True))[0], _rgba(mask_png(mask, None, transparent=False))[0]
    assert page[0, 3] == 0 and file[0, 3] == 255 and tuple(file[0, :3]) == (0, 0, 0)
    for k in (1, 2):
        assert tuple(page[k, :3]) == tuple(class_colors(np.array(k))) and page[k, 3] == 255
    big = _rgba(mask_png(np.zeros((600, 300), np.uint8), 256, transparent=True))
    assert big.shape[:2] == (256, 128)  # fitted to the thumbnail side, aspect kept


def test_with_a_content_class_0_every_wrong_pixel_is_a_wrong_class_and_class_0_is_painted() -> None:
    truth = np.array([[0, 0, 1, 1, 2, 255]], np.uint8)
    pred = np.array([[0, 1, 1, 0, 1, 1]], np.uint8)
    rgba = _rgba(error_png(pred, truth, side=64, background=False))[0]
    assert rgba[0, 3] == 0 and rgba[2, 3] == 0 and rgba[5, 3] == 0  # right or ignored: transparent
    for k in (1, 3, 4):  # truth class 0 too: no false positive when class 0 is content
        assert tuple(rgba[k, :3]) == ERROR_COLORS["wrong class"] and rgba[k, 3] == 255
    assert ERROR_COLORS["wrong class"] not in (ERROR_COLORS["false positive"], ERROR_COLORS["false negative"])
    mask = np.array([[0, 1, 2, 255]], np.uint8)
    for transparent in (True, False):
        content, before = _rgba(mask_png(mask, 64, transparent, background=False))[0], _rgba(mask_png(mask, 64, True))[0]
        assert tuple(content[0]) == (*CONTENT_CLASS0_COLOR, 255)  # opaque in its own colour, on the page and in files
        assert np.array_equal(content[1:], before[1:])  # classes 1.. and ignored pixels as with a background


def test_a_report_on_content_class_0_says_wrong_class_and_paints_class_0(make_results, monkeypatch) -> None:
    from unetfamily.compare import plots

    raw, root = make_results(task="multiclass")
    page = write_report(CompareResults.from_dict(raw), root)["report.html"].read_text()
    assert "false positive" in page and "wrong class" not in page
    raw["protocol"]["background"] = False
    backgrounds = []
    drawn = plots.overlay
    monkeypatch.setattr(plots, "overlay", lambda *a, **k: backgrounds.append(k.get("background")) or drawn(*a, **k))
    paths = write_report(CompareResults.from_dict(raw), root)
    page = paths["report.html"].read_text()
    assert "wrong class" in page and "false positive" not in page and "false negative" not in page
    assert backgrounds.count(False) > 0 and set(backgrounds) == {None, False}  # None: the image alone, nothing tinted
    case = _page_data(page)["cases"][0]
    with np.load(root / "artifacts" / "samples.npz") as f:
        truth = f["masks"][0]
    gt = np.asarray(Image.open(root / case["files"]["gt"]).convert("RGBA"))[..., :3]
    assert (gt[truth == 0] == CONTENT_CLASS0_COLOR).all()


def test_thumbnails_shrink_with_many_cases_but_not_below_the_minimum() -> None:
    sides = [thumb_side(n) for n in (1, 400, 401, 1600, 6400, 10 ** 6)]
    assert sides[:2] == [THUMB_SIDE, THUMB_SIDE] and sides[3] == THUMB_SIDE // 2
    assert sides == sorted(sides, reverse=True) and sides[-1] == MIN_SIDE


def _page_data(page: str) -> dict:
    return json.loads(re.search(r'id="cb-data">(.*?)</script>', page, re.S).group(1))


def test_report_of_images_of_several_sizes(make_results) -> None:
    raw, root = make_results()
    with np.load(root / "artifacts" / "samples.npz") as f:
        images, masks, names = list(f["images"]), list(f["masks"]), [str(n) for n in f["names"]]
    images[2], masks[2] = images[2][:, :20, :12], masks[2][:20, :12]  # one case of another size
    save_cases(root / "artifacts" / "samples.npz", names, images=images, masks=masks)
    for vid, rel in raw["artifacts"]["predictions"].items():
        pred = load_cases(root / rel, ("pred",))["pred"]
        pred[2] = pred[2][:20, :12]
        save_cases(root / rel, names, pred=pred)
    paths = write_report(CompareResults.from_dict(raw), root)
    data = _page_data(paths["report.html"].read_text())
    assert len(data["cases"]) == len(names) and len(data["models"]) == len(raw["variants"])
    case = data["cases"][2]
    assert Image.open(root / case["files"]["image"]).size == (12, 20)
    assert all(Image.open(root / f).size == (12, 20) for f in [case["files"]["gt"], *case["files"]["pred"]])
    assert "plots/samples.png" in paths  # the figures draw cases of any size too


def test_runs_table_links_each_runs_log_tensorboard_and_checkpoint(make_results, binary_report) -> None:
    assert "## Runs" not in binary_report[1]["report.md"].read_text()  # no run folders beside that report
    raw, root = make_results()
    for run in raw["runs"]:
        folder = root / "runs" / run["variant"] / f"seed{run['seed']}"
        (folder / "checkpoints").mkdir(parents=True)
        (folder / "tensorboard").mkdir()
        (folder / "train.log").write_text("log\n")
        (folder / "checkpoints" / "last.safetensors").write_bytes(b"weights")
    paths = write_report(CompareResults.from_dict(raw), root)
    md, page = paths["report.md"].read_text(), paths["report.html"].read_text()
    runs = md.split("## Runs")[1].split("\n## ")[0]
    assert runs.count("[train.log](runs/") == len(raw["runs"])
    assert "| U-Net | 1 | 0 | 100 | [train.log](runs/unet/seed1/train.log) | [tensorboard](runs/unet/seed1/tensorboard)" \
           " | [last.safetensors](runs/unet/seed1/checkpoints/last.safetensors) |" in runs
    hrefs = re.findall(r'<a href="(runs/[^"]+)">', page)
    assert len(hrefs) == 3 * len(raw["runs"]) and all((root / h).exists() for h in hrefs)
    for run in raw["runs"]:  # trained with --loggers '': no TensorBoard folder, so no link to one
        (root / "runs" / run["variant"] / f"seed{run['seed']}" / "tensorboard").rmdir()
    runs = write_report(CompareResults.from_dict(raw), root)["report.md"].read_text().split("## Runs")[1]
    assert "[tensorboard]" not in runs and "| [train.log](runs/unet/seed1/train.log) | — |" in runs


def test_case_files_of_an_earlier_report_are_removed(make_results) -> None:
    raw, root = make_results()
    stale = root / "cases" / "9999_gone" / "image.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    first = write_report(CompareResults.from_dict(raw), root)
    assert not stale.exists() and not stale.parent.exists()
    again = write_report(CompareResults.from_dict(raw), root)
    assert {k: p.read_bytes() for k, p in first.items()} == {k: p.read_bytes() for k, p in again.items()}
