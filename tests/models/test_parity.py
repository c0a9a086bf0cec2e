"""Parity with the authors' configurations: parameter counts and FLOPs (counted on the meta device)."""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from unetfamily import create_model


def _params(name: str, **kwargs: object) -> int:
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "name,kwargs,expected",
    [
        ("unet_zhou2018", {}, 7_759_521),
        ("unet_plusplus_zhou2018", {}, 9_041_601),
        ("unet_plusplus_zhou2018", {"deep_supervision": True}, 9_041_700),
    ],
)
def test_unetpp_paper_parameter_counts_exact(name: str, kwargs: dict, expected: int) -> None:
    assert _params(name, **kwargs) == expected


@pytest.mark.parametrize(
    "name,kwargs,millions",
    [
        ("unet_huang2020", {}, 39.40),
        ("unet_plusplus_huang2020", {}, 47.18),
        ("unet_plusplus_huang2020", {"deep_supervision": True}, 47.18),
        ("unet_3plus_huang2020", {}, 26.97),
        ("unet_3plus_huang2020", {"deep_supervision": True}, 26.99),
    ],
)
def test_unet3p_paper_parameter_counts(name: str, kwargs: dict, millions: float) -> None:
    assert _params(name, **kwargs) / 1e6 == pytest.approx(millions, rel=1e-3)


@pytest.mark.parametrize(
    "name,gflop", [("unet_huang2020", 109.3), ("unet_plusplus_huang2020", 270.3), ("unet_3plus_huang2020", 395.3)]
)
def test_unet3p_paper_flops(name: str, gflop: float) -> None:
    with torch.device("meta"):
        model = create_model(name).eval()
        x = torch.empty(1, 3, 256, 256)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    assert counter.get_total_flops() / 1e9 == pytest.approx(gflop, rel=0.01)


def test_fcn_voc_parameter_counts() -> None:
    # VGG-16 trunk 14,714,688 + fc6 102,764,544 + fc7 16,781,312 + score_fr 86,037 = 134,346,581,
    # then the variant's skip scores and bilinear-initialised transposed convs (21 -> 21, no bias).
    trunk = 134_346_581
    up = lambda k: 21 * 21 * k * k  # noqa: E731
    assert _params("fcn32s_voc") == trunk + up(64)
    assert _params("fcn16s_voc") == trunk + (512 * 21 + 21) + up(4) + up(32)
    assert _params("fcn8s_voc") == trunk + (512 * 21 + 21) + (256 * 21 + 21) + 2 * up(4) + up(16)
