"""Deployment audit: models whose weights are not float32 (bf16, float64) save, load and predict."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import unetfamily
from tests.engine.conftest import tiny_model
from unetfamily.engine.predict import Predictor
from unetfamily.models.flops import count_flops


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.bfloat16, 3e-2), (torch.float64, 1e-5)])
def test_a_model_in_another_dtype_saves_loads_and_predicts(dtype: torch.dtype, tolerance: float,
                                                          tmp_path: Path) -> None:
    reference = tiny_model("unet", num_classes=3, in_channels=1)
    shape = (1, 1, 40, 56)
    model = tiny_model("unet", num_classes=3, in_channels=1).to(dtype)
    assert count_flops(model, shape) == count_flops(reference, shape)  # counted the same whatever the dtype

    model.save_pretrained(tmp_path / "folder")  # counted its MACs for the card: raised before
    loaded = unetfamily.from_pretrained(tmp_path / "folder")
    assert next(loaded.parameters()).dtype == dtype and loaded.pretrained_config["dtype"] == str(dtype)[6:]

    image = (torch.rand(1, 40, 56) * 255).to(torch.uint8)
    predictor = Predictor.from_checkpoint(tmp_path / "folder", tile_size=32)  # tiled: every tile in the dtype
    pred = predictor.predict(image)
    expected = Predictor(reference, tile_size=32).predict(image).probabilities
    assert pred.probabilities.dtype == torch.float32 and pred.probabilities.shape == (3, 40, 56)
    torch.testing.assert_close(pred.probabilities, expected, atol=tolerance, rtol=0)
