"""The contract every registered model keeps: shapes, logits, gradients, determinism, export."""
from __future__ import annotations

import pytest
import torch

from tests.models.conftest import DEEP_SUPERVISION, SMALL
from unetfamily import create_model, list_models
from unetfamily.models import SegmentationModel

SIZES = [(33, 47), (61, 42), (64, 64)]


def _build(name: str, **kwargs: object) -> SegmentationModel:
    return create_model(name, **{**SMALL[name], **kwargs})


def test_every_family_has_a_small_configuration() -> None:
    families = {n for n in list_models() if not n.endswith(("_voc", "_huang2020", "_zhou2018"))}
    assert families == set(SMALL)


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("in_channels,num_classes", [(1, 1), (3, 4)])
@pytest.mark.parametrize("size", SIZES)
def test_output_shape_any_size(name: str, in_channels: int, num_classes: int, size: tuple[int, int]) -> None:
    model = _build(name, in_channels=in_channels, num_classes=num_classes).eval()
    x = torch.randn(2, in_channels, *size)
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, num_classes, *size)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(DEEP_SUPERVISION))
@pytest.mark.parametrize("training", [True, False])
def test_deep_supervision_returns_list_at_input_size(name: str, training: bool) -> None:
    model = _build(name, num_classes=3, deep_supervision=True).train(training)
    out = model(torch.randn(2, 3, 61, 42))
    assert isinstance(out, list) and len(out) == DEEP_SUPERVISION[name]
    assert all(o.shape == (2, 3, 61, 42) for o in out)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_return_type_does_not_depend_on_mode(name: str) -> None:
    model = _build(name)
    x = torch.randn(2, 3, 32, 32)
    assert type(model.train()(x)) is type(model.eval()(x))


def _grad_check(model: torch.nn.Module, out: object) -> None:
    tensors = [out] if isinstance(out, torch.Tensor) else list(out)
    flat = []
    for t in tensors:
        flat.extend(t if isinstance(t, list) else [t])
    loss = sum((t * torch.randn_like(t)).mean() for t in flat)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} received no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
        assert p.grad.norm() > 0, f"{pname} has a zero gradient"


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_parameter_gets_a_gradient(name: str) -> None:
    model = _build(name, num_classes=2).train()
    _grad_check(model, model(torch.randn(2, 3, 45, 37)))


@pytest.mark.parametrize("name", sorted(DEEP_SUPERVISION))
def test_every_parameter_gets_a_gradient_with_deep_supervision(name: str) -> None:
    model = _build(name, num_classes=2, deep_supervision=True).train()
    _grad_check(model, model(torch.randn(2, 3, 45, 37)))


@pytest.mark.parametrize("norm", ["batch", "instance", "group", "none"])
def test_norm_choices(norm: str) -> None:
    model = _build("unet", norm=norm).eval()
    assert model(torch.randn(1, 3, 20, 20)).shape == (1, 1, 20, 20)
    has = {type(m).__name__ for m in model.modules()}
    expected = {"batch": "BatchNorm2d", "instance": "InstanceNorm2d", "group": "GroupNorm"}.get(norm)
    if expected:
        assert expected in has
    else:
        assert not has & {"BatchNorm2d", "InstanceNorm2d", "GroupNorm"}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_same_seed_same_weights_and_outputs(name: str) -> None:
    torch.manual_seed(123)
    a = _build(name).eval()
    torch.manual_seed(123)
    b = _build(name).eval()
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    x = torch.randn(1, 3, 40, 40)
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("name", ["fcn8s", "unet", "unet_plusplus", "unet_3plus"])
def test_torch_export_matches_eager(name: str) -> None:
    model = _build(name).eval()
    x = torch.randn(1, 3, 37, 50)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x))


def test_wrong_input_channels_is_a_clear_error() -> None:
    model = _build("unet", in_channels=3)
    with pytest.raises(ValueError, match=r"in_channels=1"):
        model(torch.randn(1, 1, 32, 32))


@pytest.mark.parametrize(
    "name,kwargs,match",
    [
        ("unet", dict(channels=()), "channels"),
        ("unet_plusplus", dict(channels=(8,)), "channels"),  # depth 0 is U-Net's alone
        ("unet_3plus", dict(channels=(8,)), "channels"),
        ("unet", dict(channels=(4,) * 8), "channels"),
        ("unet", dict(norm="layer"), "norm: unknown value 'layer'"),
        ("unet", dict(upsample="nearest"), "upsample"),
        ("fcn8s", dict(variant="4s"), "variant"),
        ("fcn8s", dict(channels=(4, 8, 16)), "channels"),
    ],
)
def test_bad_constructor_arguments_name_the_argument(name: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_model(name, **kwargs)


@pytest.mark.parametrize("depth", range(0, 7))
def test_unet_depth_zero_to_six(depth: int) -> None:
    model = create_model("unet", channels=tuple(4 * 2**i for i in range(depth + 1)), num_classes=2).eval()
    assert model.depth == depth and model.size_multiple == 2**depth
    assert model(torch.randn(1, 3, 35, 29)).shape == (1, 2, 35, 29)


@pytest.mark.parametrize("depth", [0, 1])
def test_unet_shallow_depths_train_and_export(depth: int) -> None:
    """Depth 0 (no down-sampling: one DoubleConv at full resolution and the head) keeps the contract."""
    model = create_model("unet", channels=tuple(4 * 2**i for i in range(depth + 1)), num_classes=2).train()
    if depth == 0:
        assert len(model.ups) == 0 and len(model.decoder) == 0
        assert {name.split(".")[0] for name, _ in model.named_parameters()} == {"encoder", "head"}
    _grad_check(model, model(torch.randn(2, 3, 21, 19)))
    model.eval()
    x = torch.randn(1, 3, 37, 50)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x))


@pytest.mark.parametrize("upsample,kernel", [("transpose", 2), ("transpose", 4), ("bilinear", 2)])
def test_unet_upsampling_choices(upsample: str, kernel: int) -> None:
    model = _build("unet", upsample=upsample, up_kernel_size=kernel).eval()
    assert model(torch.randn(1, 3, 33, 47)).shape == (1, 1, 33, 47)
