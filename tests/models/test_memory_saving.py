"""Memory saving (``set_memory_saving``): the fast path gives the plain path's results, and less memory."""
from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import torch

from tests.models.conftest import DEEP_SUPERVISION, SMALL
from unetfamily import create_model
from unetfamily.bench import memory_env
from unetfamily.models import SegmentationModel

pytestmark = pytest.mark.usefixtures("single_thread")


def _flat(out: object) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for o in out for t in _flat(o)]


def _train_step(model: SegmentationModel, mode: str, x: torch.Tensor, amp: bool = False) -> dict[str, list[torch.Tensor]]:
    """Outputs, gradients and buffers after one forward/backward of a copy of ``model`` under ``mode``."""
    model = copy.deepcopy(model).train().set_memory_saving(mode)
    torch.manual_seed(1)  # dropout (FCN) draws the same masks in every mode
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        outs = _flat(model(x))
    sum((o.float() * torch.linspace(-1, 1, o.numel()).view_as(o)).mean() for o in outs).backward()
    return {
        "outputs": [o.detach() for o in outs],
        "grads": [p.grad for p in model.parameters()],
        "buffers": [b.clone() for b in model.buffers()],
    }


def _kwargs(name: str) -> dict:
    return {**SMALL[name], **({"deep_supervision": True} if name in DEEP_SUPERVISION else {})}


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("mode", ["recompute", "checkpoint"])
def test_memory_saving_is_bit_identical_to_plain(name: str, mode: str) -> None:
    """Outputs, every gradient and BatchNorm running statistics equal the plain path's bit for bit."""
    model = create_model(name, **_kwargs(name))
    x = torch.randn(2, 3, 45, 38)
    plain, saving = _train_step(model, "none", x), _train_step(model, mode, x)
    for key in plain:
        assert all(torch.equal(a, b) for a, b in zip(plain[key], saving[key])), key


def test_checkpoint_groups_of_channels_match_the_whole_computation() -> None:
    """Above 128 channels UNet3+'s "checkpoint" sums the up-sampled branch conv by channel groups."""
    model = create_model("unet_3plus", channels=(4, 8, 8, 16, 160), cat_channels=4, deep_supervision=True)
    x = torch.randn(2, 3, 32, 32)
    plain, saving = _train_step(model, "none", x), _train_step(model, "checkpoint", x)
    for key in plain:
        # conv biases before BatchNorm have a zero true gradient (float noise): scale atol by the largest value
        scale = max(a.abs().max().item() for a in plain[key])
        for a, b in zip(plain[key], saving[key]):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5 * scale)


def test_recompute_is_bit_identical_under_bf16_autocast() -> None:
    model = create_model("unet_3plus", **_kwargs("unet_3plus"))
    x = torch.randn(2, 3, 32, 32)
    plain, saving = _train_step(model, "none", x, amp=True), _train_step(model, "recompute", x, amp=True)
    for key in plain:
        assert all(torch.equal(a, b) for a, b in zip(plain[key], saving[key])), key


def test_recompute_supports_double_backward() -> None:
    """create_graph=True (e.g. a gradient penalty) differentiates through the recomputed tensors."""
    model = create_model("unet", **SMALL["unet"])
    x = torch.randn(2, 3, 16, 16)
    results = []
    for mode in ("none", "recompute"):
        m = copy.deepcopy(model).set_memory_saving(mode)
        xi = x.clone().requires_grad_()
        (g,) = torch.autograd.grad(m(xi).square().mean(), xi, create_graph=True)
        g.square().sum().backward()
        results.append([p.grad.clone() for p in m.parameters()])
    for a, b in zip(*results):
        torch.testing.assert_close(b, a)


def test_grouped_resize_conv_gradcheck() -> None:
    from unetfamily.models.unet_3plus import _ResizeConv

    x = torch.randn(1, 5, 3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 5, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    for group in (None, 2):  # whole, and several groups with the last one partial
        assert torch.autograd.gradcheck(lambda x, w, b: _ResizeConv.apply(x, torch.Size([6, 8]), w, b, group), (x, w, b))


def test_inference_is_unaffected() -> None:
    model = create_model("unet_plusplus", **SMALL["unet_plusplus"]).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        outs = [copy.deepcopy(model).set_memory_saving(m)(x) for m in ("none", "recompute", "checkpoint")]
    assert all(torch.equal(outs[0], o) for o in outs[1:])


def test_bad_mode_names_the_argument() -> None:
    with pytest.raises(ValueError, match="memory_saving"):
        create_model("unet", **SMALL["unet"]).set_memory_saving("fast")


_PEAK = """
import json, sys, torch
from unetfamily import create_model
from unetfamily.bench import measure
torch.set_num_threads(1)
name, kwargs, mode = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
model = create_model(name, **kwargs).set_memory_saving(mode)
cost = measure(model, (2, 3, 128, 128), timing=False, train=True)
print(cost.train_peak_bytes)
"""


def _train_peak(name: str, kwargs: dict, mode: str) -> int:
    proc = subprocess.run([sys.executable, "-c", _PEAK, name, json.dumps(kwargs), mode],
                          capture_output=True, text=True, env=memory_env(), check=True)
    return int(proc.stdout.split()[-1])


@pytest.mark.parametrize("name,kwargs,recompute_max,checkpoint_max", [
    ("unet_3plus", {"channels": [16, 32, 64, 128, 256], "cat_channels": 16}, 0.75, 0.6),
    ("unet_plusplus", {"channels": [16, 32, 64, 128, 256]}, 0.8, 0.6),
])
def test_memory_saving_lowers_peak_training_memory(name: str, kwargs: dict, recompute_max: float,
                                                   checkpoint_max: float) -> None:
    """Peak resident-memory rise of a train step, each mode in a fresh process (bench.memory_env)."""
    plain = _train_peak(name, kwargs, "none")
    assert _train_peak(name, kwargs, "recompute") < recompute_max * plain
    assert _train_peak(name, kwargs, "checkpoint") < checkpoint_max * plain


def test_unet_plusplus_reruns_its_finest_rows_from_the_rule_size_bit_identically(monkeypatch: pytest.MonkeyPatch) -> None:
    """From RERUN_FROM_PIXELS, "recompute" re-runs the nested nodes of the RERUN_ROWS finest rows in backward:
    each of their convolutions runs twice, the others once, and every output, gradient and BatchNorm statistic
    equals the plain path's bit for bit (the re-run does not update the running statistics twice)."""
    import unetfamily.models.unet_plusplus as upp

    model = create_model("unet_plusplus", channels=(4, 8, 8, 16, 16), norm="batch", deep_supervision=True)
    x = torch.randn(2, 3, 45, 38)
    monkeypatch.setattr(upp, "RERUN_FROM_PIXELS", 45 * 38)
    calls: dict[str, int] = {}
    for name, module in model.nodes.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(lambda m, i, o, name=name: calls.__setitem__(name, calls.get(name, 0) + 1))
    saving = _train_step(model, "recompute", x)
    rows = {name: int(name.split("_")[1]) for name in calls}
    assert {n: c for n, c in calls.items()} == {n: 2 if rows[n] < upp.RERUN_ROWS else 1 for n in calls}
    calls.clear()
    plain = _train_step(model, "none", x)
    assert set(calls.values()) == {1}
    for key in plain:
        assert all(torch.equal(a, b) for a, b in zip(plain[key], saving[key])), key


def test_unet_plusplus_rerun_rule_and_its_note() -> None:
    from unetfamily.models.unet_plusplus import RERUN_ROWS, rerun_rows

    assert rerun_rows((256, 256)) == RERUN_ROWS == 2 and rerun_rows((255, 256)) == 0 and rerun_rows((512, 128)) == 2
    model = create_model("unet_plusplus", channels=(4, 8, 8))
    assert "re-runs the nested nodes of its 2 finest rows" in model.memory_saving_note((256, 256))
    assert model.memory_saving_note((128, 128)) is None
    assert model.set_memory_saving("none").memory_saving_note((256, 256)) is None
    assert model.set_memory_saving("checkpoint").memory_saving_note((256, 256)) is None  # every node re-runs
    assert create_model("unet", channels=(4, 8)).memory_saving_note((512, 512)) is None
