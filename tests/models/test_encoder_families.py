"""Every decoder family on every pretrained-architecture encoder: shapes, gradients, export, weights.

Backbones run at their full widths (the decoders size themselves from them) on small images.
"""
from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from unetfamily.errors import ConfigError
from unetfamily.models import create_model, final_output, from_pretrained
from unetfamily.models.encoders import encoder_spec, list_encoders
from unetfamily.models.encoders.weights import IMAGENET_MEAN, IMAGENET_STD

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from encoder_reference import filled_state  # noqa: E402

FAMILIES = ("unet", "unet_plusplus", "unet_3plus")
FIXTURES = Path(__file__).parent / "fixtures" / "encoders"


def _reference_state(encoder: str, library: str = "timm") -> dict[str, torch.Tensor]:
    """A full classifier state dict in ``library``'s layout, filled by the fixture formula (float32)."""
    keys = json.loads((FIXTURES / f"{library}_{encoder}.json").read_text())["keys"]
    return {k: v.float() if v.is_floating_point() else v for k, v in filled_state({k: tuple(s) for k, s in keys}).items()}


def test_encoders_are_registered() -> None:
    assert {"resnet18", "resnet34", "resnet50", "convnext_tiny", "efficientnet_b0"} <= set(list_encoders())


@pytest.mark.parametrize("encoder", ["resnet18", "resnet34", "resnet50", "convnext_tiny", "efficientnet_b0"])
@pytest.mark.parametrize("family", FAMILIES)
def test_any_size_and_every_parameter_learns(family: str, encoder: str) -> None:
    """Full depth for the shapes; depth 3 (every block type, smaller stages) for the gradients."""
    torch.manual_seed(0)
    kwargs = {"deep_supervision": True} if family != "unet" else {}
    model = create_model(family, num_classes=2, encoder=encoder, **kwargs).eval()
    assert model.feature_info.reductions() == (1, 2, 4, 8, 16, 32)
    assert model.encoder_modules() == [model.encoder.backbone]
    with torch.no_grad():
        for h, w in ((37, 51), (33, 97)):
            assert final_output(model(torch.rand(1, 3, h, w))).shape == (1, 2, h, w)
    model = create_model(family, num_classes=2, encoder=encoder, encoder_depth=3, **kwargs).train()
    out = model(torch.rand(2, 3, 40, 36))
    loss = sum(o.square().mean() for o in (out if isinstance(out, list) else [out]))
    loss.backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not silent, silent


@pytest.mark.parametrize("family", FAMILIES)
def test_shallower_encoder_depths(family: str) -> None:
    for encoder, depth in (("convnext_tiny", 1), ("convnext_tiny", 2), ("resnet18", 1), ("efficientnet_b0", 3)):
        model = create_model(family, encoder=encoder, encoder_depth=depth).eval()
        assert model.feature_info.reductions() == tuple(2**i for i in range(depth + 1))
        with torch.no_grad():
            assert final_output(model(torch.rand(1, 3, 21, 18))).shape == (1, 1, 21, 18)


@pytest.mark.parametrize("encoder", ["resnet18", "resnet50", "convnext_tiny", "efficientnet_b0"])
@pytest.mark.parametrize("family", FAMILIES)
def test_onnx_export(family: str, encoder: str, tmp_path: Path) -> None:
    """Depth 2 keeps every block type of each encoder (resnet34 is resnet18's blocks) and exports fast."""
    pytest.importorskip("onnxruntime")
    from unetfamily.engine.export import export_model

    model = create_model(family, num_classes=2, encoder=encoder, encoder_depth=2)
    export_model(model, tmp_path / "m.onnx", input_size=(40, 48))  # checks outputs against torch at two sizes
    assert (tmp_path / "m.onnx").stat().st_size > 0


def test_unetplusplus_pruned_keeps_the_backbone() -> None:
    model = create_model("unet_plusplus", encoder="resnet18", deep_supervision=True).eval()
    x = torch.rand(1, 3, 50, 44)
    small = model.pruned(2)
    assert len(small.encoder.feature_info) == 3
    with torch.no_grad():
        torch.testing.assert_close(small(x), model.forward_level(x, 2))


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_encoder_weights_load_and_travel_with_the_model(suffix: str, tmp_path: Path) -> None:
    state = _reference_state("resnet18")
    path = tmp_path / f"resnet18{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save({"state_dict": state}, path)
    model = create_model("unet", encoder="resnet18", encoder_weights=str(path))
    backbone = model.encoder.backbone.state_dict()
    assert torch.equal(backbone["layer3.1.conv2.weight"], state["layer3.1.conv2.weight"])
    assert "fc.weight" not in backbone
    assert model.input_norm.mean.flatten().tolist() == pytest.approx(IMAGENET_MEAN)
    assert model.input_norm.std.flatten().tolist() == pytest.approx(IMAGENET_STD)
    # The saved model rebuilds without the weight file (the weights are in the model folder).
    model.eval()
    model.save_pretrained(tmp_path / "folder")
    assert "encoder_weights" not in (tmp_path / "folder" / "config.json").read_text()
    path.unlink()
    again = from_pretrained(tmp_path / "folder").eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))


def test_encoder_weights_for_grey_images_and_a_torchvision_layout(tmp_path: Path) -> None:
    state = _reference_state("convnext_tiny", "torchvision")
    save_file(state, str(tmp_path / "w.safetensors"))
    model = create_model("unet_3plus", in_channels=1, encoder="convnext_tiny", encoder_weights=str(tmp_path / "w.safetensors"))
    first = model.encoder.backbone.state_dict()["stem.0.weight"]
    torch.testing.assert_close(first, state["features.0.0.weight"].sum(dim=1, keepdim=True))
    assert model.input_norm.mean.flatten().tolist() == pytest.approx([sum(IMAGENET_MEAN) / 3])


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_bad_weight_files_are_refused_naming_the_file(tmp_path: Path) -> None:
    state = _reference_state("resnet18")
    wrong = dict(state, **{"layer9.weight": torch.zeros(1)})
    del wrong["layer2.0.bn1.running_var"]
    save_file(wrong, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(ConfigError, match=r"wrong.safetensors.*missing key.*layer2.0.bn1.running_var.*unexpected.*layer9"):
        create_model("unet", encoder="resnet18", encoder_weights=str(tmp_path / "wrong.safetensors"))
    save_file(_reference_state("resnet34"), str(tmp_path / "r34.safetensors"))
    with pytest.raises(ConfigError, match="r34.safetensors.*(missing|unexpected)"):
        create_model("unet", encoder="resnet18", encoder_weights=str(tmp_path / "r34.safetensors"))
    with open(tmp_path / "evil.pth", "wb") as f:  # a pickle that would run code when fully unpickled
        pickle.dump({"x": _Boom()}, f)
    with pytest.raises(ConfigError, match="evil.pth.*weights_only"):
        create_model("unet", encoder="resnet18", encoder_weights=str(tmp_path / "evil.pth"))
    with pytest.raises(ConfigError, match="missing.pth"):
        create_model("unet", encoder="resnet18", encoder_weights=str(tmp_path / "missing.pth"))
    with pytest.raises(ConfigError, match="no pretrained-architecture encoder"):
        create_model("unet", encoder_weights=str(tmp_path / "r34.safetensors"))
    with pytest.raises(ConfigError, match="encoder"):
        create_model("unet", encoder="resnet19")


class _Boom:
    def __reduce__(self):
        return (exec, ("raise SystemExit('unpickled')",))


def test_spec_reductions_match_the_backbones() -> None:
    for name in list_encoders():
        spec = encoder_spec(name)
        assert spec.build(3, 5).feature_info.reductions() == spec.reductions
