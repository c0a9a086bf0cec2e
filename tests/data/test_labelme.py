"""labelme conversion on files written by labelme itself (see fixtures/labelme/make_fixtures.py)."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil

import numpy as np
import pytest
import yaml
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


# ----------------------------------------------------------------------------- class names without --labels

TRIANGLE = [[5, 5], [20, 5], [20, 20]]


def _shape(label: object, points: list = TRIANGLE) -> dict:
    return {"label": label, "points": points, "shape_type": "polygon", "flags": {}, "group_id": None}


def _annotations(folder, *files: list[dict]):
    """One labelme file ``f<i>.json`` per list of shapes, a black 50x40 PNG embedded (imageData)."""
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(buffer, format="PNG")
    for i, shapes in enumerate(files):
        doc = {"version": "5.2.1", "shapes": shapes, "imagePath": f"i{i}.png", "imageHeight": 40, "imageWidth": 50,
               "imageData": base64.b64encode(buffer.getvalue()).decode()}
        (folder / f"f{i}.json").write_text(json.dumps(doc))
    return folder


@pytest.mark.parametrize("background", ["background", "_background_", " Background ", "_BACKGROUND_"])
def test_background_label_is_class_zero(tmp_path, capsys, background):
    everything = _shape(background, [[0, 0], [49, 0], [49, 39], [0, 39]])
    source, out = _annotations(tmp_path / "ann", [everything, _shape("cat")]), tmp_path / "out"
    assert main(["dataset", "labelme", str(source), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "classes (2): background, cat" in printed
    assert (out / "classes.txt").read_text() == "background\ncat\n"
    mask = np.asarray(Image.open(out / "masks" / "f0.png"))
    assert np.unique(mask).tolist() == [0, 1] and mask[30, 40] == 0 and mask[10, 15] == 1
    config = yaml.safe_load(printed.split("load with: ")[1])  # the config the command prints
    ds = build_dataset(config, "all")
    assert ds.info.classes == ["background", "cat"] and ds[0]["mask"].unique().tolist() == [0, 1]
    ds = build_dataset({"type": "folder", "root": str(out), "classes": str(out / "classes.txt")}, "all")
    assert ds.info.classes == ["background", "cat"]


@pytest.mark.parametrize("variant", ["cat ", "Cat", " CAT\t"])
def test_one_class_spelled_two_ways_is_refused(tmp_path, variant):
    source, out = _annotations(tmp_path / "ann", [_shape("cat")], [_shape("dog"), _shape(variant)]), tmp_path / "out"
    message = (f"f0.json: label 'cat' and {source / 'f1.json'}: label {variant!r} differ only in letter case or "
               "surrounding whitespace; nothing was written. Make them the same in the labelme files, or give --labels")
    with pytest.raises(DataError, match=re.escape(message)):
        convert_labelme(source, out)
    assert not out.exists()


def test_labels_file_matches_labels_ignoring_surrounding_whitespace(tmp_path):
    source = _annotations(tmp_path / "ann", [_shape("cat")], [_shape(" cat "), _shape("Background", [[30, 25], [45, 25], [45, 35]])])
    (tmp_path / "labels.txt").write_text("__ignore__\n_background_\ncat\n")
    report = convert_labelme(source, tmp_path / "out", labels_file=tmp_path / "labels.txt")
    assert report.classes == ["background", "cat"] and report.pixels["cat"] == 2 * 136
    (tmp_path / "ann" / "f2.json").write_text((source / "f1.json").read_text().replace(" cat ", "Cat"))
    with pytest.raises(DataError, match="f2.json: label 'Cat' is not in the class list .*; add it to --labels"):
        convert_labelme(source, tmp_path / "out2", labels_file=tmp_path / "labels.txt")


@pytest.mark.parametrize("text, error", [("_background_\ncat\ndog\n cat\n", r"\['cat'\] listed twice"),
                                         ("__ignore__\n_background_\nbackground\n", "no class besides")])
def test_labels_file_must_name_each_class_once(tmp_path, text, error):
    source = _annotations(tmp_path / "ann", [_shape("cat")])
    (tmp_path / "labels.txt").write_text(text)
    with pytest.raises(DataError, match=f"labels.txt: {error}"):
        convert_labelme(source, tmp_path / "out", labels_file=tmp_path / "labels.txt")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("files", [[[_shape("__ignore__")]], [[]], [[], [_shape("background"), _shape("__ignore__")]]])
def test_no_class_label_in_any_file_is_refused(tmp_path, files):
    source, out = _annotations(tmp_path / "ann", *files), tmp_path / "out"
    with pytest.raises(DataError, match=f"ann: no shape in the {len(files)} labelme file\\(s\\) has a class label.*"
                       "nothing to segment"):
        convert_labelme(source, out)
    assert not out.exists()


def test_files_without_shapes_are_kept_beside_labelled_ones(tmp_path):
    source, out = _annotations(tmp_path / "ann", [_shape("cat")], []), tmp_path / "out"
    assert convert_labelme(source, out).classes == ["background", "cat"]
    assert not np.asarray(Image.open(out / "masks" / "f1.png")).any()


@pytest.mark.parametrize("label", [5, None, "", "  ", "cat\ndog", ["cat"], "missing"])
@pytest.mark.parametrize("with_labels", [False, True])
def test_label_must_be_a_non_empty_string(tmp_path, label, with_labels):
    bad = _shape(label)
    if label == "missing":
        del bad["label"]
    source = _annotations(tmp_path / "ann", [_shape("cat")], [_shape("cat"), bad])
    (tmp_path / "labels.txt").write_text("_background_\ncat\n")
    got = "none" if label == "missing" else repr(label)
    with pytest.raises(DataError, match=re.escape(f"f1.json: shape 1: label must be a non-empty one-line string, "
                                                  f"got {got}")):
        convert_labelme(source, tmp_path / "out", labels_file=tmp_path / "labels.txt" if with_labels else None)
    assert not (tmp_path / "out").exists()
