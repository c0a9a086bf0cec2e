"""labelme conversion on files written by labelme itself (see fixtures/labelme/make_fixtures.py)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from unetfamily.cli import main
from unetfamily.data import DataError, build_dataset
from unetfamily.data.labelme import convert_labelme, read_labelme

from .conftest import FIXTURES

LABELME = FIXTURES / "labelme"


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "project"
    shutil.copytree(LABELME, root, ignore=shutil.ignore_patterns("expected", "*.py"))
    return root


def test_masks_match_labelme_own_rasterisation(tree, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["dataset", "labelme", str(tree), "--out", str(out), "--labels", str(tree / "labels.txt")])
    assert code == 0 and "wrote 3 image/mask pair(s)" in capsys.readouterr().out
    for name in ("a", "b", "c"):  # c: mask, linestrip, point and oriented-rectangle shapes
        expected = np.asarray(Image.open(LABELME / "expected" / f"{name}.png"))
        got = Image.open(out / "masks" / f"{name}.png")
        assert got.mode == "P" and np.array_equal(np.asarray(got), expected)
    assert (out / "classes.txt").read_text().split() == ["background", "cat", "dog"]
    assert (out / "images" / "a.png").read_bytes() == (LABELME / "images" / "a.png").read_bytes()
    assert Image.open(out / "images" / "b.jpg").size == (36, 32)  # decoded from imageData


def test_converted_folder_loads_as_a_dataset(tree, tmp_path):
    out = tmp_path / "out"
    convert_labelme(tree, out, labels_file=tree / "labels.txt")
    config = {"type": "folder", "root": str(out), "classes": str(out / "classes.txt")}
    ds = build_dataset({**config, "in_channels": 3}, "all")  # c.png is gray among colour images
    assert ds.info.classes == ["background", "cat", "dog"] and ds.names == ["a", "b", "c"]
    assert ds[0]["mask"].unique().tolist() == [0, 1, 2, 255]  # __ignore__ polygon -> ignore_index
    assert ds[1]["image"].shape == (3, 32, 36)


def test_classes_without_labels_file_are_sorted_labels(tree, tmp_path):
    with pytest.raises(DataError, match="a.json: imagePath '../images/a.png' points outside the dataset root"):
        convert_labelme(tree / "annotations", tmp_path / "out")  # the root defaults to the folder given
    report = convert_labelme(tree / "annotations", tmp_path / "out", root=tree)
    assert report.classes == ["background", "cat", "dog"] and report.pixels["<ignore>"] == 24


@pytest.mark.parametrize("image_path", ["/etc/hostname", "../../../../etc/hostname", "..\\..\\secret.png", "C:\\x.png"])
def test_image_path_cannot_leave_the_root(tree, tmp_path, image_path, capsys):
    doc = json.loads((tree / "annotations" / "a.json").read_text())
    doc["imagePath"] = image_path
    (tree / "annotations" / "a.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match="a.json: imagePath .* (is absolute|outside the dataset root)"):
        read_labelme(tree / "annotations" / "a.json", root=tree)
    code = main(["dataset", "labelme", str(tree), "--out", str(tmp_path / "out")])
    assert code == 2 and "imagePath" in capsys.readouterr().err


def test_symlink_escaping_the_root_is_refused(tree, tmp_path):
    outside = tmp_path / "outside.png"
    shutil.copy(LABELME / "images" / "a.png", outside)
    (tree / "images" / "a.png").unlink()
    (tree / "images" / "a.png").symlink_to(outside)
    with pytest.raises(DataError, match="outside the dataset root"):
        read_labelme(tree / "annotations" / "a.json", root=tree)


def test_unknown_label_and_bad_json(tree, tmp_path):
    (tree / "labels.txt").write_text("__ignore__\n_background_\ncat\n")
    with pytest.raises(DataError, match="a.json: label 'dog' is not in the class list"):
        convert_labelme(tree, tmp_path / "out", labels_file=tree / "labels.txt")
    (tree / "annotations" / "a.json").write_text("{not json")
    with pytest.raises(DataError, match="a.json: not a readable labelme JSON file"):
        read_labelme(tree / "annotations" / "a.json", root=tree)


@pytest.mark.parametrize("ignore_index", [2, 256])
def test_ignore_index_must_fit_the_png(tree, tmp_path, ignore_index):
    with pytest.raises(DataError, match=f"3 classes do not fit an 8-bit PNG mask with ignore_index={ignore_index}"):
        convert_labelme(tree, tmp_path / "out", labels_file=tree / "labels.txt", ignore_index=ignore_index)
