"""The dataset fingerprint (unetfamily.data.fingerprint) on small synthetic datasets with known answers."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from unetfamily.data import build_dataset, data_root
from unetfamily.data import fingerprint as fpmod
from unetfamily.data.base import DatasetInfo, SegmentationDataset
from unetfamily.data.errors import DataConfigError, DataError
from unetfamily.data.fingerprint import Fingerprint, describe, fingerprint_dataset, load_or_compute_fingerprint

CLASSES = ["background", "fg"]


class ArrayDataset(SegmentationDataset):
    """Samples given as arrays: images ``(H, W, C)`` uint8, masks ``(H, W)`` uint8."""

    def __init__(self, images: list[np.ndarray], masks: list[np.ndarray], classes=CLASSES, ignore_index: int = 255,
                 **kw) -> None:
        super().__init__(DatasetInfo(list(classes), ignore_index, images[0].shape[2]), **kw)
        self.images, self.masks = images, masks

    def __len__(self) -> int:
        return len(self.images)

    def sample_name(self, index: int) -> str:
        return f"s{index}"

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.images[index], self.masks[index]


def const(h: int, w: int, value: int = 0, c: int = 1) -> np.ndarray:
    return np.full((h, w, c), value, np.uint8)


def zeros(h: int, w: int) -> np.ndarray:
    return np.zeros((h, w), np.uint8)


def square(h: int, w: int, top: int, left: int, side: int, value: int = 1) -> np.ndarray:
    m = zeros(h, w)
    m[top : top + side, left : left + side] = value
    return m


def test_sizes_median_min_max_from_a_folder_of_pngs(tmp_path: Path):
    sizes = {"a": (10, 40), "b": (20, 20), "c": (30, 12), "d": (8, 8), "e": (16, 50)}
    for name, (h, w) in sizes.items():
        (tmp_path / "images").mkdir(exist_ok=True)
        (tmp_path / "masks").mkdir(exist_ok=True)
        Image.fromarray(const(h, w, 7)[..., 0]).save(tmp_path / "images" / f"{name}.png")
        Image.fromarray(square(h, w, 0, 0, 4)).save(tmp_path / "masks" / f"{name}.png")
    ds = build_dataset({"type": "folder", "root": str(tmp_path), "classes": CLASSES}, "all")
    fp = fingerprint_dataset(ds)
    assert (fp.cases, fp.channels) == (5, 1)
    assert fp.size_median == [16, 20]  # per axis: median of H (8,10,16,20,30) and of W (8,12,20,40,50)
    assert fp.size_min == [8, 8] and fp.size_max == [16, 50]  # by area
    assert len(fp.size_sample) == 21 and fp.size_sample[0] == [8, 8] and fp.size_sample[-1] == [16, 50]
    assert fp.size_sample[10] == [10, 40]  # by area 8x8, 30x12, 10x40, 20x20, 16x50: the median in the middle
    assert fp.intensity[0]["mean"] == pytest.approx(7 / 255, rel=1e-6)


def test_constant_images_have_exact_mean_and_zero_std():
    ds = ArrayDataset([const(8, 8, 51, c=3)] * 3, [zeros(8, 8)] * 3)
    fp = fingerprint_dataset(ds)
    assert fp.channels == 3
    for ch in fp.intensity:
        assert ch == {"mean": 0.2, "std": 0.0, "p00_5": 0.2, "p99_5": 0.2}
    assert fp.intensity_foreground is None  # no foreground pixels
    assert fp.objects["fg"] == {"count": 0, "median_area": None, "p05_area": None, "median_extent": None,
                                "pixel_area": None, "pixel_extent": None}
    assert fp.boundary_fraction["fg"] is None


def test_two_level_images_percentiles_and_foreground_intensity():
    img = const(20, 20, 51)
    img[10:] = 204  # half 0.2, half 0.8
    mask = zeros(20, 20)
    mask[10:] = 1  # the bright half is foreground
    fp = fingerprint_dataset(ArrayDataset([img, img], [mask, mask]))
    (ch,) = fp.intensity
    assert ch["mean"] == pytest.approx(0.5) and ch["std"] == pytest.approx(0.3)
    assert (ch["p00_5"], ch["p99_5"]) == (0.2, 0.8)
    (fg,) = fp.intensity_foreground
    assert fg == {"mean": 0.8, "std": 0.0, "p00_5": 0.8, "p99_5": 0.8}


def test_class_fraction_presence_and_objects_of_drawn_squares():
    m1 = square(40, 40, 2, 2, 4)
    m1[20:30, 20:30] = 1  # two squares: 16 px and 100 px
    m2 = square(40, 40, 5, 5, 6)  # one square of 36 px
    m3 = zeros(40, 40)  # no foreground
    fp = fingerprint_dataset(ArrayDataset([const(40, 40)] * 3, [m1, m2, m3]))
    assert fp.pixels_total == 3 * 1600
    assert fp.class_fraction["fg"] == pytest.approx(152 / 4800, rel=1e-5)
    assert fp.class_fraction["background"] == pytest.approx(1 - 152 / 4800, rel=1e-5)
    assert fp.class_presence == {"background": 1.0, "fg": pytest.approx(2 / 3, rel=1e-5)}
    obj = fp.objects["fg"]
    assert obj["count"] == 3 and obj["median_area"] == 36.0 and obj["median_extent"] == 6.0
    assert obj["p05_area"] == pytest.approx(16 + 0.1 * 20)  # 5th percentile of (16, 36, 100), linear
    # per pixel: 100 of the 152 pixels lie in the 10x10 square, so a typical pixel's object is that square
    assert obj["pixel_area"] == 100.0 and obj["pixel_extent"] == 10.0


def test_pixel_medians_are_not_outvoted_by_specks():
    m = zeros(40, 40)
    m[5:25, 5:25] = 1  # one 20x20 region ...
    for i in range(9):
        m[30 + i % 3 * 3, 2 + i * 4] = 1  # ... and nine one-pixel specks
    obj = fingerprint_dataset(ArrayDataset([const(40, 40)], [m])).objects["fg"]
    assert obj["count"] == 10 and obj["median_area"] == 1.0 and obj["median_extent"] == 1.0  # per object: a speck
    assert obj["pixel_area"] == 400.0 and obj["pixel_extent"] == 20.0  # per pixel: the region


def test_every_class_index_0_too_gets_objects_boundary_and_width():
    m = zeros(20, 20)
    m[:, 10:] = 1  # two halves
    fp = fingerprint_dataset(ArrayDataset([const(20, 20)], [m]))
    assert set(fp.objects) == set(fp.boundary_fraction) == set(fp.width) == {"background", "fg"}
    assert fp.objects["background"]["pixel_area"] == 200.0 and fp.objects["background"]["pixel_extent"] == 20.0


def test_diagonal_pixels_are_one_object_8_connected():
    m = zeros(10, 10)
    m[np.arange(5), np.arange(5)] = 1
    fp = fingerprint_dataset(ArrayDataset([const(10, 10)], [m]))
    assert fp.objects["fg"]["count"] == 1 and fp.objects["fg"]["median_extent"] == 5.0


def test_boundary_fraction_of_a_line_versus_a_square():
    line = zeros(40, 40)
    line[20, 5:35] = 1
    fp_line = fingerprint_dataset(ArrayDataset([const(40, 40)], [line]))
    fp_square = fingerprint_dataset(ArrayDataset([const(40, 40)], [square(40, 40, 10, 10, 20)]))
    assert fp_line.boundary_fraction["fg"] == 1.0
    assert fp_square.boundary_fraction["fg"] == pytest.approx(76 / 400, rel=1e-5)
    assert fp_line.width["fg"] == 1.0 and fp_square.width["fg"] == 19.0


def test_width_is_the_typical_cross_section_not_the_jagged_edge():
    m = zeros(60, 60)
    m[10:50, 10:50] = 1  # a 40 px square ...
    m[9, 10:50:2] = m[50, 10:50:2] = m[10:50:2, 9] = m[10:50:2, 50] = 1  # ... fringed with one-pixel teeth
    fp = fingerprint_dataset(ArrayDataset([const(60, 60)], [m]))
    # the teeth's medial pixels outnumber the body's (an unweighted median gives 3 px), but each counts by its width
    assert fp.width["fg"] == pytest.approx(39, abs=1)


def test_width_of_a_3px_band():
    band = zeros(40, 40)
    band[10:13, :] = 1
    fp = fingerprint_dataset(ArrayDataset([const(40, 40)], [band]))
    assert fp.width["fg"] == 3.0
    assert fp.boundary_fraction["fg"] == pytest.approx(2 / 3, rel=1e-5)


def test_vertical_asymmetry_street_versus_symmetric():
    street = zeros(10, 12)
    street[:5] = 1  # sky on top
    street[5:] = 2  # road below
    classes = ["void", "sky", "road"]
    fp = fingerprint_dataset(ArrayDataset([const(10, 12)] * 2, [street] * 2, classes=classes))
    assert fp.vertical_asymmetry == 1.0
    blob = square(10, 12, 3, 3, 4)  # centred vertically (rows 3..6)
    sym = fingerprint_dataset(ArrayDataset([const(10, 12)], [blob]))
    assert sym.vertical_asymmetry == 0.0
    flipped = fingerprint_dataset(ArrayDataset([const(10, 12)] * 2, [street, street[::-1].copy()], classes=classes))
    assert flipped.vertical_asymmetry == 0.0  # pooled over images


def test_size_follows_tells_magnification_from_a_wider_view():
    # magnified: the blob grows with the image (extent = a third of the side); wider view: the same 4 px blob
    sides = [24, 30, 36, 48, 60, 72, 90, 96, 120]
    magnified = ArrayDataset([const(s, s) for s in sides], [square(s, s, 1, 1, s // 3) for s in sides])
    wider = ArrayDataset([const(s, s) for s in sides], [square(s, s, 1, 1, 4) for s in sides])
    assert fingerprint_dataset(magnified).size_follows["fg"] == pytest.approx(1.0)
    assert fingerprint_dataset(wider).size_follows["fg"] is None  # constant extents: no correlation to rank
    noisy = [square(s, s, 1, 1, 4 + (i * 5) % 7) for i, s in enumerate(sides)]
    r = fingerprint_dataset(ArrayDataset([const(s, s) for s in sides], noisy)).size_follows["fg"]
    assert r == pytest.approx(0.1177, abs=1e-3)  # scipy's Spearman of the sides and 4, 9, 7, 5, 10, 8, 6, 4, 9
    few = ArrayDataset([const(s, s) for s in sides[: fpmod.SIZE_FOLLOWS_CASES - 1]],
                       [square(s, s, 1, 1, s // 3) for s in sides[: fpmod.SIZE_FOLLOWS_CASES - 1]])
    assert fingerprint_dataset(few).size_follows["fg"] is None  # too few images to rank
    one_size = ArrayDataset([const(40, 40)] * 9, [square(40, 40, 1, 1, 2 + i) for i in range(9)])
    assert fingerprint_dataset(one_size).size_follows["fg"] is None  # every image one side
    assert any("object size vs image size" in line for line in describe(fingerprint_dataset(magnified)))


def test_ignored_pixels_are_left_out():
    img = const(10, 10, 0)
    img[:, 5:] = 255  # the ignored half is bright
    mask = zeros(10, 10)
    mask[:, 5:] = 255
    mask[0:2, 0:2] = 1
    fp = fingerprint_dataset(ArrayDataset([img], [mask]))
    assert fp.pixels_total == 50
    assert fp.class_fraction == {"background": pytest.approx(46 / 50), "fg": pytest.approx(4 / 50)}
    assert fp.intensity_foreground[0]["mean"] == 0.0  # the bright ignored pixels are not foreground
    assert fp.intensity[0]["mean"] == pytest.approx(0.5)  # but they are image pixels
    assert fp.objects["fg"]["count"] == 1


def test_max_cases_takes_a_seeded_deterministic_subset():
    masks = [square(8, 8, 0, 0, 1 + i % 7) for i in range(20)]
    ds = ArrayDataset([const(8, 8, i) for i in range(20)], masks)
    a, b = fingerprint_dataset(ds, max_cases=5, seed=3), fingerprint_dataset(ds, max_cases=5, seed=3)
    assert a == b and a.cases == 5
    assert fingerprint_dataset(ds, max_cases=5, seed=4) != a
    assert fingerprint_dataset(ds, max_cases=None).cases == 20
    with pytest.raises(DataConfigError, match="max_cases"):
        fingerprint_dataset(ds, max_cases=0)


def test_transform_and_resize_are_not_applied():
    def boom(sample):
        raise AssertionError("the transform must not run")

    ds = ArrayDataset([const(12, 16)], [zeros(12, 16)], transform=boom)
    assert fingerprint_dataset(ds).size_median == [12, 16]


def test_round_trip_through_yaml_and_json():
    m = square(30, 30, 3, 3, 7)
    img = np.random.default_rng(0).integers(0, 256, (30, 30, 3), dtype=np.uint8)
    fp = fingerprint_dataset(ArrayDataset([img, img[::-1].copy()], [m, m.T.copy()]))
    d = fp.to_dict()
    assert Fingerprint.from_dict(yaml.safe_load(yaml.safe_dump(d))) == fp
    assert Fingerprint.from_dict(json.loads(json.dumps(d))) == fp
    assert all(len(f"{v:.15g}".replace(".", "").lstrip("0")) <= 6 for v in d["intensity"][0].values())
    with pytest.raises(DataError, match="missing keys"):
        Fingerprint.from_dict({k: v for k, v in d.items() if k != "objects"})
    assert Fingerprint.from_dict({k: v for k, v in d.items() if k != "width"}).width is None  # optional
    with pytest.raises(DataError, match="version"):
        Fingerprint.from_dict({**d, "version": 99})
    lines = describe(fp)
    assert any("median 30x30" in line for line in lines) and any("fg:" in line for line in lines)
    assert any(line.startswith("background:") and "typical pixel" in line for line in lines)


def _counting(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = fpmod.fingerprint_dataset

    def counted(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(fpmod, "fingerprint_dataset", counted)
    return calls


def test_cache_is_reused_and_invalidated_by_key(tmp_path: Path, monkeypatch):
    calls = _counting(monkeypatch)
    ds = ArrayDataset([const(8, 8, 9)], [square(8, 8, 1, 1, 3)])
    cache = tmp_path / "sub" / "fp.json"
    first = load_or_compute_fingerprint(ds, cache, "k1")
    assert json.loads(cache.read_text())["key"] == "k1" and len(calls) == 1
    assert load_or_compute_fingerprint(ds, cache, "k1") == first and len(calls) == 1
    load_or_compute_fingerprint(ds, cache, "k2")
    assert len(calls) == 2 and json.loads(cache.read_text())["key"] == "k2"
    load_or_compute_fingerprint(ds, cache, "k2", max_cases=3)  # other options: recomputed
    assert len(calls) == 3


@pytest.mark.parametrize("text", ["{not json", '{"key": "k", "options": {"max_cases": 500, "seed": 0}, '
                                  '"fingerprint": {"cases": 1}}', "[1, 2]"])
def test_corrupt_cache_is_recomputed_with_a_warning(tmp_path: Path, monkeypatch, caplog, text):
    calls = _counting(monkeypatch)
    cache = tmp_path / "fp.json"
    cache.write_text(text)
    ds = ArrayDataset([const(8, 8, 9)], [square(8, 8, 1, 1, 3)])
    with caplog.at_level(logging.WARNING, logger="unetfamily.data.fingerprint"):
        fp = load_or_compute_fingerprint(ds, cache, "k")
    assert len(calls) == 1 and "unreadable" in caplog.text
    assert Fingerprint.from_dict(json.loads(cache.read_text())["fingerprint"]) == fp


def test_a_cache_from_an_older_version_is_recomputed_quietly(tmp_path: Path, monkeypatch, caplog):
    calls = _counting(monkeypatch)
    ds = ArrayDataset([const(8, 8, 9)], [square(8, 8, 1, 1, 3)])
    cache = tmp_path / "fp.json"
    record = {"key": "k", "options": {"max_cases": 500, "seed": 0},
              "fingerprint": {**load_or_compute_fingerprint(ds, cache, "k").to_dict(), "version": 3}}
    cache.write_text(json.dumps(record))
    with caplog.at_level(logging.INFO, logger="unetfamily.data.fingerprint"):
        load_or_compute_fingerprint(ds, cache, "k")
    assert len(calls) == 2 and "another version" in caplog.text and "WARNING" not in caplog.text


ISBI = data_root() / "isbi2012_em"


@pytest.mark.skipif(not ISBI.is_dir(), reason="ISBI 2012 data not present")
def test_real_isbi_membranes_are_thin():
    config = Path(__file__).parents[1] / "configs" / "data" / "isbi2012_em.yaml"
    ds = build_dataset(config, "train", cache=False)
    fp = fingerprint_dataset(ds)
    assert fp.channels == 1 and fp.cases in (24, 30) and fp.cases == len(ds)
    assert fp.size_median == [512, 512]
    # Labelled membranes are ~5 px wide: a quarter of their pixels touch a cell (0.26 measured),
    # against 0.12 for DSB2018 nuclei and 0.01 for Kvasir polyps at native size.
    assert fp.boundary_fraction["membrane"] > 0.2
    assert fp.width["membrane"] <= 7
    assert fp.vertical_asymmetry < 0.1


def test_the_flip_test_needs_images_laid_out_alike():
    """An up is claimed from the layout the images share, not from one image's random objects."""
    from unetfamily.data.fingerprint_stats import flip_p

    street_top, street_bottom = np.array([[60, 0]]), np.array([[0, 60]])
    assert flip_p(street_top, street_bottom) == 1.0  # one image: its flip is as far from "no up"
    for n, p in ((5, 2 / 32), (6, 2 / 64)):
        assert flip_p(np.repeat(street_top, n, 0), np.repeat(street_bottom, n, 0)) == pytest.approx(p)
    mixed_top = np.array([[60, 0], [0, 60]] * 4)  # half the images upside down
    assert flip_p(mixed_top, mixed_top[:, ::-1]) > 0.5
    many = flip_p(np.repeat(street_top, 40, 0), np.repeat(street_bottom, 40, 0))  # 2^40 flips: drawn
    assert many == pytest.approx(1 / 2049)
    assert flip_p(np.zeros((0, 2)), np.zeros((0, 2))) is None


def test_one_image_with_an_off_centre_blob_has_no_up():
    from unetfamily.plan.rules import augmentation

    blob = square(32, 32, 2, 4, 10)  # in the top half only: asymmetry 1.0 from one image
    fp = fingerprint_dataset(ArrayDataset([const(32, 32)], [blob]))
    assert fp.vertical_asymmetry > 0.1 and fp.vertical_asymmetry_p == 1.0 and not fp.has_up()
    choice = augmentation(fp)
    assert choice.value == "medical" and "flip test p 1 >= 0.05" in choice.reason
    streets = fingerprint_dataset(ArrayDataset([const(32, 32)] * 8, [blob] * 8))
    assert streets.has_up() and augmentation(streets).value == "natural"
    assert "flip test p 0.0078 < 0.05" in augmentation(streets).reason
