"""Tiny models of every family written as real checkpoints, so prediction and export tests need no training."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from unetfamily.engine.checkpoint import save_checkpoint
from unetfamily.models import create_model

# Depth-2 widths (size multiple 4; FCN keeps its 5 stages, multiple 32): exports in seconds.
TINY = {
    "fcn8s": dict(channels=(4, 8, 8, 16, 16), fc_channels=16),
    "unet": dict(channels=(4, 8, 16)),
    "unet_plusplus": dict(channels=(4, 8, 16), deep_supervision=True),
    "unet_3plus": dict(channels=(4, 8, 16), cat_channels=4),
}


def tiny_model(name: str = "unet", num_classes: int = 1, in_channels: int = 3, **kwargs: object) -> torch.nn.Module:
    """A seeded tiny model of family ``name`` in eval mode."""
    torch.manual_seed(0)
    return create_model(name, in_channels=in_channels, num_classes=num_classes, **{**TINY[name], **kwargs}).eval()


@pytest.fixture
def make_checkpoint(tmp_path: Path) -> Callable[..., Path]:
    """``make_checkpoint(name="unet", num_classes=1, in_channels=3, **model_kwargs)``: path of a checkpoint file.

    The file is ``<run>/checkpoints/last.safetensors``, so ``path.parent.parent`` is a run folder.
    """

    def make(name: str = "unet", num_classes: int = 1, in_channels: int = 3, **kwargs: object) -> Path:
        model_kwargs = {**TINY[name], "in_channels": in_channels, "num_classes": num_classes, **kwargs}
        model = tiny_model(name, num_classes, in_channels, **kwargs)
        classes = ["background"] + [f"class{i}" for i in range(1, max(num_classes, 2))]
        return save_checkpoint(
            tmp_path / "runs" / f"{name}_{num_classes}_{in_channels}" / "checkpoints" / "last.safetensors",
            model,
            config={"model": {"name": name, "kwargs": model_kwargs}},
            extra={"classes": classes, "ignore_index": 255},
        )

    return make
