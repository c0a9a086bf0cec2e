"""Fixtures shared by the whole suite."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml


@pytest.fixture(scope="module")
def single_thread() -> Iterator[None]:
    """One intra-op thread for modules of tiny tensors: extra threads only contend on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def tiny_data(tmp_path: Path) -> Path:
    """A synthetic dataset config: 12 training images of 48 px, 3 val, 3 test (``--size`` resizes them)."""
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({"type": "synthetic", "num_samples": {"train": 12, "val": 3, "test": 3},
                                    "size": 48, "seed": 0}))
    return path


class FixedLabels(torch.nn.Module):
    """A 'model' whose logits (N, K, H, W) are the one-hot of fixed ``labels`` (N, H, W), whatever its input."""

    def __init__(self, labels: torch.Tensor, k: int) -> None:
        super().__init__()
        self.logits = torch.nn.functional.one_hot(labels, k).permute(0, 3, 1, 2).float()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[: x.shape[0]] * self.scale
