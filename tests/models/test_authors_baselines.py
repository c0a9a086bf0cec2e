"""The speed benchmarks' baselines rebuild the authors' models: same parameters and FLOPs as our presets."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from unetfamily import create_model
from unetfamily.bench import count_flops, count_params

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from authors_models import AUTHORS  # noqa: E402

# The authors' UNet++ builds and runs all four 1x1 heads even without deep supervision.
UNUSED_HEADS = {"unet_plusplus_huang2020": 3 * (64 + 1)}


@pytest.mark.parametrize("name", sorted(AUTHORS))
def test_same_parameters_and_flops_as_our_preset(name: str) -> None:
    with torch.device("meta"):
        theirs, ours = AUTHORS[name](), create_model(name)
    assert count_params(theirs) == count_params(ours) + UNUSED_HEADS.get(name, 0)
    heads_flops = 3 * 2 * 64 * (64 * 64) if name in UNUSED_HEADS else 0  # 3 heads x 64 MACs per pixel, 64x64 input
    assert count_flops(theirs, (1, 3, 64, 64)) == count_flops(ours, (1, 3, 64, 64)) + heads_flops


def test_authors_unet3plus_bakes_in_a_sigmoid() -> None:
    torch.manual_seed(0)
    out = AUTHORS["unet_3plus_huang2020"]().eval()(torch.randn(1, 3, 32, 32))
    assert out.shape == (1, 1, 32, 32) and 0 <= out.min() and out.max() <= 1
