"""The encoders match the real torchvision and timm implementations, key by key and feature by feature.

The fixtures (tests/models/fixtures/encoders/, made by tools/make_encoder_fixtures.py where
torchvision and timm import) hold each reference model's key names and shapes, and a summary
of its features on a fixed input after every tensor was filled by ``encoder_reference.fill_value``.
Here the project's encoder is filled from the same formula through its key mapping, in float64,
and must give the same features to 1e-5.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from unetfamily.models.encoders import encoder_spec
from unetfamily.models.encoders.weights import load_weights

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from encoder_reference import filled_state, fixture_input, summarize  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "encoders"
ENCODER_FIXTURES = sorted(p for p in FIXTURES.glob("*.json") if not p.name.endswith("_vgg16.json"))


def _fixture(path: Path) -> dict:
    return json.loads(path.read_text())


def assert_features_match(got: torch.Tensor, want: dict, what: str) -> None:
    """``got`` summarised equals the recorded summary ``want`` to 1e-5 (relative to its scale)."""
    mine = summarize(got)
    assert mine["shape"] == want["shape"], what
    scale = want["abs_sum"] / max(1, torch.Size(want["shape"]).numel())
    assert mine["abs_sum"] == pytest.approx(want["abs_sum"], rel=1e-5), what
    assert mine["sum"] == pytest.approx(want["sum"], rel=1e-5, abs=1e-5 * want["abs_sum"]), what
    assert mine["samples"] == pytest.approx(want["samples"], rel=1e-5, abs=1e-5 * scale), what


def test_every_encoder_has_both_references() -> None:
    names = {(_fixture(p)["library"], _fixture(p)["model"]) for p in ENCODER_FIXTURES}
    from unetfamily.models.encoders import list_encoders

    for name in list_encoders():
        assert {("torchvision", name), ("timm", name)} <= names, name


@pytest.mark.parametrize("path", ENCODER_FIXTURES, ids=lambda p: p.stem)
def test_features_equal_reference(path: Path) -> None:
    fx = _fixture(path)
    spec = encoder_spec(fx["model"])
    backbone = spec.build(3, 5).double().eval()
    state = spec.convert_state_dict(filled_state({k: tuple(s) for k, s in fx["keys"]}))
    load_weights(backbone, state, path.name, skipped=backbone.skipped_prefixes, first_conv=backbone.first_conv)
    with torch.no_grad():
        features = backbone(fixture_input(tuple(fx["input_shape"])))
    assert len(features) == len(fx["features"])
    assert [f["num_chs"] for f in backbone.feature_info] == [f["shape"][1] for f in fx["features"]]
    for i, (got, want) in enumerate(zip(features, fx["features"])):
        assert_features_match(got, want, f"{path.stem} feature {i} ({fx['modules'][i]})")
