"""Checkpoints written by unetfamily 0.1.0 load, and the same seed builds the same weights as 0.1.0 did.

The fixtures (tests/models/fixtures/v010_*.safetensors) were written by the 0.1.0 code right after
``torch.manual_seed(0); create_model(...)``; fixtures/make_v010_fixture.py says how.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from unetfamily import create_model
from unetfamily.engine.checkpoint import load_checkpoint, load_model

FIXTURES = Path(__file__).resolve().parent / "fixtures"
NAMES = ["unet", "unet_plusplus", "unet_3plus"]


def _fixture(name: str) -> tuple[dict, torch.Tensor, list[torch.Tensor], list[str]]:
    """(the checkpoint's model config, the input, the 0.1.0 outputs final first, 0.1.0 parameter order)."""
    spec = load_checkpoint(FIXTURES / f"v010_{name}.safetensors").config["model"]
    with safe_open(str(FIXTURES / f"v010_{name}_io.safetensors"), framework="pt") as f:
        outputs = [f.get_tensor(f"output.{i}") for i in range(sum(k.startswith("output.") for k in f.keys()))]
        return spec, f.get_tensor("input"), outputs, json.loads(f.metadata()["parameter_order"])


def _same(got: list[torch.Tensor], expected: list[torch.Tensor]) -> bool:
    """Equal to float rounding: the fixtures were written on another CPU, whose oneDNN kernels may sum in
    another order (differences of 1e-8 here); a wrong or missing key changes the outputs far beyond this."""
    return len(got) == len(expected) and all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(got, expected))


def _outputs(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        out = model.eval()(x)
    return out if isinstance(out, list) else [out]


@pytest.mark.parametrize("name", NAMES)
def test_v010_checkpoint_loads_and_gives_the_same_outputs(name: str) -> None:
    spec, x, expected, _ = _fixture(name)
    model, _ = load_model(FIXTURES / f"v010_{name}.safetensors")
    assert spec["name"] == name
    got = _outputs(model, x)
    assert _same(got, expected)


@pytest.mark.parametrize("name", NAMES)
def test_v010_state_dict_loads_with_load_state_dict(name: str) -> None:
    spec, x, expected, _ = _fixture(name)
    state = load_checkpoint(FIXTURES / f"v010_{name}.safetensors").model_state
    model = create_model(name, **spec["kwargs"])
    model.load_state_dict(state)  # strict: every 0.1.0 key is renamed, none is missing
    assert _same(_outputs(model, x), expected)
    wrapped = torch.nn.Sequential(create_model(name, **spec["kwargs"]))  # nested under a prefix too
    wrapped.load_state_dict({f"0.{k}": v for k, v in state.items()})
    assert _same(_outputs(wrapped, x), expected)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_builds_the_weights_of_v010(name: str) -> None:
    """Initialisation order unchanged: same seed, same values for every (renamed) tensor."""
    spec, _, _, v010_order = _fixture(name)
    torch.manual_seed(0)
    model = create_model(name, **spec["kwargs"])
    v010 = model.upgrade_state_dict(load_checkpoint(FIXTURES / f"v010_{name}.safetensors").model_state)
    state = model.state_dict()
    assert set(state) == set(v010)
    assert all(torch.equal(state[k], v010[k]) for k in state)
    # An optimizer's state is keyed by parameter position: the order must not change either.
    assert [k for k, _ in model.named_parameters()] == list(model.upgrade_state_dict(dict.fromkeys(v010_order)))


@pytest.mark.parametrize("name", NAMES)
def test_current_keys_are_left_alone(name: str) -> None:
    spec, *_ = _fixture(name)
    model = create_model(name, **spec["kwargs"])
    state = model.state_dict()
    assert list(model.upgrade_state_dict(state)) == list(state)
    create_model(name, **spec["kwargs"]).load_state_dict(state)
