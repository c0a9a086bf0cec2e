"""ONNX and TorchScript export: parity with PyTorch (onnxruntime), dynamic sizes, the ``export`` command."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.engine.conftest import TINY, tiny_model
from unetfamily.cli import main
from unetfamily.engine.export import ExportError, ExportWrapper, export_model
from unetfamily.models import final_output

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def run_onnx(path, x: torch.Tensor) -> torch.Tensor:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(["logits"], {"image": x.numpy()})[0])


@pytest.mark.parametrize("name", list(TINY))
def test_onnx_dynamic_parity_every_family(name: str, tmp_path) -> None:
    kwargs = {"cgm": True, "deep_supervision": True} if name == "unet_3plus" else {}
    model = tiny_model(name, num_classes=1 if name == "unet_3plus" else 3, **kwargs)
    path = export_model(model, tmp_path / f"{name}.onnx", input_size=(32, 32))
    for shape in [(1, 3, 32, 32), (2, 3, 37, 45), (1, 3, 13, 70)]:  # the odd sizes need padding the example did not
        x = torch.rand(shape)
        with torch.no_grad():
            expected = final_output(model(x))
        torch.testing.assert_close(run_onnx(path, x), expected, atol=1e-4, rtol=1e-4)


def test_onnx_metadata_and_static_export(tmp_path, make_checkpoint) -> None:
    import onnx

    path = export_model(make_checkpoint("unet", num_classes=2), tmp_path / "m.onnx", input_size=24, dynamic=False)
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["activation"] == "softmax" and meta["num_classes"] == "2"
    assert json.loads(meta["classes"]) == ["background", "class1"]
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 24, 24]


def test_check_catches_a_graph_frozen_at_the_example_size(tmp_path, monkeypatch) -> None:
    """Exporting the model's own forward freezes its `if pad_h or pad_w` at the example (no padding)."""
    monkeypatch.setattr(ExportWrapper, "forward", lambda self, image: final_output(self.model(image)))
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match="ONNX graph"):
        export_model(tiny_model("unet"), out, input_size=(32, 32))
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.load
def test_torchscript_parity_fixed_size(tmp_path) -> None:
    model = tiny_model("unet_plusplus")
    path = export_model(model, tmp_path / "m.pt", format="torchscript", input_size=(30, 22), level=1)
    loaded = torch.jit.load(str(path))
    x = torch.rand(2, 3, 30, 22)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.forward_level(x, 1), atol=1e-5, rtol=1e-5)


def test_wrapper_matches_model_on_any_size() -> None:
    model = tiny_model("fcn8s", num_classes=2)
    wrapper = ExportWrapper(model)
    for shape in [(1, 3, 32, 64), (2, 3, 33, 7)]:
        x = torch.rand(shape)
        with torch.no_grad():
            torch.testing.assert_close(wrapper(x), model(x))


def test_cli_export_onnx_and_errors(tmp_path, make_checkpoint, capsys) -> None:
    ckpt = make_checkpoint("unet_3plus", cgm=True)
    out = tmp_path / "out" / "model.onnx"
    assert main(["export", "--checkpoint", str(ckpt.parent.parent), "--out", str(out), "--size", "20", "28", "--static"]) == 0
    assert "exported" in capsys.readouterr().out
    assert [p.name for p in out.parent.iterdir()] == ["model.onnx"]  # no temporary file left
    logits = run_onnx(out, torch.rand(1, 3, 20, 28))
    assert logits.shape == (1, 1, 20, 28) and np.isfinite(logits.numpy()).all()

    assert main(["export", "--checkpoint", str(tmp_path / "none"), "--out", str(tmp_path / "e.onnx")]) == 2
    assert "error: " in (err := capsys.readouterr().err) and "none" in err
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "e.onnx"), "--level", "1"]) == 2
    assert "error: level selects a pruned UNet++" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out)]) == 2  # an existing file is not replaced
    assert "--overwrite" in capsys.readouterr().err and [p.name for p in out.parent.iterdir()] == ["model.onnx"]
