"""build_dataset: dicts, YAML files, the shipped configs, and errors that name the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from unetfamily.data import DataConfigError, build_dataset, data_root, list_datasets, load_data_config
from unetfamily.data.registry import _REGISTRY

CONFIGS = sorted((Path(__file__).parents[2] / "configs" / "data").glob("*.yaml"))


def test_registered_types():
    assert {"folder", "voc", "tiff_stack", "synthetic", "isbi2012_em", "dsb2018_nuclei", "kvasir_seg", "camvid"} <= set(
        list_datasets()
    )


def test_yaml_path_and_nested_data_section(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(
        yaml.safe_dump({"model": {"name": "unet"}, "data": {"type": "synthetic", "num_samples": 5, "size": 32}})
    )
    ds = build_dataset(path, split="val")
    assert len(ds) == 5 and ds.info.in_channels == 1
    assert len(build_dataset(str(path), "train", num_samples=3)) == 3  # overrides replace keys


def test_unknown_type_and_key_are_named():
    with pytest.raises(DataConfigError, match=r"dataset type: unknown value 'folders'; did you mean 'folder'\?"):
        build_dataset({"type": "folders"}, "train")
    with pytest.raises(DataConfigError, match=r"dataset: unknown value 'unet\+\+'; choose one of .*camvid"):
        build_dataset("unet++", "train")  # a bare word is a type name, not a file
    with pytest.raises(DataConfigError, match="unknown key 'sizes' for dataset type 'synthetic'; valid keys: .*size"):
        build_dataset({"type": "synthetic", "sizes": 64}, "train")
    with pytest.raises(DataConfigError, match="no 'type'"):
        load_data_config({"root": "x"})
    with pytest.raises(DataConfigError, match=r"unknown augment key\(s\) \['presets'\]"):
        build_dataset({"type": "synthetic", "augment": {"presets": "light"}}, "train")


def test_type_name_is_a_config():
    assert load_data_config("synthetic") == {"type": "synthetic"}
    assert len(build_dataset("synthetic", "val", num_samples=3, size=32)) == 3


def test_data_root_env_var(monkeypatch, tmp_path):
    monkeypatch.setenv("UNETFAMILY_DATA_ROOT", str(tmp_path))
    assert data_root() == tmp_path
    monkeypatch.delenv("UNETFAMILY_DATA_ROOT")
    assert data_root() == Path(__file__).resolve().parents[3] / "shared" / "data"


def test_named_dataset_absent_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("UNETFAMILY_DATA_ROOT", str(tmp_path))
    with pytest.raises(Exception, match="dataset folder for 'camvid' not found; set UNETFAMILY_DATA_ROOT"):
        build_dataset({"type": "camvid"}, "train")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_are_valid(path):
    config = load_data_config(path)
    builder = _REGISTRY[config["type"]]
    import inspect

    valid = set(inspect.signature(builder).parameters) | {"type", "augment"}
    assert set(config) <= valid, f"{path.name}: unknown keys {set(config) - valid}"
    if config["type"] == "synthetic":
        assert len(build_dataset(path, "train")) > 0
    elif (data_root() / config["type"]).is_dir():
        assert len(build_dataset(path, "val")) > 0
