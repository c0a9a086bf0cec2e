"""Input normalisation built into the model (``model.kwargs.input_norm``): every inference path applies it."""
from __future__ import annotations

import copy

import pytest
import torch

from unetfamily import create_model
from unetfamily.errors import ConfigError
from unetfamily.models import final_output

NORM = {"mean": [0.3, 0.6], "std": [0.2, 0.5], "clip": [0.1, 0.9]}
NARROW = {
    "unet": {"channels": (4, 8, 16)},
    "unet_plusplus": {"channels": (4, 8, 16), "deep_supervision": True},
    "unet_3plus": {"channels": (4, 8, 16), "cat_channels": 4},
    "fcn8s": {"channels": (4, 8, 8, 8, 8), "fc_channels": 8},
}


@pytest.fixture(autouse=True)
def _one_thread(single_thread) -> None:  # noqa: ANN001 - the suite's fixture
    return None


def _pair(name: str, norm: dict | None = None) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(plain model, the same weights with input_norm), both in eval mode."""
    kwargs = {"in_channels": 2, "num_classes": 3, **NARROW[name]}
    torch.manual_seed(0)
    plain = create_model(name, **kwargs).eval()
    for param in plain.parameters():  # no zero-initialised layer may hide the input
        param.data.normal_(0.0, 0.3)
    normed = create_model(name, **kwargs, input_norm=norm or NORM).eval()
    missing, unexpected = normed.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["input_norm.mean", "input_norm.std"] and not unexpected
    return plain, normed


def _by_hand(x: torch.Tensor, norm: dict = NORM) -> torch.Tensor:
    mean, std = (torch.tensor(norm[k]).view(1, -1, 1, 1) for k in ("mean", "std"))
    if norm.get("clip") is not None:
        x = x.clamp(*norm["clip"])
    return (x - mean) / std


@pytest.mark.parametrize("name", list(NARROW))
@torch.no_grad()
def test_output_equals_the_model_on_a_normalised_input(name: str) -> None:
    plain, normed = _pair(name)
    x = torch.rand(2, 2, 64, 32) * 1.2 - 0.1  # H, W multiples of every size_multiple: no padding
    torch.testing.assert_close(final_output(normed(x)), final_output(plain(_by_hand(x))))
    assert not torch.allclose(final_output(normed(x)), final_output(plain(x)))


def test_state_dict_gains_only_the_buffers_and_plain_models_are_unchanged() -> None:
    plain, normed = _pair("unet")
    assert set(normed.state_dict()) - set(plain.state_dict()) == {"input_norm.mean", "input_norm.std"}
    assert normed.state_dict()["input_norm.std"].shape == (1, 2, 1, 1)
    assert not hasattr(plain, "input_norm") and not plain.encoder.stages[0]._forward_pre_hooks
    assert normed.input_norm.spec() == {"mean": pytest.approx(NORM["mean"]), "std": pytest.approx(NORM["std"]),
                                        "clip": pytest.approx(NORM["clip"])}


@torch.no_grad()
def test_padding_reads_raw_zero_on_every_path() -> None:
    """Odd sizes are padded first, then normalised: forward, forward_padded and forward_level agree."""
    plain, normed = _pair("unet_plusplus", {"mean": [0.3, 0.6], "std": [0.2, 0.5]})
    x = torch.rand(1, 2, 37, 45)
    padded = torch.nn.functional.pad(x, (0, 3, 0, 3))
    expected = plain.forward_padded(_by_hand(padded, {"mean": [0.3, 0.6], "std": [0.2, 0.5]}))[0][..., :37, :45]
    torch.testing.assert_close(final_output(normed(x)), expected)
    torch.testing.assert_close(final_output(normed.forward_padded(padded))[..., :37, :45], expected)


@torch.no_grad()
def test_unetpp_pruned_levels_and_fast_mode_use_it() -> None:
    from unetfamily.compare.run import _PrunedLevel

    plain, normed = _pair("unet_plusplus")
    x = torch.rand(2, 2, 32, 32)
    for level in (1, 2):
        want = plain.forward_level(_by_hand(x), level)
        torch.testing.assert_close(normed.forward_level(x, level), want)
        torch.testing.assert_close(_PrunedLevel(normed, level)(x), want)
    torch.testing.assert_close(normed.predict(x, mode="fast", level=1), plain.predict(_by_hand(x), "fast", 1))


@torch.no_grad()
def test_unetpp_pruned_copy_keeps_it() -> None:
    plain, normed = _pair("unet_plusplus")
    x = torch.rand(1, 2, 32, 32)
    torch.testing.assert_close(normed.pruned(1)(x), plain.forward_level(_by_hand(x), 1))


@torch.no_grad()
def test_deepcopy_and_device_moves_keep_it() -> None:
    plain, normed = _pair("unet")
    twin = copy.deepcopy(normed).to(torch.float64).to(torch.float32)  # an EMA copy, a dtype round trip
    twin.input_norm.mean.fill_(0.5)  # the copy's hook reads the copy's buffers, not the original's
    x = torch.rand(1, 2, 16, 16)
    torch.testing.assert_close(normed(x), plain(_by_hand(x)))
    moved = {**NORM, "mean": [0.5, 0.5]}
    torch.testing.assert_close(twin(x), plain(_by_hand(x, moved)))


def test_checkpoint_round_trip_and_predictor_and_evaluate(tmp_path) -> None:
    pytest.importorskip("torchmetrics")
    from unetfamily.engine.checkpoint import load_model, save_checkpoint
    from unetfamily.engine.evaluate import evaluate
    from unetfamily.engine.predict import Predictor

    plain, normed = _pair("unet")
    kwargs = {"in_channels": 2, "num_classes": 3, "channels": [4, 8, 16], "input_norm": NORM}
    path = save_checkpoint(tmp_path / "last.safetensors", normed, {"model": {"name": "unet", "kwargs": kwargs}})
    loaded, _ = load_model(path)
    x = torch.rand(2, 2, 32, 32)
    with torch.no_grad():
        want = plain(_by_hand(x))
        torch.testing.assert_close(loaded(x), want)
    torch.testing.assert_close(Predictor.from_checkpoint(path, tile_size=None).logits(x), want)
    mask = torch.randint(0, 3, (2, 32, 32))
    got = evaluate(loaded, [{"image": x, "mask": mask}], "cpu", 3)
    ref = evaluate(plain, [{"image": _by_hand(x), "mask": mask}], "cpu", 3)
    assert got["miou"] == pytest.approx(ref["miou"]) and got["confusion_matrix"] == ref["confusion_matrix"]


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_onnx_and_torchscript_exports_include_it(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from unetfamily.engine.export import export_model

    plain, normed = _pair("unet")
    x = torch.rand(1, 2, 37, 45)  # odd: the exported graph pads as the model does
    path = export_model(normed, tmp_path / "m.onnx", input_size=(37, 45), dynamic=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(["logits"], {"image": x.numpy()})[0])
    with torch.no_grad():
        torch.testing.assert_close(got, normed(x), atol=1e-4, rtol=1e-4)
        assert not torch.allclose(got, plain(x), atol=1e-3)
    ts = export_model(normed, tmp_path / "m.pt", format="torchscript", input_size=(37, 45))
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(ts))(x), normed(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bad, words", [
    ([0.5, 0.5], "must be a mapping"),
    ({"mean": [0.5]}, "missing ['std']"),
    ({"mean": [0.5, 0.5], "std": [1, 1], "scale": 2}, "unknown key(s) ['scale']"),
    ({"mean": [0.5], "std": [1.0]}, "in_channels=2"),
    ({"mean": [0.5, 0.5], "std": [1.0, 0.0]}, "must be > 0"),
    ({"mean": [0.5, float("nan")], "std": [1.0, 1.0]}, "finite numbers"),
    ({"mean": "0.5", "std": [1.0, 1.0]}, "finite numbers"),
    ({"mean": [0.5, 0.5], "std": [1.0, 1.0], "clip": [1.0, 0.0]}, "low < high"),
    ({"mean": [0.5, 0.5], "std": [1.0, 1.0], "clip": [0.0]}, "[low, high]"),
])
def test_bad_input_norm_names_the_key(bad, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        create_model("unet", in_channels=2, channels=(4, 8), input_norm=bad)
    assert "model.kwargs.input_norm" in str(err.value) and words in str(err.value)
