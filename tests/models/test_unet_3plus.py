"""UNet3+: full-scale wiring and the classification-guided module done right."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unetfamily import create_model


def _cgm_model(**kwargs: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("unet_3plus", channels=(4, 8, 8, 16), cat_channels=4, cgm=True, **kwargs)


def _force(model: torch.nn.Module, present: bool) -> None:
    conv = model.classifier[1]
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.copy_(torch.tensor([-10.0, 10.0] if present else [10.0, -10.0]))


def test_each_decoder_level_fuses_all_scales() -> None:
    m = create_model("unet_3plus", channels=(4, 8, 8, 16, 16), cat_channels=4)
    for level in m.decoder:
        assert set(level.branches) == {f"from_{k}" for k in range(5)}
        assert level.fuse[0].in_channels == level.fuse[0].out_channels == 20


@pytest.mark.parametrize("deep_supervision", [False, True])
def test_cgm_absent_gives_zero_probability_everywhere(deep_supervision: bool) -> None:
    model = _cgm_model(deep_supervision=deep_supervision).eval()
    _force(model, present=False)
    with torch.no_grad():
        seg, cls_logits = model(torch.randn(2, 3, 33, 47))
    assert cls_logits.shape == (2, 2)
    for out in seg if deep_supervision else [seg]:
        assert out.shape == (2, 1, 33, 47)
        assert torch.equal(torch.sigmoid(out), torch.zeros_like(out))


def test_cgm_present_leaves_segmentation_untouched() -> None:
    model = _cgm_model().eval()
    _force(model, present=True)
    plain = create_model("unet_3plus", channels=(4, 8, 8, 16), cat_channels=4).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("classifier")})
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        seg, _ = model(x)
        torch.testing.assert_close(seg, plain(x))


def test_cgm_is_trainable() -> None:
    model = _cgm_model().train()
    seg, cls_logits = model(torch.randn(2, 3, 32, 32))
    has_target = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    loss = F.binary_cross_entropy_with_logits(cls_logits, has_target) + seg.mean()
    loss.backward()
    for name, p in model.classifier.named_parameters():
        assert p.grad is not None and p.grad.norm() > 0, name


def test_cgm_refuses_multiclass() -> None:
    with pytest.raises(ValueError, match="num_classes=1"):
        create_model("unet_3plus", num_classes=3, cgm=True)
