"""The ResNet-18/34/50 and EfficientNet-B0 backbones: depth, input channels, weight layouts, sizes, gradients.

Fast checks on tiny inputs; that the features equal torchvision's and timm's is
tests/models/test_encoder_references.py's job.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from unetfamily.errors import ConfigError
from unetfamily.models.encoders import encoder_spec, list_encoders
from unetfamily.models.encoders.efficientnet import EfficientNet
from unetfamily.models.encoders.pyramid import PyramidEncoder
from unetfamily.models.encoders.resnet import ResNet
from unetfamily.models.encoders.weights import adapt_first_conv, load_weights

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from encoder_reference import filled_state  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "encoders"
NAMES = ["resnet18", "resnet34", "resnet50", "efficientnet_b0"]
LIBRARIES = ["torchvision", "timm"]
#: Parameters of the backbone without the classifier head (torchvision's count less fc / features.8 + classifier).
PARAMETERS = {"resnet18": 11_176_512, "resnet34": 21_284_672, "resnet50": 23_508_032, "efficientnet_b0": 3_595_388}
#: Key prefixes of each reference's head, per library.
HEADS = {("torchvision", "efficientnet_b0"): ("features.8.", "classifier."),
         ("timm", "efficientnet_b0"): ("conv_head.", "bn2.", "classifier.")}
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def _keys(library: str, name: str) -> dict[str, tuple[int, ...]]:
    fx = json.loads((FIXTURES / f"{library}_{name}.json").read_text())
    return {k: tuple(s) for k, s in fx["keys"]}


def _reference_state(library: str, name: str) -> dict[str, torch.Tensor]:
    return {k: v.float() if v.is_floating_point() else v for k, v in filled_state(_keys(library, name)).items()}


def _load(backbone: torch.nn.Module, name: str, state: dict[str, torch.Tensor]) -> None:
    load_weights(backbone, encoder_spec(name).convert_state_dict(state), "test weights",
                 skipped=backbone.skipped_prefixes, first_conv=backbone.first_conv)


def test_registered_with_references_and_papers() -> None:
    assert set(NAMES) <= set(list_encoders())
    for name in NAMES:
        spec = encoder_spec(name)
        assert spec.reference == {"torchvision": name, "timm": name}
        assert spec.reductions == (2, 4, 8, 16, 32)
        assert "arxiv.org" in spec.paper
    assert isinstance(encoder_spec("resnet50").build(3, 1), ResNet)
    assert isinstance(encoder_spec("efficientnet_b0").build(3, 1), EfficientNet)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("library", LIBRARIES)
def test_parameter_count_equals_the_reference_without_head(name: str, library: str) -> None:
    heads = HEADS.get((library, name), ("fc.",))
    reference = sum(math.prod(s) for k, s in _keys(library, name).items()
                    if not k.startswith(heads) and not k.endswith(BUFFERS))
    assert reference == PARAMETERS[name]
    assert sum(p.numel() for p in encoder_spec(name).build(3, 5).parameters()) == PARAMETERS[name]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("library", LIBRARIES)
def test_reference_layout_converts_onto_every_key(name: str, library: str) -> None:
    backbone = encoder_spec(name).build(3, 5)
    converted = encoder_spec(name).convert_state_dict(_reference_state(library, name))
    kept = {k: tuple(v.shape) for k, v in converted.items() if not k.startswith(backbone.skipped_prefixes)}
    assert kept == {k: tuple(v.shape) for k, v in backbone.state_dict().items()}
    assert len(converted) == len(_keys(library, name))  # nothing dropped by the conversion itself


@pytest.mark.parametrize("name", NAMES)
def test_own_layout_is_read_as_is(name: str) -> None:
    spec = encoder_spec(name)
    state = spec.build(3, 5).state_dict()
    assert spec.convert_state_dict(state).keys() == state.keys()
    _load(spec.build(3, 5), name, state)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_depth_keeps_the_stages_up_to_its_stride(name: str, depth: int) -> None:
    backbone = encoder_spec(name).build(3, depth).eval()
    assert backbone.feature_info.reductions() == tuple(2 ** (i + 1) for i in range(depth))
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 64, 64))
    info = backbone.feature_info
    want = [(1, c, 64 // r, 64 // r) for c, r in zip(info.channels(), info.reductions())]
    assert [tuple(f.shape) for f in features] == want
    for level in backbone.feature_info:
        backbone.get_submodule(level["module"])


def test_depth_3_builds_nothing_deeper_and_a_full_state_loads() -> None:
    x = torch.randn(2, 3, 32, 32)
    for name, absent in [("resnet18", ("layer3", "layer4")), ("resnet50", ("layer3", "layer4")),
                         ("efficientnet_b0", ("blocks.3", "blocks.4", "blocks.5", "blocks.6"))]:
        full, small = encoder_spec(name).build(3, 5).eval(), encoder_spec(name).build(3, 3).eval()
        names = {n for n, _ in small.named_modules()}
        assert not names & set(absent), name
        assert not any(k.startswith(tuple(a + "." for a in absent)) for k in small.state_dict()), name
        _load(small, name, full.state_dict())
        with torch.no_grad():
            got, want = small(x), full(x)
        assert len(got) == 3
        for g, w in zip(got, want[:3]):
            torch.testing.assert_close(g, w)


@pytest.mark.parametrize("name", NAMES)
def test_stages_computes_nothing_deeper(name: str) -> None:
    backbone = encoder_spec(name).build(3, 5).eval()
    ran: list[str] = []
    for level in backbone.feature_info:
        module = level["module"]
        backbone.get_submodule(module).register_forward_hook(lambda *_, m=module: ran.append(m))
    with torch.no_grad():
        assert backbone(torch.randn(1, 3, 32, 32), 2)[1].shape[1] == backbone.feature_info[1]["num_chs"]
        assert backbone(torch.randn(1, 3, 32, 32), 0) == []
    assert ran == list(backbone.feature_info.module_names()[:2])
    with pytest.raises(ConfigError, match="stages=6"):
        backbone(torch.randn(1, 3, 32, 32), 6)


@pytest.mark.parametrize("name", NAMES)
def test_depth_out_of_range_is_refused(name: str) -> None:
    for depth in (0, 6, 2.5, True):
        with pytest.raises(ConfigError, match="encoder_depth"):
            encoder_spec(name).build(3, depth)


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0"])
@pytest.mark.parametrize("in_channels", [1, 4])
@pytest.mark.parametrize("library", LIBRARIES)
def test_other_input_channels_load_the_rgb_weights(name: str, in_channels: int, library: str) -> None:
    backbone = encoder_spec(name).build(in_channels, 2)
    state = _reference_state(library, name)
    _load(backbone, name, state)
    rgb = encoder_spec(name).convert_state_dict(state)[backbone.first_conv]
    got = backbone.state_dict()[backbone.first_conv]
    assert got.shape[1] == in_channels
    torch.testing.assert_close(got, adapt_first_conv(rgb, in_channels))
    features = backbone.eval()(torch.randn(1, in_channels, 32, 32))
    assert [f.shape[1] for f in features] == list(backbone.feature_info.channels())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("library", LIBRARIES)
def test_unknown_and_missing_keys_are_listed(name: str, library: str) -> None:
    state = _reference_state(library, name)
    first = next(k for k in state if k.endswith("weight") and state[k].dim() == 4)
    extra = "features.1.0.block.9.weight" if library == "torchvision" and name.startswith("eff") else "extra.weight"
    state[extra] = torch.zeros(3)
    backbone = encoder_spec(name).build(3, 5)
    with pytest.raises(ConfigError, match=r"1 unexpected key\(s\): " + extra.replace(".", r"\.")):
        _load(backbone, name, state)
    del state[extra], state[first]
    missing = encoder_spec(name).convert_state_dict({first: torch.zeros(1)})
    with pytest.raises(ConfigError, match=r"1 missing key\(s\): " + next(iter(missing)).replace(".", r"\.")):
        _load(backbone, name, state)


@pytest.mark.parametrize("name", NAMES)
def test_unrecognised_layout_is_refused(name: str) -> None:
    state = {"stem.0.weight": torch.zeros(96, 3, 4, 4), "stages.0.blocks.0.gamma": torch.zeros(96)}
    with pytest.raises(ConfigError, match=rf"encoder '{name}' are in no layout it reads.*torchvision.*stem\.0\.weight"):
        encoder_spec(name).convert_state_dict(state)


def test_efficientnet_state_mixing_two_layouts_is_refused() -> None:
    state = _reference_state("torchvision", "efficientnet_b0")
    state["conv_stem.weight"] = state["features.0.0.weight"]
    with pytest.raises(ConfigError, match="'features.0.0.weight'.*'conv_stem.weight'.*mixes two layouts"):
        encoder_spec("efficientnet_b0").convert_state_dict(state)


def test_resnet_does_not_read_an_efficientnet_state() -> None:
    with pytest.raises(ConfigError, match="no layout it reads"):
        encoder_spec("resnet18").convert_state_dict(_reference_state("timm", "efficientnet_b0"))


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name: str) -> None:
    backbone = encoder_spec(name).build(3, 5).train()
    features = backbone(torch.randn(2, 3, 64, 64))
    sum(f.square().mean() for f in features).backward()
    unreached = [n for n, p in backbone.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not unreached


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0"])
def test_pyramid_puts_a_full_resolution_level_before_the_backbone(name: str) -> None:
    encoder = PyramidEncoder(name, 3, 3).eval()
    assert encoder.feature_info.reductions() == (1, 2, 4, 8)
    with torch.no_grad():
        features = encoder(torch.randn(1, 3, 32, 32))
    assert [f.shape[-1] for f in features] == [32, 16, 8, 4]
