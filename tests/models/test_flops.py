"""unetfamily.models.flops: FLOPs of every model's forward and training pass, counted on the meta device."""
from __future__ import annotations

import pytest
import torch

from unetfamily.models import create_model, list_models
from unetfamily.models.encoders import list_encoders
from unetfamily.models.flops import count_flops, count_train_flops

CASES = [(name, {}) for name in list_models()] + [
    ("unet_plusplus", {"deep_supervision": True}),
    ("unet_3plus", {"deep_supervision": True, "cgm": True}),
] + [(model, {"encoder": encoder}) for encoder in list_encoders() for model in ("unet", "unet_3plus")]


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{'-'.join(map(str, k.values())) or 'default'}" for n, k in CASES])
def test_every_model_counts_its_forward_and_training_pass(name: str, kwargs: dict) -> None:
    """Paper widths, default memory saving (UNet3+'s fused resize-convolutions run their own autograd function,
    which must not ask the meta device for an autocast state it has none of)."""
    with torch.device("meta"):
        model = create_model(name, in_channels=3, num_classes=1 if kwargs.get("cgm") else 3, **kwargs)
    forward = count_flops(model, (2, 3, 96, 64))
    train = count_train_flops(model, (2, 3, 96, 64))
    assert 0 < forward and train > 2 * forward  # both gradients (and what memory saving recomputes)


def test_a_convolution_counts_two_flops_per_multiply_accumulate() -> None:
    conv = torch.nn.Conv2d(3, 5, 3, padding=1)
    assert count_flops(conv, (2, 3, 8, 8)) == 2 * (2 * 5 * 8 * 8) * (3 * 9)


def test_the_model_counted_is_left_as_it_was() -> None:
    model = create_model("unet", channels=(4, 8)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_train_flops(model, (1, 3, 16, 16))
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert next(model.parameters()).device.type == "cpu" and next(model.parameters()).grad is None
