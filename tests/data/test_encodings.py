"""Mask encodings: each kind on real files, and an error for every value outside the classes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from unetfamily.data import DataConfigError, DataError, MaskEncoding, decode_mask
from unetfamily.data.io import read_mask

from .conftest import save


def decode(path, kind="auto", num_classes=2, ignore_index=255, **kw):
    return decode_mask(read_mask(path), MaskEncoding.parse({"kind": kind, **kw}), num_classes, ignore_index)


def test_binary_0_255_and_0_1(tmp_path):
    m = np.array([[0, 255], [255, 0]], np.uint8)
    assert decode(save(tmp_path / "a.png", m), "binary").tolist() == [[0, 1], [1, 0]]
    assert decode(save(tmp_path / "b.png", m // 255), "binary").tolist() == [[0, 1], [1, 0]]
    with pytest.raises(DataError, match=r"c.png.*\{0, 128, 255\}.*threshold"):
        decode(save(tmp_path / "c.png", np.array([[0, 128, 255]], np.uint8)), "binary")


def test_class_index_png_with_ignore(tmp_path):
    m = np.array([[0, 1, 2], [3, 255, 0]], np.uint8)
    out = decode(save(tmp_path / "m.png", m), "index", num_classes=4)
    assert out.tolist() == m.tolist()


def test_values_outside_classes_name_file_and_values(tmp_path):
    m = np.array([[0, 1, 7], [9, 255, 0]], np.uint8)
    with pytest.raises(DataError, match=r"bad.png: mask values \{7, 9\} are outside the classes 0..3"):
        decode(save(tmp_path / "bad.png", m), "index", num_classes=4)


def test_palette_png_decodes_to_indices_not_colours(tmp_path):
    idx = np.array([[0, 1], [2, 255]], np.uint8)
    im = Image.fromarray(idx)
    im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [7] * 759)
    im.save(tmp_path / "voc.png")
    assert decode(tmp_path / "voc.png", "auto", num_classes=21).tolist() == idx.tolist()


def test_rgb_colour_table(tmp_path):
    colors = {0: [0, 0, 0], 1: [128, 64, 128], 2: [64, 0, 128], 255: [255, 255, 255]}
    m = np.array([[[0, 0, 0], [128, 64, 128]], [[64, 0, 128], [255, 255, 255]]], np.uint8)
    out = decode(save(tmp_path / "c.png", m), "rgb", num_classes=3, colors=colors)
    assert out.tolist() == [[0, 1], [2, 255]]
    m[0, 0] = [1, 2, 3]
    with pytest.raises(DataError, match=r"d.png: 1 colour\(s\) not in the colour table, e.g. \[\(1, 2, 3\)\]"):
        decode(save(tmp_path / "d.png", m), "rgb", num_classes=3, colors=colors)
    with pytest.raises(DataError, match="colour mask.*rgb"):
        decode(tmp_path / "d.png", "auto", num_classes=3)


def test_jpeg_mask_needs_a_threshold(tmp_path):
    m = np.zeros((16, 16), np.uint8)
    m[4:12, 4:12] = 255
    path = save(tmp_path / "polyp.jpg", m, quality=75)
    assert len(np.unique(np.asarray(Image.open(path)))) > 2  # compression noise is really there
    for kind in ("auto", "binary", "index"):
        with pytest.raises(DataError, match=r"polyp.jpg: lossy \(JPEG or lossy WebP\) mask.*threshold: 127"):
            decode(path, kind)
    out = decode(path, "binary", threshold=127)
    assert out.sum() == 64 and out[4:12, 4:12].all()


def test_instance_map_reduces_to_foreground(tmp_path):
    inst = np.zeros((6, 6), np.uint16)
    inst[0:2, 0:2], inst[3:6, 3:6] = 1, 300
    path = save(tmp_path / "inst.png", inst)
    assert decode(path, "instance").sum() == 4 + 9
    with pytest.raises(DataError, match=r"inst.png: values \{0, 1, 300\} are not a binary mask.*'instance'"):
        decode(path, "auto")


def test_value_map_for_inverted_labels(tmp_path):
    m = np.array([[0, 255]], np.uint8)  # ISBI: 0 = membrane (foreground), 255 = cell
    assert decode(save(tmp_path / "l.png", m), "map", values={0: 1, 255: 0}).tolist() == [[1, 0]]
    with pytest.raises(DataError, match=r"m.png: mask values \{7\} are not in mask_encoding 'values'"):
        decode(save(tmp_path / "m.png", np.array([[0, 7]], np.uint8)), "map", values={0: 1, 255: 0})


def test_auto_is_unambiguous_for_two_classes(tmp_path):
    assert decode(save(tmp_path / "a.png", np.array([[0, 255]], np.uint8))).tolist() == [[0, 1]]
    assert decode(save(tmp_path / "b.png", np.array([[0, 1]], np.uint8))).tolist() == [[0, 1]]
    with pytest.raises(DataError, match=r"c.png: values \{0, 1, 255\}.*'index' if 255 means ignore"):
        decode(save(tmp_path / "c.png", np.array([[0, 1, 255]], np.uint8)))
    assert decode(tmp_path / "c.png", "index").tolist() == [[0, 1, 255]]


def test_encoding_config_errors():
    with pytest.raises(DataConfigError, match="needs a 'colors' table"):
        MaskEncoding.parse("rgb")
    with pytest.raises(DataConfigError, match=r"unknown mask_encoding key\(s\) \['treshold'\]"):
        MaskEncoding.parse({"kind": "binary", "treshold": 127})
    with pytest.raises(DataConfigError, match=r"mask_encoding kind: unknown value 'bin'; did you mean 'binary'\?"):
        MaskEncoding.parse("bin")
    with pytest.raises(DataConfigError, match="gives 2 classes"):
        MaskEncoding("binary").check_classes(4)
    enc = MaskEncoding.parse({"kind": "rgb", "colors": {1: [1, 2, 3]}})
    assert enc.colors == {(1, 2, 3): 1}
