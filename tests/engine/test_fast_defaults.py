"""The default training step's fast path (docs/speed.md, "The defaults"): each shortcut is exact.

Fused optimizer, clipping only when needed, a cheap finiteness check of the weights, and the
memory format chosen by the measured rule (``train.channels_last: auto``).
"""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from unetfamily.config import config_from_dict
from unetfamily.engine.loop import _clip, _nonfinite_flag, _nonfinite_weights
from unetfamily.engine.run_setup import setup_run
from unetfamily.errors import ConfigError
from unetfamily.models import prefers_channels_last
from unetfamily.models.layout import CPU_CHANNELS_LAST_FROM

CPU = torch.device("cpu")


def _grads(scale: float) -> list[nn.Parameter]:
    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(shape)) for shape in ((8, 4, 3, 3), (8,), (3, 8, 1, 1))]
    for p in params:
        p.grad = torch.randn_like(p) * scale
    return params


@pytest.mark.parametrize("scale", [1e-3, 0.3, 10.0])  # far below, near, far above the limit of 1
def test_clipping_only_when_needed_equals_clip_grad_norm_bit_for_bit(scale: float) -> None:
    ours, reference = _grads(scale), _grads(scale)
    norm = nn.utils.get_total_norm([p.grad for p in ours])
    _clip(ours, norm, 1.0)
    nn.utils.clip_grad_norm_(reference, 1.0)
    for a, b in zip(ours, reference):
        assert torch.equal(a.grad, b.grad)
    if scale == 10.0:
        assert float(nn.utils.get_total_norm([p.grad for p in ours])) == pytest.approx(1.0, rel=1e-5)


def test_no_clipping_leaves_the_gradients_alone() -> None:
    params = _grads(10.0)
    before = [p.grad.clone() for p in params]
    _clip(params, nn.utils.get_total_norm([p.grad for p in params]), None)
    assert all(torch.equal(p.grad, b) for p, b in zip(params, before))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 3e30, -3e30, 0.0])
def test_cheap_weight_check_agrees_with_the_exact_one(bad: float) -> None:
    # 3e30 squared overflows float32: the cheap 2-norm alarms, the exact check must clear it.
    weights = [torch.randn(64, 32), torch.randn(10)]
    weights[1][3] = bad
    assert bool(_nonfinite_weights(weights, CPU)) == bool(_nonfinite_flag(weights, CPU)) == (
        not torch.isfinite(torch.tensor(bad)).item())


def _config(tmp_path: Path, model: str, size: int, **train: object) -> dict:
    kwargs = {"fcn8s": {"channels": [4, 8, 8, 16, 16], "fc_channels": 16}}.get(model, {"channels": [2, 4]})
    return {"model": {"name": model, "kwargs": kwargs}, "loader": {"batch_size": 2},
            "data": {"type": "synthetic", "num_samples": 4, "size": size},
            "train": {"progress": False, "loggers": [], **train}, "output_dir": str(tmp_path / "run")}


@pytest.mark.parametrize("model,size", [("unet", 64), ("unet", 256), ("unet_plusplus", 128), ("fcn8s", 256)])
def test_auto_memory_format_follows_the_rule_and_is_logged(tmp_path: Path, model: str, size: int,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="unetfamily"):
        run = setup_run(config_from_dict(_config(tmp_path, model, size)))
    try:
        chosen, why = prefers_channels_last(model, CPU, (size, size))
        assert run.channels_last is chosen
        assert chosen is (model != "fcn8s" and size * size >= CPU_CHANNELS_LAST_FROM[model])
        assert chosen is ((model, size) in (("unet", 256), ("unet_plusplus", 128)))
        conv = next(m for m in run.model.modules() if isinstance(m, nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last if chosen else torch.contiguous_format)
        assert f"train.channels_last auto -> {str(chosen).lower()}: {why}" in caplog.text
        assert run.optimizer.defaults["fused"] is True  # torch's fused AdamW on CPU
    finally:
        run.close("done")


@pytest.mark.parametrize("size", [128, 256])
def test_unet_plusplus_rerun_is_logged_at_its_sizes(tmp_path: Path, size: int, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="unetfamily"):
        run = setup_run(config_from_dict(_config(tmp_path, "unet_plusplus", size)))
    run.close("done")
    logged = "train.memory_saving recompute: 256x256 inputs: UNet++ also re-runs the nested nodes" in caplog.text
    assert logged is (size == 256)


@pytest.mark.parametrize("forced", [True, False])
def test_an_explicit_memory_format_is_kept(tmp_path: Path, forced: bool) -> None:
    run = setup_run(config_from_dict(_config(tmp_path, "fcn8s", 64, channels_last=forced)))
    try:
        assert run.channels_last is forced
    finally:
        run.close("done")


def test_the_rule_per_device_family_and_size() -> None:
    assert prefers_channels_last("unet_3plus", "cuda", (64, 64), "bf16")[0]
    assert not prefers_channels_last("unet", "cpu", (128, 128))[0]
    assert prefers_channels_last("unet_3plus", "cpu", (128, 128))[0]
    assert not prefers_channels_last("unet_3plus", "cpu", (96, 128))[0]
    assert not prefers_channels_last("unet_3plus", "cuda", (512, 512))[0]
    assert not prefers_channels_last("unet", "mps", (512, 512))[0]
    assert not prefers_channels_last("fcn8s_voc", "cpu", (512, 512))[0]
    assert prefers_channels_last("unet_plusplus_huang2020", "cpu", (512, 512))[0]


@pytest.mark.parametrize("value", ["yes", 1, 0, None])
def test_the_config_takes_auto_true_or_false_only(value: object) -> None:
    for good in ("auto", True, False):
        assert config_from_dict({"train": {"channels_last": good}}).train.channels_last is good
    with pytest.raises(ConfigError, match=rf"train.channels_last={value!r} is not valid; choose one of 'auto', True, False"):
        config_from_dict({"train": {"channels_last": value}})


def test_amp_auto_is_fp32_on_cpu_and_bf16_only_where_cuda_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from unetfamily.engine.device import resolve_amp

    assert resolve_amp("auto", CPU)[0] == "none"
    assert resolve_amp("bf16", CPU)[0] == "bf16"
    for has_bf16, expected in ((True, "bf16"), (False, "none")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda has=has_bf16: has)
        assert resolve_amp("auto", torch.device("cuda"))[0] == expected


def test_a_run_saved_with_amp_none_resumes_under_the_new_auto_default(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    from unetfamily.engine.train import fit

    old = _config(tmp_path, "unet", 32, amp="none", epochs=1)
    fit(config_from_dict(old))
    new = _config(tmp_path, "unet", 32, epochs=2)  # amp left to its default, "auto" (= none on CPU)
    with caplog.at_level(logging.INFO, logger="unetfamily"):
        summary = fit(config_from_dict(new), resume=True)
    assert summary.steps == 4 and "train.amp" not in caplog.text  # no change logged: the same computation
    with pytest.raises(Exception, match="train.amp 'none' -> 'bf16'"):
        fit(config_from_dict(_config(tmp_path, "unet", 32, amp="bf16", epochs=3)), resume=True)
