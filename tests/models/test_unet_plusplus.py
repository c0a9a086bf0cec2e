"""UNet++: node naming, inference modes and pruning parity."""
from __future__ import annotations

import pytest
import torch

from unetfamily import create_model


@pytest.fixture
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    m = create_model("unet_plusplus", channels=(4, 8, 8, 16, 16), num_classes=2, deep_supervision=True)
    # A few training steps' worth of BatchNorm statistics so eval mode is not the identity.
    with torch.no_grad():
        m.train()(torch.randn(4, 3, 48, 48))
    return m.eval()


def _paper_nodes(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Every node X^{i,j} by its paper name: the encoder's stage i is X^{i,0}."""
    return {**{f"x_{i}_0": stage for i, stage in enumerate(model.encoder.stages)}, **model.nodes}


def _i_plus_j(name: str) -> int:
    return sum(map(int, name.split("_")[1:]))


def test_nodes_follow_the_paper(model: torch.nn.Module) -> None:
    expected = {f"x_{i}_{j}" for i in range(5) for j in range(5) if i + j <= 4}
    assert set(_paper_nodes(model)) == expected
    assert set(model.nodes) == {name for name in expected if not name.endswith("_0")}
    assert set(model.heads) == {"head_1", "head_2", "head_3", "head_4"}


def test_without_deep_supervision_only_the_final_head_is_built() -> None:
    m = create_model("unet_plusplus", channels=(4, 8, 8))
    assert set(m.heads) == {"head_2"}


@pytest.mark.parametrize("size", [(48, 48), (37, 53)])
@pytest.mark.parametrize("level", [1, 2, 3, 4])
def test_pruned_level_equals_full_model_head(model: torch.nn.Module, level: int, size: tuple[int, int]) -> None:
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        full = model(x)  # [head 4, head 3, head 2, head 1]
        head = full[4 - level]
        torch.testing.assert_close(model.forward_level(x, level), head, rtol=0, atol=1e-6)
        small = model.pruned(level)
        torch.testing.assert_close(small(x), head, rtol=0, atol=1e-6)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
    assert set(_paper_nodes(small)) == {k for k in _paper_nodes(model) if _i_plus_j(k) <= level}


def test_pruned_forward_computes_only_needed_nodes(model: torch.nn.Module) -> None:
    called = []
    nodes = _paper_nodes(model)
    hooks = [m.register_forward_hook(lambda mod, i, o, k=k: called.append(k)) for k, m in nodes.items()]
    with torch.no_grad():
        model.forward_level(torch.randn(1, 3, 32, 32), 2)
    for h in hooks:
        h.remove()
    assert sorted(called) == sorted(k for k in nodes if _i_plus_j(k) <= 2)


def test_inference_modes(model: torch.nn.Module) -> None:
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        heads = model(x)
        torch.testing.assert_close(model.predict(x, "accurate"), torch.stack(heads).mean(0))
        torch.testing.assert_close(model.predict(x, "fast"), heads[0])
        torch.testing.assert_close(model.predict(x, "fast", level=2), heads[2])


def test_pruning_without_deep_supervision_is_refused() -> None:
    m = create_model("unet_plusplus", channels=(4, 8, 8))
    with pytest.raises(ValueError, match="deep_supervision=True"):
        m.forward_level(torch.randn(1, 3, 16, 16), 1)
    with pytest.raises(ValueError, match="between 1 and"):
        m.forward_level(torch.randn(1, 3, 16, 16), 3)
