"""ConvNeXt-Tiny backbone: the Backbone contract (depth, stages, weights, gradients) beyond the reference features."""
from __future__ import annotations

import json
import math

import pytest
import torch

from tests.models.test_encoder_references import FIXTURES, filled_state
from unetfamily.errors import ConfigError
from unetfamily.models.encoders import encoder_spec, list_encoders
from unetfamily.models.encoders.convnext import ConvNeXt, convert_state_dict
from unetfamily.models.encoders.weights import load_weights

SPEC = encoder_spec("convnext_tiny")
TIMM = json.loads((FIXTURES / "timm_convnext_tiny.json").read_text())
TORCHVISION = json.loads((FIXTURES / "torchvision_convnext_tiny.json").read_text())
#: Parameters of the trunk without the classifier head (timm: 28,589,128 with it).
TRUNK_PARAMETERS = 27_818_592


@pytest.fixture(scope="module")
def timm_state() -> dict[str, torch.Tensor]:
    return filled_state({k: tuple(s) for k, s in TIMM["keys"]})


@pytest.fixture(scope="module")
def torchvision_state() -> dict[str, torch.Tensor]:
    return filled_state({k: tuple(s) for k, s in TORCHVISION["keys"]})


def _load(backbone: ConvNeXt, state: dict[str, torch.Tensor], source: str = "weights") -> None:
    load_weights(backbone, SPEC.convert_state_dict(state), source, skipped=backbone.skipped_prefixes,
                 first_conv=backbone.first_conv)


def test_registered() -> None:
    assert "convnext_tiny" in list_encoders()
    assert SPEC.reductions == (4, 8, 16, 32)
    assert dict(SPEC.reference) == {"torchvision": "convnext_tiny", "timm": "convnext_tiny"}
    assert "2201.03545" in SPEC.paper
    backbone = SPEC.build(3, 5)
    assert isinstance(backbone, ConvNeXt) and backbone.first_conv == "stem.0.weight"
    assert backbone.feature_info.channels() == (96, 192, 384, 768)
    assert backbone.feature_info.module_names() == ("stages.0", "stages.1", "stages.2", "stages.3")
    assert [backbone.get_submodule(m) for m in backbone.feature_info.module_names()] == list(backbone.stages)


@pytest.mark.parametrize("library,fixture", [("timm", TIMM), ("torchvision", TORCHVISION)])
def test_parameter_count_equals_the_reference_trunk(library: str, fixture: dict) -> None:
    head = ("head.",) if library == "timm" else ("classifier.",)
    reference = sum(math.prod(s) for k, s in fixture["keys"] if not k.startswith(head))
    assert sum(p.numel() for p in ConvNeXt().parameters()) == reference == TRUNK_PARAMETERS


def test_both_layouts_convert_to_the_same_tensors(timm_state: dict, torchvision_state: dict) -> None:
    from_timm, from_tv = convert_state_dict(timm_state), convert_state_dict(torchvision_state)
    own = {k: v.shape for k, v in ConvNeXt().state_dict().items()}
    heads = {"head.norm.weight", "head.norm.bias", "head.fc.weight", "head.fc.bias"}
    for converted in (from_timm, from_tv):
        assert set(converted) == set(own) | heads
        assert all(converted[k].shape == s for k, s in own.items())
    torch.testing.assert_close(from_tv["stages.2.blocks.7.gamma"],
                               torchvision_state["features.5.7.layer_scale"].reshape(-1))
    assert torch.equal(from_tv["stages.3.blocks.2.mlp.fc2.weight"], torchvision_state["features.7.2.block.5.weight"])
    assert torch.equal(from_tv["stages.1.downsample.0.bias"], torchvision_state["features.2.0.bias"])
    assert convert_state_dict(from_timm).keys() == from_timm.keys()  # own (= timm) layout passes through


@pytest.mark.parametrize("depth,kept", [(1, 0), (2, 1), (3, 2), (4, 3), (5, 4)])
def test_depth_keeps_the_stages_within_its_stride(depth: int, kept: int, timm_state: dict) -> None:
    backbone = ConvNeXt(3, depth).double()
    assert backbone.feature_info.reductions() == (4, 8, 16, 32)[:kept]
    assert len(backbone.stages) == kept
    assert not any(k.startswith(tuple(f"stages.{s}." for s in range(kept, 4))) for k in backbone.state_dict())
    assert any(k.startswith("stem.") for k in backbone.state_dict()) == (kept > 0)
    _load(backbone, timm_state)  # a full weight file loads into the truncated backbone
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        features = backbone(x)
    assert [tuple(f.shape) for f in features] == [(2, c, 64 // r, 64 // r) for c, r in
                                                  zip((96, 192, 384, 768), (4, 8, 16, 32))][:kept]
    if kept:
        full = ConvNeXt(3, 5).double()
        _load(full, timm_state)
        with torch.no_grad():
            deep = full(x)
        for got, want in zip(features, deep):
            torch.testing.assert_close(got, want)


@pytest.mark.parametrize("depth", [0, 6, 2.0, True, None])
def test_bad_depth_is_refused(depth: object) -> None:
    with pytest.raises(ConfigError, match="encoder_depth=.*convnext_tiny"):
        ConvNeXt(3, depth)  # type: ignore[arg-type]


def test_stages_argument_computes_nothing_deeper() -> None:
    backbone = ConvNeXt().eval()
    ran = []
    for s, stage in enumerate(backbone.stages):
        stage.register_forward_hook(lambda *_, s=s: ran.append(s))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert backbone(x, 0) == [] and ran == []
        two = backbone(x, 2)
        assert ran == [0, 1] and [f.shape[1] for f in two] == [96, 192]
        ran.clear()
        assert len(backbone(x)) == 4 and ran == [0, 1, 2, 3]
    for bad in (5, -1, True, 2.0):
        with pytest.raises(ConfigError, match=f"stages={bad!r}"):
            backbone(x, bad)  # type: ignore[arg-type]


def test_in_channels_1_adapts_the_stem(timm_state: dict) -> None:
    backbone = ConvNeXt(1, 5).double()
    _load(backbone, timm_state)
    torch.testing.assert_close(backbone.stem[0].weight, timm_state["stem.0.weight"].sum(1, keepdim=True))
    with torch.no_grad():
        features = backbone(torch.randn(1, 1, 32, 64, dtype=torch.float64))
    assert [tuple(f.shape[2:]) for f in features] == [(8, 16), (4, 8), (2, 4), (1, 2)]


@pytest.mark.parametrize("layout", ["timm", "torchvision"])
def test_missing_and_unknown_keys_are_listed(layout: str, timm_state: dict, torchvision_state: dict) -> None:
    state = dict(timm_state if layout == "timm" else torchvision_state)
    gone = "stages.2.blocks.4.gamma" if layout == "timm" else "features.5.4.layer_scale"
    del state[gone]
    state["features.9.0.weight" if layout == "torchvision" else "stages.4.blocks.0.gamma"] = torch.zeros(3)
    state["totally.unknown"] = torch.zeros(1)
    with pytest.raises(ConfigError, match="convnext.pth does not fit") as err:
        _load(ConvNeXt(), state, "convnext.pth")
    message = str(err.value)
    assert "1 missing key(s): stages.2.blocks.4.gamma" in message
    assert "2 unexpected key(s)" in message and "totally.unknown" in message
    assert ("features.9.0.weight" if layout == "torchvision" else "stages.4.blocks.0.gamma") in message


def test_a_state_of_no_known_layout_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"encoder 'convnext_tiny'.*torchvision's convnext_tiny.*timm's convnext_tiny"):
        convert_state_dict({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 64)})


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    backbone = ConvNeXt().train()
    features = backbone(torch.randn(2, 3, 64, 64))
    sum(f.square().mean() for f in features).backward()
    for name, p in backbone.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_channels_last_input_gives_the_same_features(timm_state: dict) -> None:
    backbone = ConvNeXt().double().eval()
    _load(backbone, timm_state)
    x = torch.randn(2, 3, 64, 96, dtype=torch.float64)
    with torch.no_grad():
        plain = backbone(x)
        last = backbone.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    for a, b in zip(plain, last):
        torch.testing.assert_close(a, b)


def test_drop_path_only_in_training() -> None:
    torch.manual_seed(0)
    backbone = ConvNeXt(3, 3, drop_path_rate=0.5)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        for name, p in backbone.named_parameters():
            if name.endswith(".gamma"):
                p.fill_(1.0)  # branches of the size they reach in training, not the 1e-6 of initialisation
        backbone.eval()
        torch.testing.assert_close(backbone(x)[-1], backbone(x)[-1])
        backbone.train()
        assert not torch.equal(backbone(x)[-1], backbone(x)[-1])
