"""Tiny configurations of every family, so the shared tests run in seconds on 2 CPU cores."""
from __future__ import annotations

import pytest
import torch

SMALL = {
    "fcn32s": dict(channels=(4, 8, 8, 16, 16), fc_channels=16),
    "fcn16s": dict(channels=(4, 8, 8, 16, 16), fc_channels=16),
    "fcn8s": dict(channels=(4, 8, 8, 16, 16), fc_channels=16),
    "unet": dict(channels=(4, 8, 16, 16)),
    "unet_plusplus": dict(channels=(4, 8, 8, 16, 16)),
    "unet_3plus": dict(channels=(4, 8, 8, 16, 16), cat_channels=4),
    "unet_3plus_efficient": dict(channels=(4, 8, 8, 16, 16), cat_channels=4),
}
# Variants with several outputs: the number of outputs expected.
DEEP_SUPERVISION = {"unet_plusplus": 4, "unet_3plus": 5, "unet_3plus_efficient": 5}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
