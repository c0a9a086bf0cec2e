"""FCN takes torchvision's VGG-16 weights: its trunk and fc6/fc7 give the real vgg16's pool1..pool5 and fc7.

The fixture (tests/models/fixtures/encoders/torchvision_vgg16.json, made by
tools/make_encoder_fixtures.py from torchvision 0.29.1) holds vgg16's keys and, on a 224 x 224
input, the outputs of its five max-pools and of fc7 after its ReLU. fc6/fc7 as convolutions
see pool5 (7 x 7) through a 7 x 7 kernel padded by 3, so their centre position (3, 3) sees
exactly what the classifier saw.
"""
from __future__ import annotations

import json

import pytest
import torch

from tests.models.test_encoder_references import FIXTURES, assert_features_match, filled_state, fixture_input
from unetfamily.errors import ConfigError
from unetfamily.models import FCN
from unetfamily.models.encoders.vgg import convert_vgg16

FIXTURE = json.loads((FIXTURES / "torchvision_vgg16.json").read_text())


@pytest.fixture(scope="module")
def vgg16_state() -> dict[str, torch.Tensor]:
    """The fixture's vgg16 keys filled by ``encoder_reference.fill_value`` (float64)."""
    return filled_state({k: tuple(s) for k, s in FIXTURE["keys"]})


@pytest.fixture(scope="module")
def fcn8s(vgg16_state: dict[str, torch.Tensor]) -> FCN:
    """FCN-8s at the paper's VOC configuration, float64, eval, with the filled VGG-16 weights loaded."""
    model = FCN(num_classes=21, variant="8s").double().eval()
    model.load_encoder_weights(vgg16_state, "torchvision_vgg16.json")
    return model


def test_trunk_and_fc7_equal_torchvision_vgg16(fcn8s: FCN) -> None:
    x = fixture_input(tuple(FIXTURE["input_shape"]))
    with torch.no_grad():
        pools = []
        for stage in fcn8s.stages:
            x = stage(x)
            pools.append(x)
        fc7 = fcn8s.fc(pools[4])
    assert len(FIXTURE["features"]) == 6
    for i, (got, want) in enumerate(zip(pools, FIXTURE["features"][:5])):
        assert_features_match(got, want, f"pool{i + 1} ({FIXTURE['modules'][i]})")
    assert fc7.shape == (1, 4096, 7, 7)
    assert_features_match(fc7[:, :, 3, 3], FIXTURE["features"][5], "fc7 after ReLU (classifier.4)")


def test_score_layers_keep_their_initialisation(vgg16_state: dict[str, torch.Tensor]) -> None:
    model = FCN(num_classes=21, variant="8s")
    others = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith(("stages.", "fc."))}
    model.load_encoder_weights(vgg16_state, "vgg16")
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in others.items())
    assert torch.equal(after["fc.3.weight"], vgg16_state["classifier.3.weight"].float().view(4096, 4096, 1, 1))
    assert model.encoder_modules() == [model.stages, model.fc]


def test_conversion_names_and_shapes(vgg16_state: dict[str, torch.Tensor]) -> None:
    converted = convert_vgg16(vgg16_state)
    trunk = {k: tuple(v.shape) for k, v in FCN(channels=(1, 1, 1, 1, 1), fc_channels=1).state_dict().items()
             if k.startswith(("stages.", "fc."))}
    assert set(converted) == set(trunk)  # classifier.6 dropped, nothing else lost
    assert converted["fc.0.weight"].shape == (4096, 512, 7, 7)
    assert torch.equal(converted["fc.0.weight"][5, 7, 2, 3], vgg16_state["classifier.0.weight"][5, 7 * 49 + 2 * 7 + 3])
    assert convert_vgg16(converted).keys() == converted.keys()  # FCN's own names pass through


def test_in_channels_1_adapts_the_first_conv(vgg16_state: dict[str, torch.Tensor]) -> None:
    model = FCN(in_channels=1, num_classes=2, variant="32s")
    model.load_encoder_weights(vgg16_state, "vgg16")
    first = model.stages[0][0][0].weight
    assert first.shape == (64, 1, 3, 3)
    torch.testing.assert_close(first, vgg16_state["features.0.weight"].sum(1, keepdim=True).float())
    torch.testing.assert_close(model.stages[4][2][0].weight, vgg16_state["features.28.weight"].float())


@pytest.mark.parametrize("kwargs,needed", [
    (dict(channels=(4, 8, 8, 16, 16)), ["channels=(64, 128, 256, 512, 512)", "channels=(4, 8, 8, 16, 16)"]),
    (dict(fc_channels=16), ["fc_channels=4096", "fc_channels=16"]),
    (dict(norm="batch"), ["norm='none'", "norm='batch'"]),
    (dict(channels=(4, 8, 8, 16, 16), fc_channels=16, norm="group"),
     ["channels=(64, 128, 256, 512, 512)", "fc_channels=4096", "norm='none'", "norm='group'"]),
])
def test_refuses_an_fcn_vgg16_does_not_fit(kwargs: dict, needed: list[str]) -> None:
    model = FCN(**kwargs)
    with pytest.raises(ConfigError, match="vgg16.pth: VGG-16 weights need an FCN built with") as err:
        model.load_encoder_weights({"features.0.weight": torch.zeros(64, 3, 3, 3)}, "vgg16.pth")
    assert all(n in str(err.value) for n in needed), str(err.value)
    assert "fc_channels" not in str(err.value) or "fc_channels" in kwargs


def test_missing_and_unexpected_keys_are_listed(vgg16_state: dict[str, torch.Tensor], fcn8s: FCN) -> None:
    state = {k: v for k, v in vgg16_state.items() if k != "features.12.bias"}
    state["features.12.running_mean"] = torch.zeros(256)  # e.g. a vgg16_bn file
    state["extra.weight"] = torch.zeros(3)
    with pytest.raises(ConfigError, match="vgg16.pth") as err:
        fcn8s.load_encoder_weights(state, "vgg16.pth")
    message = str(err.value)
    assert "1 missing key(s): stages.2.1.0.bias" in message
    assert "extra.weight" in message and "features.12.running_mean" in message


def test_refuses_a_state_of_no_vgg16_layout() -> None:
    with pytest.raises(ConfigError, match="my.pth: the state is not torchvision's vgg16 layout"):
        convert_vgg16({"conv1.weight": torch.zeros(64, 3, 7, 7)}, "my.pth")


def test_create_model_reads_a_vgg16_file_and_attaches_imagenet_norm(
        vgg16_state: dict[str, torch.Tensor], tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """create_model's path for FCN (the reading of files is tested on a small encoder: a VGG-16 file is 550 MB)."""
    import unetfamily.models._registry as registry
    from unetfamily.models import create_model
    from unetfamily.models.encoders.weights import IMAGENET_MEAN

    path = tmp_path / "vgg16.pth"
    path.write_bytes(b"stand-in")  # read_state_dict is replaced below; the SHA-256 is taken of these bytes
    monkeypatch.setattr(registry, "read_state_dict", lambda p: {k: v.float() for k, v in vgg16_state.items()})
    model = create_model("fcn32s_voc", encoder_weights=str(path))
    assert torch.equal(model.fc[0].weight, vgg16_state["classifier.0.weight"].float().view(4096, 512, 7, 7))
    assert model.input_norm.mean.flatten().tolist() == pytest.approx(IMAGENET_MEAN)
    with pytest.raises(ConfigError, match="fc_channels"):
        create_model("fcn32s", fc_channels=64, encoder_weights=str(path))
