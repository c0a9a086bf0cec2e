"""receptive_field: measured on the network, checked against values worked out by hand."""
from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from unetfamily import create_model
from unetfamily.errors import ConfigError
from unetfamily.models import receptive_field


def _unet(depth: int, width: int = 2, **kwargs: object) -> nn.Module:
    return create_model("unet", in_channels=1, channels=[width * 2**i for i in range(depth + 1)], **kwargs)


def test_one_conv_sees_its_kernel() -> None:
    assert receptive_field(nn.Conv2d(1, 2, 3, padding=1), in_channels=1) == 3
    assert receptive_field(nn.Conv2d(3, 1, 7, padding=3), in_channels=3) == 7


def test_two_convs_add_their_kernels() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 1, 3, padding=1))
    assert receptive_field(net, in_channels=1) == 5


def test_max_pool_counts_its_whole_window() -> None:
    # conv3x3 -> maxpool 2 -> conv3x3 -> nearest x2: the pool window doubles the second conv's
    # reach: 3 + (2 - 1) * 1 + (3 - 1) * 2 = 8; the nearest up-sampling adds none for the centre.
    net = nn.Sequential(
        nn.Conv2d(1, 1, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(1, 1, 3, padding=1), nn.Upsample(scale_factor=2)
    )
    assert receptive_field(net, in_channels=1) == 8


def test_unet_depth_zero_is_one_double_conv() -> None:
    # Two 3x3 convs (5) and the 1x1 head (adds nothing).
    assert receptive_field(_unet(0), in_channels=1) == 5


def test_unet_depth_one_matches_the_hand_count() -> None:
    # In 1-D (the box is square), following output pixel p back to the input:
    # - decoder DoubleConv (two 3x3, full resolution): up-sampled features p-2..p+2, 5 positions;
    # - 2x2 transposed conv, stride 2: full-res position t comes from low-res floor(t/2) only, and
    #   5 consecutive full-res positions span 3 low-res positions (m-1..m+1);
    # - bottleneck DoubleConv at half resolution: 3 + 2 + 2 = 7 low-res positions;
    # - 2x2 max-pool: each low-res position covers 2 level-0 positions: 14;
    # - encoder DoubleConv at level 0: 14 + 2 + 2 = 18 input pixels.
    # The skip path (level-0 DoubleConv then decoder DoubleConv: 9 pixels) lies inside them.
    assert receptive_field(_unet(1), in_channels=1) == 18


def test_unet_receptive_field_grows_with_depth() -> None:
    fields = [receptive_field(_unet(depth), in_channels=1) for depth in range(5)]
    assert fields == sorted(set(fields)), fields
    assert fields[:2] == [5, 18]


def test_normalisation_and_weights_do_not_matter() -> None:
    torch.manual_seed(0)
    trained_like = _unet(2, norm="group").train()
    for p in trained_like.parameters():
        nn.init.normal_(p)
    assert receptive_field(trained_like, in_channels=1) == receptive_field(_unet(2, norm="none"), in_channels=1)


def test_the_model_itself_is_left_unchanged() -> None:
    model = _unet(1).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    receptive_field(model, in_channels=1)
    assert model.training
    assert all(torch.equal(before[k], v) and v.dtype == before[k].dtype for k, v in model.state_dict().items())


def test_deep_supervision_measures_the_final_output() -> None:
    plain = create_model("unet_plusplus", in_channels=1, channels=(2, 2, 2))
    deep = create_model("unet_plusplus", in_channels=1, channels=(2, 2, 2), deep_supervision=True)
    assert receptive_field(deep, in_channels=1) == receptive_field(plain, in_channels=1) > 18


def test_inference_gates_and_dropout_do_not_hide_the_network() -> None:
    # UNet3+'s CGM blanks, at inference, the logits of images it calls empty; dropout zeroes at random.
    kwargs = dict(in_channels=1, channels=(2, 2, 2), cat_channels=2)
    gated = create_model("unet_3plus", cgm=True, deep_supervision=True, **kwargs).eval()
    assert receptive_field(gated, in_channels=1) == receptive_field(create_model("unet_3plus", **kwargs), 1)
    assert not gated.training
    dropped = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Dropout(0.99), nn.Conv2d(1, 1, 3, padding=1))
    assert receptive_field(dropped, in_channels=1) == 5


def test_a_field_wider_than_max_size_is_a_logged_lower_bound(caplog: pytest.LogCaptureFixture) -> None:
    net = nn.Sequential(*[nn.Conv2d(1, 1, 9, padding=4) for _ in range(3)])  # 25 px
    with caplog.at_level(logging.WARNING, logger="unetfamily.models.field"):
        assert receptive_field(net, in_channels=1, max_size=16) == 16
    assert "lower bound" in caplog.text


def test_bad_arguments_name_them() -> None:
    with pytest.raises(ConfigError, match="in_channels"):
        receptive_field(nn.Conv2d(1, 1, 3, padding=1), in_channels=0)
    with pytest.raises(ConfigError, match="output has the input's size"):
        receptive_field(nn.Conv2d(1, 1, 3), in_channels=1)


def test_a_field_whose_edge_underflows_float32_is_probed_in_float64(monkeypatch: pytest.MonkeyPatch) -> None:
    """100 stacked 3x3 convs: the gradient at the field's edge is ~(1/3)^100, below float32's smallest number."""
    import unetfamily.models.field as field

    deep = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1) for _ in range(100)])
    assert receptive_field(deep, 1) == 201
    monkeypatch.setattr(field, "_FLOAT32_FLOOR", 0.0)  # float32 only: the edge is lost, the test can tell
    assert receptive_field(deep, 1) < 201
