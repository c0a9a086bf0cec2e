"""The encoder shared by U-Net, UNet++ and UNet3+: its pyramid and the feature_info contract."""
from __future__ import annotations

import pytest
import torch

from tests.models.conftest import SMALL
from unetfamily import create_model
from unetfamily.errors import ConfigError
from unetfamily.models import UNetEncoder

SHARED = ["unet", "unet_plusplus", "unet_3plus", "unet_3plus_efficient"]


@pytest.mark.parametrize("name", SHARED)
def test_every_unet_family_model_has_the_shared_encoder(name: str) -> None:
    model = create_model(name, **SMALL[name])
    channels = SMALL[name]["channels"]
    assert isinstance(model.encoder, UNetEncoder)
    assert model.feature_info.channels() == tuple(channels)
    assert model.feature_info.reductions() == tuple(2**i for i in range(len(channels)))
    assert model.feature_info.module_names() == tuple(f"encoder.stages.{i}" for i in range(len(channels)))
    assert model.encoder.feature_info.module_names() == tuple(f"stages.{i}" for i in range(len(channels)))
    assert model.size_multiple == model.feature_info.reductions()[-1]


@pytest.mark.parametrize("name", SHARED)
def test_pyramid_shapes_and_module_names(name: str) -> None:
    """forward(x) gives (N, C_i, H / 2^i, W / 2^i), and feature_info's ``module`` outputs exactly that."""
    model = create_model(name, **SMALL[name]).eval()
    x = torch.randn(2, 3, 48, 32)
    seen = {}
    hooks = [model.get_submodule(info["module"]).register_forward_hook(lambda m, i, o, k=k: seen.setdefault(k, o))
             for k, info in enumerate(model.feature_info)]
    with torch.no_grad():
        pyramid = model.encoder(x)
    for h in hooks:
        h.remove()
    assert len(pyramid) == len(model.feature_info)
    for i, (feature, info) in enumerate(zip(pyramid, model.feature_info)):
        assert feature.shape == (2, info["num_chs"], 48 // info["reduction"], 32 // info["reduction"])
        assert seen[i] is feature


def test_depth_stops_the_pyramid_early() -> None:
    encoder = UNetEncoder(1, (4, 8, 8, 16)).eval()
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        full, short = encoder(x), encoder(x, depth=1)
    assert len(short) == 2 and all(torch.equal(a, b) for a, b in zip(short, full))
    with pytest.raises(ConfigError, match="depth=4"):
        encoder(x, depth=4)


def test_bad_widths_name_the_argument() -> None:
    with pytest.raises(ConfigError, match="channels"):
        UNetEncoder(3, (8,))
