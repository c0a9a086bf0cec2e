"""Layouts real users have that the pairing and the split lists must read as they mean them (audit A).

- masks kept in the folder of their images (``img_1.png`` beside ``img_1_mask.png``): the mask pattern's files
  are masks, never also images;
- split lists naming samples whose names hold spaces (``case 7``, ``images/case 7.png``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from unetfamily.data import DataError, build_dataset, check_dataset

from .conftest import save


def _pair(folder: Path, image: str, mask: str, i: int) -> None:
    rng = np.random.default_rng(i)
    save(folder / image, rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    m = np.zeros((12, 16), np.uint8)
    m[2 : 4 + i, 3:9] = 255
    save(folder / mask, m)


@pytest.mark.parametrize("layout", [
    {"images": ".", "masks": ".", "mask_suffix": "_mask"},                      # folder + suffix
    {"images": "{id}.png", "masks": "{id}_mask.png"},                           # templates
    {"images": "{id}.*", "masks": ".", "mask_regex": r"^(?P<id>.+)_mask\.png$"},  # template + regex
    {"images": ".", "masks": ".", "mask_suffix": "_mask", "roi": ".", "roi_suffix": "_fov"},  # with a ROI beside
])
def test_masks_beside_their_images_are_not_taken_as_images(tmp_path, layout):
    for i in range(3):
        _pair(tmp_path, f"img_{i}.png", f"img_{i}_mask.png", i)
        if "roi" in layout:
            save(tmp_path / f"img_{i}_fov.png", np.full((12, 16), 255, np.uint8))
    cfg = {"type": "folder", "root": str(tmp_path), **layout}
    ds = build_dataset(cfg, "all")
    assert ds.names == ["img_0", "img_1", "img_2"]
    assert [s.mask.name for s in ds.samples] == ["img_0_mask.png", "img_1_mask.png", "img_2_mask.png"]
    assert int(ds[1]["mask"].sum()) == 3 * 6  # the mask file's foreground, not an image read as a mask
    assert check_dataset(cfg, ["all"], optional=[]).samples == {"all": 3}


def test_images_and_masks_selecting_the_same_files_is_a_clear_error(tmp_path):
    for i in range(2):
        _pair(tmp_path, f"img_{i}.png", f"img_{i}_mask.png", i)
    with pytest.raises(DataError, match=r"every image matching .* is also a mask matching .*give the masks a suffix"):
        build_dataset({"type": "folder", "root": str(tmp_path), "images": ".", "masks": "."}, "all")


def _spaced(tmp_path: Path, n: int = 5) -> list[str]:
    names = [f"case {i}" for i in range(n)]
    for name in names:
        _pair(tmp_path, f"images/{name}.png", f"masks/{name}.png", len(name))
    return names


@pytest.mark.parametrize("entry", ["{}", "images/{}.png", "masks/{}.png", "{}.png", "/abs/data/images/{}.png"])
def test_split_lists_name_samples_whose_names_hold_spaces(tmp_path, entry):
    names = _spaced(tmp_path)
    (tmp_path / "train.txt").write_text("".join(entry.format(n) + "\n" for n in names[:3]))
    (tmp_path / "val.txt").write_text("".join(entry.format(n) + "\n" for n in names[3:]))
    cfg = {"type": "folder", "root": str(tmp_path), "splits": {"train": "train.txt", "val": "val.txt"}}
    assert build_dataset(cfg, "train").names == names[:3]
    assert build_dataset(cfg, "val").names == names[3:]


def test_image_and_mask_path_lines_still_give_the_first_path(tmp_path):
    names = _spaced(tmp_path, 2)
    _pair(tmp_path, "images/case.png", "masks/case.png", 7)
    (tmp_path / "train.txt").write_text("images/case.png masks/case.png\ncase 1\n")
    cfg = {"type": "folder", "root": str(tmp_path), "splits": {"train": "train.txt"}}
    assert build_dataset(cfg, "train").names == ["case", names[1]]


def test_voc_lists_name_samples_whose_names_hold_spaces(tmp_path):
    for i in range(3):
        name = f"photo {i}"
        save(tmp_path / "JPEGImages" / f"{name}.jpg", np.full((12, 16, 3), 90, np.uint8))
        save(tmp_path / "SegmentationClass" / f"{name}.png", np.full((12, 16), i % 2, np.uint8))
    (tmp_path / "ImageSets" / "Segmentation").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Segmentation" / "train.txt").write_text("photo 0\nphoto 2\n")
    ds = build_dataset({"type": "voc", "root": str(tmp_path), "classes": ["background", "cat"]}, "train")
    assert ds.names == ["photo 0", "photo 2"]


@pytest.mark.parametrize("images_form, masks_form", [("NFD", "NFC"), ("NFC", "NFD")])
def test_names_differing_only_in_unicode_normal_form_pair(tmp_path, images_form, masks_form):
    """``café`` written with a combining accent (macOS, archives made there) is the same name as ``café``."""
    import unicodedata

    names = ["café", "naïve", "plain"]
    for i, name in enumerate(names):
        _pair(tmp_path, f"images/{unicodedata.normalize(images_form, name)}.png",
              f"masks/{unicodedata.normalize(masks_form, name)}.png", i)
    (tmp_path / "train.txt").write_text(unicodedata.normalize("NFD", "café\nplain\n"))
    (tmp_path / "val.txt").write_text("naïve\n")
    cfg = {"type": "folder", "root": str(tmp_path)}
    assert build_dataset(cfg, "all").names == [unicodedata.normalize("NFC", n) for n in names]
    listed = {**cfg, "splits": {"train": "train.txt", "val": "val.txt"}}
    assert build_dataset(listed, "train").names == ["café", "plain"]
    assert build_dataset(listed, "val").names == ["naïve"]


@pytest.mark.parametrize("image, mask, key, suffix", [
    ("images/img_{}.jpg", "masks/img_{}_mask.png", "mask_suffix", "_mask"),
    ("images/img_{}_img.jpg", "masks/img_{}.png", "image_suffix", "_img"),
])
def test_unpaired_images_whose_masks_carry_a_suffix_are_told_the_suffix(tmp_path, monkeypatch, image, mask, key,
                                                                        suffix):
    """A plain folder given as the data, masks named img_1_mask.png: the error says which key, which value, and
    where to write it; written there as said, the folder reads."""
    for i in range(3):
        _pair(tmp_path, image.format(i), mask.format(i), i)
    with pytest.raises(DataError, match=rf"declare {key}: '{suffix}' in the data config .*a data.yaml in it: "
                                        rf"type: folder, root: \., {key}: '{suffix}'"):
        build_dataset(tmp_path, "all")
    (tmp_path / "data.yaml").write_text(f"type: folder\nroot: .\n{key}: '{suffix}'\n")
    monkeypatch.chdir(tmp_path.parent)
    assert build_dataset(tmp_path, "all").names == ["img_0", "img_1", "img_2"]
