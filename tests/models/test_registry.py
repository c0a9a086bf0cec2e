from __future__ import annotations

import pytest

from unetfamily import create_model, list_models
from unetfamily.models import FCN, UNet, UNet3Plus, UNetPlusPlus


def test_list_models_pattern() -> None:
    assert list_models("fcn*") == ["fcn16s", "fcn16s_voc", "fcn32s", "fcn32s_voc", "fcn8s", "fcn8s_voc"]
    assert "unet_3plus" in list_models() and list_models("nothing*") == []


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'unet3plus'.*unet_3plus"):
        create_model("unet3plus")


def test_none_kwargs_are_dropped() -> None:
    model = create_model("unet", channels=(4, 8), num_classes=None, norm=None)
    assert model.num_classes == 1


@pytest.mark.parametrize(
    "name,cls", [("fcn8s", FCN), ("unet", UNet), ("unet_plusplus", UNetPlusPlus), ("unet_3plus", UNet3Plus)]
)
def test_models_are_importable_classes(name: str, cls: type) -> None:
    assert isinstance(create_model(name, channels=(4, 8, 8, 8, 8)), cls)
