"""Dataset config files as users write them (audit A): relative paths, and the pairing warnings' count.

- a ``data.yaml`` saying ``root: .`` (or ``classes: classes.txt``) means its own folder, from any working
  folder: read against the working folder it found no data, or another dataset's ``images/`` and ``masks/``;
- a file skipped or left unpaired is reported once, not once per split and fold built (30 times in a compare).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import yaml

from unetfamily.data import build_dataset, check_dataset, load_data_config

from .conftest import save


def _dataset(root: Path, names: list[str], value: int = 255) -> None:
    for i, name in enumerate(names):
        save(root / "images" / f"{name}.png", np.full((8, 10), 40 * i, np.uint8))
        m = np.zeros((8, 10), np.uint8)
        m[: i + 1, :3] = value
        save(root / "masks" / f"{name}.png", m)


@pytest.mark.parametrize("given", ["folder", "file", "experiment"])
def test_relative_paths_in_a_data_config_file_are_relative_to_its_folder(tmp_path, monkeypatch, given):
    mine = tmp_path / "mine"
    _dataset(mine, ["a", "b", "c"])
    (mine / "classes.txt").write_text("background\npolyp\n")
    data = {"type": "folder", "root": ".", "classes": "classes.txt",
            "splits": {"fractions": {"train": 0.6, "val": 0.4}, "seed": 0}}
    text = yaml.safe_dump({"data": data} if given == "experiment" else data)
    (mine / "data.yaml").write_text(text)
    elsewhere = tmp_path / "elsewhere"  # the working folder holds another dataset of the same layout
    _dataset(elsewhere, ["x", "y", "z", "w"], value=1)
    monkeypatch.chdir(elsewhere)
    source = mine if given == "folder" else mine / "data.yaml"
    assert load_data_config(source)["root"] == str(mine.resolve())
    names = build_dataset(source, "train").names + build_dataset(source, "val").names
    assert sorted(names) == ["a", "b", "c"]
    assert build_dataset(source, "train").info.classes == ["background", "polyp"]
    monkeypatch.chdir(tmp_path)  # the same file from its parent folder reads the same files
    assert sorted(build_dataset(Path("mine") / "data.yaml", "all").names) == ["a", "b", "c"]


def test_tiff_stack_paths_and_a_cv_fold_base_are_anchored_too(tmp_path, monkeypatch):
    folder = tmp_path / "cfg"
    folder.mkdir()
    (folder / "stack.yaml").write_text(yaml.safe_dump(
        {"type": "cv_fold", "base": {"type": "tiff_stack", "images": "vol.tif", "labels": "~/lab.tif", "root": "x"},
         "assignment": {}, "fold": 0}))
    monkeypatch.chdir(tmp_path)
    config = load_data_config("cfg/stack.yaml")
    assert config["base"]["images"] == str(folder.resolve() / "vol.tif")
    assert config["base"]["labels"] == str(Path("~/lab.tif").expanduser())  # absolute once expanded: kept


def test_skipped_and_unpaired_files_are_warned_about_once(tmp_path, caplog):
    _dataset(tmp_path, ["a", "b", "c"])
    (tmp_path / "images" / "lonely.png").write_bytes((tmp_path / "images" / "a.png").read_bytes())
    (tmp_path / "masks" / "orphan.png").write_bytes((tmp_path / "masks" / "a.png").read_bytes())
    cfg = {"type": "folder", "root": str(tmp_path), "on_missing": "skip"}
    with caplog.at_level(logging.WARNING, logger="unetfamily.data"):
        for _ in range(3):  # what compare, plan and the data check do: build the splits again and again
            build_dataset(cfg, "all")
        check_dataset(cfg, ["all"], optional=[])
    skipped = [r for r in caplog.records if "skipped 1 image(s) without a mask" in r.getMessage()]
    orphans = [r for r in caplog.records if "have no image matching" in r.getMessage()]
    assert len(skipped) == 1 and "lonely.png" in skipped[0].getMessage()
    assert len(orphans) == 1 and "orphan.png" in orphans[0].getMessage()


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_images_of_several_bit_depths_are_warned_about(tmp_path, suffix):
    """An 8-bit export beside 16-bit originals: each file is scaled by its own type, 1800 reads as 0.03 in one and
    as 0.9 (its 8-bit 229) in the other; the data check says so, naming a file of each type."""
    import tifffile

    for i in range(4):
        m = np.zeros((8, 10), np.uint8)
        m[2:5, 2:6] = 1
        raw = np.where(m > 0, 1800, 400).astype(np.uint16)
        pixels = raw if i % 2 else (raw / 2000 * 255).astype(np.uint8)
        path = tmp_path / "images" / f"c{i}{suffix}"
        if suffix == ".tif":
            path.parent.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(path, pixels)
        else:
            save(path, pixels)
        save(tmp_path / "masks" / f"c{i}.png", m)
    cfg = {"type": "folder", "root": str(tmp_path)}
    warnings = check_dataset(cfg, ["all"], optional=[]).warnings
    mixed = [w for w in warnings if "several pixel types" in w]
    assert len(mixed) == 1 and "uint8 (e.g." in mixed[0] and "uint16 (e.g." in mixed[0], warnings
    assert build_dataset(cfg, "all")[1]["image"].max() < 0.05  # what the warning is about: 16-bit reads dark
    for i in (0, 2):  # one bit depth: no warning
        (tmp_path / "images" / f"c{i}{suffix}").unlink()
    assert not [w for w in check_dataset(cfg, ["all"], optional=[]).warnings if "pixel types" in w]


def test_a_path_found_only_from_the_working_folder_is_still_read_with_a_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # configs/my.yaml with root: data/mine, written for the project's root as working folder (before paths were
    # anchored to the config's folder): still read, and the warning says what to write instead
    (tmp_path / "configs").mkdir()
    (tmp_path / "data" / "mine").mkdir(parents=True)
    (tmp_path / "configs" / "my.yaml").write_text("type: folder\nroot: data/mine\n")
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="unetfamily.data.registry"):
        config = load_data_config("configs/my.yaml")
    assert Path(config["root"]) == (tmp_path / "data" / "mine").resolve()
    assert "relative to its folder: write root: ../data/mine" in caplog.text


@pytest.mark.parametrize("first,declared,warned", [
    ("sky", None, True), ("road", None, True), ("background", None, False), ("_background_", None, False),
    ("Void", None, False), ("bg", None, False), ("sky", False, False), ("sky", True, False)])
def test_a_class_0_scored_because_of_its_name_is_said(tmp_path: Path, first: str, declared: bool | None,
                                                     warned: bool) -> None:
    # background: auto scores a class 0 not named like a background (CamVid's sky) like the other classes; a
    # dataset whose class 0 is a background under another name must hear it, or its Dice silently changes meaning
    _dataset(tmp_path, ["a", "b", "c"], value=1)
    cfg = {"type": "folder", "root": str(tmp_path), "classes": [first, "thing", "other"], "mask_encoding": "index"}
    if declared is not None:
        cfg["background"] = declared
    found = [w for w in check_dataset(cfg, ["all"], optional=[]).warnings if "not named like a background" in w]
    assert bool(found) == warned
    if warned:
        assert f"class 0 ({first!r})" in found[0] and "background: true" in found[0] and "all 3 classes" in found[0]


def test_an_experiment_config_reads_its_data_paths_from_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                   ) -> None:
    # train --config exp.yaml (load_config) anchors the data section as load_data_config does; overrides typed on
    # the command line stay relative to the working folder
    from unetfamily.config import load_config

    mine = tmp_path / "mine"
    _dataset(mine, ["a", "b", "c"])
    (mine / "exp.yaml").write_text(yaml.safe_dump({"data": {"type": "folder", "root": "."}}))
    elsewhere = tmp_path / "elsewhere"
    _dataset(elsewhere, ["x", "y"])
    monkeypatch.chdir(elsewhere)
    assert Path(load_config(mine / "exp.yaml").data["root"]) == mine.resolve()
    assert load_config(mine / "exp.yaml", ["data.root=."]).data["root"] == "."
