from __future__ import annotations

import pytest
import torch

from unetfamily import create_model, list_models
from unetfamily.errors import ConfigError
from unetfamily.models import FCN, UNet, UNet3Plus, UNetPlusPlus, model_entrypoint, resolve_model_name


def test_list_models_pattern() -> None:
    assert list_models("fcn*") == ["fcn16s", "fcn16s_voc", "fcn32s", "fcn32s_voc", "fcn8s", "fcn8s_voc"]
    assert "unet_3plus" in list_models() and list_models("nothing*") == []


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(ConfigError, match=r"model: unknown value 'unet_3plos'; did you mean 'unet_3plus'"):
        create_model("unet_3plos")
    with pytest.raises(ValueError, match=r"unknown value 'unet_4plus'.*unet_3plus"):  # still a ValueError
        model_entrypoint("unet_4plus")


@pytest.mark.parametrize(
    "spelling,name",
    [
        ("unet++", "unet_plusplus"), ("unetpp", "unet_plusplus"), ("UNetPlusPlus", "unet_plusplus"),
        ("unet3+", "unet_3plus"), ("unet3p", "unet_3plus"), ("unet_3p", "unet_3plus"), ("unet3plus", "unet_3plus"),
        ("u-net", "unet"), ("U-Net", "unet"), ("fcn-8s", "fcn8s"), ("unet_plusplus", "unet_plusplus"),
    ],
)
def test_spelling_variants_resolve(spelling: str, name: str) -> None:
    assert resolve_model_name(spelling) == name
    assert model_entrypoint(spelling) is model_entrypoint(name)


def test_spellings_build_the_same_model() -> None:
    assert isinstance(create_model("unet++", channels=(4, 8)), UNetPlusPlus)


def test_unet_3plus_huang2020_is_an_alias_of_unet_3plus() -> None:
    torch.manual_seed(0)
    alias = create_model("unet_3plus_huang2020", channels=(4, 8, 8), cat_channels=4, deep_supervision=True)
    torch.manual_seed(0)
    plain = create_model("unet_3plus", channels=(4, 8, 8), cat_channels=4, deep_supervision=True)
    assert repr(alias) == repr(plain)
    assert all(torch.equal(a, b) for a, b in zip(alias.state_dict().values(), plain.state_dict().values()))
    with torch.device("meta"):
        paper, default = create_model("unet_3plus_huang2020"), create_model("unet_3plus")
    assert repr(paper) == repr(default)


def test_none_kwargs_are_dropped() -> None:
    model = create_model("unet", channels=(4, 8), num_classes=None, norm=None)
    assert model.num_classes == 1


@pytest.mark.parametrize(
    "name,cls", [("fcn8s", FCN), ("unet", UNet), ("unet_plusplus", UNetPlusPlus), ("unet_3plus", UNet3Plus)]
)
def test_models_are_importable_classes(name: str, cls: type) -> None:
    assert isinstance(create_model(name, channels=(4, 8, 8, 8, 8)), cls)
