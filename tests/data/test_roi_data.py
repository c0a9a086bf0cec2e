"""Regions of interest: pixels outside a per-image ROI mask become ignore_index, through resize; dataset info."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unetfamily.data import DataConfigError, DataError, build_dataset, dataset_statistics

from .conftest import save

H, W = 16, 20


def roi_of(i: int) -> np.ndarray:
    """A 0/255 field of view: the top ``8 + 2 * i`` rows."""
    roi = np.zeros((H, W), np.uint8)
    roi[: 8 + 2 * i] = 255
    return roi


def mask_of(i: int) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[4:14, 3 + i : 12 + i] = 255  # crosses the field of view's edge
    return mask


@pytest.fixture
def roi_root(tmp_path: Path, rng: np.random.Generator) -> Path:
    """``images/sN.png``, ``masks/sN_mask.png`` and ``roi/sN_fov.png`` for N = 0..2."""
    for i in range(3):
        save(tmp_path / "images" / f"s{i}.png", rng.integers(0, 256, (H, W), dtype=np.uint8))
        save(tmp_path / "masks" / f"s{i}_mask.png", mask_of(i))
        save(tmp_path / "roi" / f"s{i}_fov.png", roi_of(i))
    return tmp_path


def config(root: Path, **keys) -> dict:
    return {"type": "folder", "root": str(root), "mask_suffix": "_mask", "roi": "roi", "roi_suffix": "_fov", **keys}


def expected(i: int, ignore: int = 255) -> torch.Tensor:
    return torch.from_numpy(np.where(roi_of(i) > 0, mask_of(i) // 255, ignore)).long()


def test_mask_outside_the_roi_is_ignore_index_exactly(roi_root):
    ds = build_dataset(config(roi_root), "all")
    assert [s.roi.name for s in ds.samples] == ["s0_fov.png", "s1_fov.png", "s2_fov.png"]
    for i in range(3):
        assert torch.equal(ds[i]["mask"], expected(i))
        assert np.array_equal(ds.read_roi(i), roi_of(i) > 0)
    other = build_dataset(config(roi_root, ignore_index=7), "all")
    assert torch.equal(other[1]["mask"], expected(1, ignore=7))
    plain = build_dataset({"type": "folder", "root": str(roi_root), "mask_suffix": "_mask"}, "all")
    assert plain.read_roi(0) is None and torch.equal(plain[0]["mask"], torch.from_numpy(mask_of(0) // 255).long())


def test_roi_by_template_and_by_regex(roi_root):
    ds = build_dataset(config(roi_root, roi="roi/{id}_fov.png", roi_suffix=""), "all")
    assert torch.equal(ds[2]["mask"], expected(2))
    with pytest.raises(DataConfigError, match=r"roi_suffix applies only when 'roi' names a folder"):
        build_dataset(config(roi_root, roi="roi/{id}_fov.png"), "all")
    with pytest.raises(DataConfigError, match=r"'roi_suffix'/'roi_regex' need 'roi'"):
        build_dataset({"type": "folder", "root": str(roi_root), "roi_suffix": "_fov"}, "all")
    regex = build_dataset(config(roi_root, roi_suffix="", roi_regex=r"^(?P<id>s\d)_fov"), "all")
    assert regex.samples[0].roi.name == "s0_fov.png" and torch.equal(regex[1]["mask"], expected(1))
    (roi_root / "roi" / "s10_fov.png").write_bytes(b"")  # the regex would give 's1' again
    with pytest.raises(DataError, match=r"s1_fov.png and s10_fov.png both give sample 's1'"):
        build_dataset(config(roi_root, roi_suffix="", roi_regex=r"(?P<id>s\d)"), "all")


def test_resize_keeps_the_roi_out(roi_root):
    ds = build_dataset(config(roi_root, resize=[8, 10]), "all")
    mask = ds[0]["mask"]  # nearest-exact halving samples rows 1, 3, ...: the ROI (rows 0..7) keeps rows 0..3
    assert (mask[4:] == 255).all() and (mask[:4] != 255).all()
    assert torch.equal(mask, expected(0)[1::2, 1::2])


@pytest.mark.parametrize("form", ["palette", "rgb", "jpeg"])
def test_roi_files_in_other_forms(roi_root, form):
    inside = roi_of(1) > 0
    path = roi_root / "roi" / "s1_fov.png"
    if form == "palette":  # index 0 is outside whatever its colour; index 2 (black too) is inside
        im = Image.fromarray(np.where(inside, 2, 0).astype(np.uint8), mode="P")
        im.putpalette([255, 255, 255, 9, 9, 9, 0, 0, 0])
        im.save(path)
    elif form == "rgb":  # any nonzero channel is inside
        save(path, np.stack([np.zeros((H, W), np.uint8), np.where(inside, 1, 0).astype(np.uint8),
                             np.zeros((H, W), np.uint8)], axis=-1))
    else:
        path.unlink()
        save(roi_root / "roi" / "s1_fov.jpg", roi_of(1), quality=60)
    ds = build_dataset(config(roi_root), "all")
    assert np.array_equal(ds.read_roi(1), inside) and torch.equal(ds[1]["mask"], expected(1))


def test_roi_of_another_size_names_both_files(roi_root):
    save(roi_root / "roi" / "s2_fov.png", np.full((H, W + 1), 255, np.uint8))
    ds = build_dataset(config(roi_root), "all")
    with pytest.raises(DataError, match=r"s2.png is 20x16 \(WxH\) but its region-of-interest mask .*s2_fov.png is "
                                        r"21x16; the region-of-interest mask must have the image's size"):
        ds[2]


def test_missing_roi_is_an_error_or_a_skip(roi_root):
    (roi_root / "roi" / "s1_fov.png").unlink()
    with pytest.raises(DataError, match=r"s1.png: id 's1' has no region-of-interest mask matching "
                                        r"'.*roi/\{id\}_fov.\*'.*fix 'roi'/'roi_suffix'"):
        build_dataset(config(roi_root), "all")
    assert build_dataset(config(roi_root, on_missing="skip"), "all").names == ["s0", "s2"]


def test_dataset_info_reports_the_roi_fraction(roi_root):
    stats = dataset_statistics(build_dataset(config(roi_root), "all"), samples=3)
    assert stats.roi_fraction == pytest.approx((8 + 10 + 12) / (3 * H))
    inside = sum(int((mask_of(i)[roi_of(i) > 0] > 0).sum()) for i in range(3))
    assert stats.class_fractions["foreground"] == pytest.approx(inside / (3 * H * W), abs=1e-6)
    assert stats.class_fractions["<ignore>"] == pytest.approx(1 - stats.roi_fraction, abs=1e-6)
    plain = build_dataset({"type": "folder", "root": str(roi_root), "mask_suffix": "_mask"}, "all")
    assert dataset_statistics(plain, samples=3).roi_fraction is None


def test_a_prediction_wrong_only_outside_the_roi_scores_perfectly(roi_root):
    from unetfamily.metrics import SegmentationMetrics

    ds = build_dataset(config(roi_root), "all")
    metric = SegmentationMetrics(2, ignore_index=255)
    for i in range(3):
        truth = torch.from_numpy(mask_of(i) // 255).long()
        wrong_outside = torch.where(torch.from_numpy(roi_of(i) > 0), truth, 1 - truth)
        metric.update(wrong_outside[None], ds[i]["mask"][None])
    scores = metric.compute()
    assert scores["dice"] == pytest.approx(1.0) and scores["iou"] == pytest.approx(1.0)
