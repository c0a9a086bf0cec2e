from __future__ import annotations

from pathlib import Path

import pytest

from unetfamily.config import ConfigError, config_from_dict, load_config


def test_defaults_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model: {name: unet_plusplus, kwargs: {deep_supervision: true}}\ntrain: {epochs: 2}\n")
    cfg = load_config(path, ["train.epochs=5", "optim.lr=3e-4", "model.kwargs.channels=[8, 16]", "train.amp=bf16"])
    assert cfg.model.name == "unet_plusplus"
    assert cfg.model.kwargs == {"deep_supervision": True, "channels": [8, 16]}
    assert cfg.train.epochs == 5 and cfg.optim.lr == pytest.approx(3e-4) and cfg.train.amp == "bf16"
    assert cfg.loader.batch_size == 8  # default kept


def test_toml(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('output_dir = "runs/x"\n[train]\nepochs = 3\n')
    cfg = load_config(path)
    assert cfg.train.epochs == 3 and cfg.output_dir == "runs/x"


@pytest.mark.parametrize(
    "data,match",
    [
        ({"trian": {}}, "unknown config key trian"),
        ({"train": {"epoch": 3}}, "unknown config key train.epoch"),
        ({"train": {"epochs": "many"}}, "train.epochs='many' has the wrong type"),
        ({"train": {"amp": "fp8"}}, "train.amp='fp8' is not valid"),
        ({"optim": {"name": "lbfgs"}}, "optim.name"),
        ({"train": {"epochs": True}}, "wrong type"),
    ],
)
def test_invalid_configs_name_the_key(data: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config_from_dict(data)


def test_bad_files_and_overrides(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(None, ["train.epochs"])


def test_round_trip() -> None:
    cfg = load_config(None, ["train.epochs=2"])
    assert config_from_dict(cfg.to_dict()) == cfg


def test_removed_train_augment_is_refused_unless_null() -> None:
    cfg = config_from_dict({"train": {"augment": None, "epochs": 2}})  # as configs saved by 0.1.0 hold it
    assert cfg.train.epochs == 2 and "augment" not in cfg.to_dict()["train"]
    with pytest.raises(ConfigError, match="train.augment is no longer a config key; augmentation is part of the data "
                                          "config: data.augment"):
        config_from_dict({"train": {"augment": "medical"}})
