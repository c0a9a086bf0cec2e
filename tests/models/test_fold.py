"""BatchNorm folding keeps inference logits and removes every BatchNorm."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.models.conftest import SMALL
from unetfamily import create_model
from unetfamily.models import fold_batchnorm


@pytest.mark.parametrize("name", sorted(SMALL))
def test_folded_model_gives_the_same_logits(name: str) -> None:
    model = create_model(name, **{**SMALL[name], "norm": "batch"})  # FCN has none by default
    model.train()
    for _ in range(3):  # non-trivial running statistics
        model(torch.randn(2, 3, 32, 32) * 3 + 1)
    model.eval()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()), "the original is left alone"
    x = torch.randn(2, 3, 40, 36)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)
