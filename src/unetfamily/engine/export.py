"""Export a trained model to ONNX or TorchScript.

The exported graph maps an image batch ``image`` (N, in_channels, H, W), float in [0, 1], to the
final logits ``logits`` (N, num_classes, H, W): deep-supervision lists and the UNet3+ CGM tuple
are reduced to the final (CGM-gated) segmentation, as :func:`unetfamily.models.final_output`
does. Apply sigmoid (num_classes 1) or softmax yourself; the ONNX file's metadata says which.

ONNX goes through ``torch.onnx.export`` with the ``torch.export`` (dynamo) exporter, which is
the default in torch >= 2.9 and needs ``onnxscript``. Batch, height and width are dynamic by
default and any H, W works, odd ones included. For that the graph pads to the model's
``size_multiple`` unconditionally: the model's own ``if pad_h or pad_w`` would be evaluated once
on the example input and frozen into the graph, which silently breaks every other size (the
exported graph would then fail or crop wrongly on sizes that need padding).

TorchScript uses ``torch.jit.trace`` (deprecated upstream in favour of ``torch.export``): sizes
are frozen at trace time, so the file accepts only ``input_size`` (any batch).

Before anything is written, the exported bytes are loaded back and compared with PyTorch on
random inputs (with onnxruntime for ONNX, when installed); a mismatch raises
:class:`ExportError`. The file is then written atomically (:func:`unetfamily.files.atomic_write_bytes`).
"""
from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unetfamily.config import Range
from unetfamily.errors import ConfigError, UnetFamilyError
from unetfamily.files import atomic_write_bytes
from unetfamily.models import SegmentationModel, UNetPlusPlus, final_output

__all__ = ["ExportError", "ExportWrapper", "export_model", "supported_opsets"]

log = logging.getLogger(__name__)

Format = Literal["onnx", "torchscript"]


class ExportError(UnetFamilyError, RuntimeError):
    """Export failed or the exported file does not reproduce the PyTorch model."""


class ExportWrapper(nn.Module):
    """(N, C, H, W) image -> final logits (N, K, H, W), with shape-independent padding.

    Pads bottom/right to ``model.size_multiple`` with amounts computed from the input's shape
    (zero when already a multiple), runs ``model.forward_padded`` and crops back, with no Python
    branch on the shape, so a traced or exported graph stays correct for every H, W.
    """

    def __init__(self, model: SegmentationModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> Tensor:
        height, width = image.shape[-2], image.shape[-1]
        m = self.model.size_multiple
        padded = F.pad(image, (0, (m - width % m) % m, 0, (m - height % m) % m))
        return final_output(self.model.forward_padded(padded))[..., :height, :width]


def _as_model(checkpoint_or_model: SegmentationModel | str | Path) -> tuple[SegmentationModel, dict]:
    if isinstance(checkpoint_or_model, nn.Module):
        return checkpoint_or_model, {}
    from unetfamily.data import data_geometry
    from unetfamily.engine.checkpoint import load_model

    model, ckpt = load_model(checkpoint_or_model, "cpu")
    data = ckpt.config.get("data") if isinstance(ckpt.config, dict) else None
    geometry = data_geometry(data)  # a cross-validated run keeps data.resize in its cv_fold's base
    return model, {**ckpt.extra, "scale": geometry["scale"], "resize": geometry["resize"]}


def _metadata(model: SegmentationModel, extra: dict) -> dict[str, str]:
    """What the exported file says about its input and output (ONNX metadata_props, TorchScript extra file)."""
    meta = {
        "num_classes": str(model.num_classes),
        "in_channels": str(model.in_channels),
        "activation": "sigmoid" if model.num_classes == 1 else "softmax",
        "input": "float32 (N, in_channels, H, W) in [0, 1]; " + (
            "the model applies its mean/std normalisation itself" if getattr(model, "input_norm", None) is not None
            else "no mean/std normalisation"),
        "classes": json.dumps(extra.get("classes")),
    }
    for key in ("scale", "resize"):  # the training images' geometry (data.scale / data.resize): resize inputs alike
        if extra.get(key):
            meta[key] = json.dumps(extra[key])
    return meta


def export_model(
    checkpoint_or_model: SegmentationModel | str | Path,
    out_path: str | Path,
    format: Format = "onnx",
    input_size: int | tuple[int, int] = 256,
    opset: int | None = None,
    dynamic: bool = True,
    level: int | None = None,
    check: bool = True,
    names: Mapping[str, str] | None = None,
) -> Path:
    """Export a model (or the model of a checkpoint file / run folder) to ``out_path``; returns it.

    Args:
        format: "onnx" or "torchscript".
        input_size: (H, W) (or one int) of the example input; the only size TorchScript accepts.
        opset: ONNX opset, one of :func:`supported_opsets`; None = the exporter's default. The
            written file has exactly this opset, or nothing is written.
        dynamic: ONNX only: dynamic batch, height and width (else everything fixed, batch 1).
        level: UNet++ only: export the pruned depth-``level`` network (smaller and faster).
        check: load the exported graph back and compare it with PyTorch (ONNX: needs onnxruntime).
        names: how errors name the options (the CLI passes ``{"opset": "--opset", ...}``).

    Nothing is written when the export or the check fails (:class:`ExportError`); unusable
    options raise :class:`~unetfamily.errors.ConfigError`. The file is written atomically.
    """
    name = {**{k: k for k in ("format", "input_size", "opset", "level")}, **(names or {})}
    height, width = _checked_options(format, input_size, opset, name)
    model, extra = _as_model(checkpoint_or_model)
    if not isinstance(model, SegmentationModel):
        raise TypeError(f"expected a unetfamily model, got {type(model).__name__}")
    if level is not None:
        model = _pruned(model, level, name["level"])
    model = model.cpu().eval()
    wrapper = ExportWrapper(model).eval()
    meta = _metadata(model, extra)
    if format == "onnx":
        data = _export_onnx(wrapper, (height, width), opset, dynamic, meta)
        if opset is not None and _written_opset(data) != opset:
            raise ExportError(f"the exporter wrote opset {_written_opset(data)}, not the {name['opset']}={opset} asked "
                              "for; nothing written")
        if check:
            _check_onnx(wrapper, data, [(1, height, width)] + ([(2, height + 3, width + 5)] if dynamic else []))
    else:
        data = _export_torchscript(wrapper, (height, width), meta)
        if check:
            _check_torchscript(wrapper, data, [(1, height, width), (2, height, width)])
    out_path = Path(out_path)
    try:
        atomic_write_bytes(out_path, data)
    except OSError as exc:
        raise ExportError(f"cannot write {out_path}: {exc.strerror or exc}; choose another output path") from exc
    log.info("exported %s (%s) to %s", type(model).__name__, format, out_path)
    return out_path


def _checked_options(format: str, input_size: int | tuple[int, int], opset: int | None,
                     name: Mapping[str, str]) -> tuple[int, int]:
    """(height, width) of the example input, once the format, size and opset are known to be usable."""
    if format not in ("onnx", "torchscript"):
        raise ConfigError(f"{name['format']}={format!r} is not valid; choose 'onnx' or 'torchscript'")
    height, width = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    for side in (height, width):
        Range(ge=1, integer=True)(name["input_size"], side)
    if opset is not None:
        _check_opset(opset, format, name["opset"])
    return height, width


def _pruned(model: SegmentationModel, level: int, option: str) -> SegmentationModel:
    if not isinstance(model, UNetPlusPlus):
        raise ConfigError(f"level selects a pruned UNet++; this model is a {type(model).__name__}: leave {option} out")
    try:
        return model.pruned(level)
    except ValueError as exc:  # a level the model does not have
        raise ConfigError(f"{option}={level}: {exc}") from exc


def supported_opsets() -> tuple[int, int]:
    """(lowest, highest) ONNX opset this installation can export: torch's exporter's base opset to onnx's newest."""
    try:
        from torch.onnx._internal.exporter._constants import TORCHLIB_OPSET as lowest
    except ImportError:  # the private constant moved: the exporter's documented minimum
        lowest = 18
    try:
        import onnx
    except ImportError as exc:
        raise ExportError(f"ONNX export needs onnx and onnxscript: pip install 'unetfamily[export]' ({exc})") from exc
    return int(lowest), int(onnx.defs.onnx_opset_version())


def _check_opset(opset: int, format: str, option: str) -> None:
    """Refuse an opset for TorchScript, and one the exporter cannot write (it would silently write another)."""
    if format != "onnx":
        raise ConfigError(f"{option} applies to ONNX files; a {format} file has no opset: leave {option} out")
    lowest, highest = supported_opsets()
    if isinstance(opset, bool) or not isinstance(opset, int) or not lowest <= opset <= highest:
        raise ConfigError(f"{option}={opset!r} cannot be exported: torch {torch.__version__.split('+')[0]} with this "
                          f"onnx writes opsets {lowest} to {highest}; choose one of them, or leave {option} out for "
                          "the exporter's default")


def _written_opset(data: bytes) -> int:
    """The default-domain opset of a serialised ONNX model."""
    import onnx

    proto = onnx.load_model_from_string(data)
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def _export_onnx(wrapper: ExportWrapper, size: tuple[int, int], opset: int | None, dynamic: bool, meta: dict) -> bytes:
    example = torch.rand(2 if dynamic else 1, wrapper.model.in_channels, *size)  # batch 2: a 1 would be specialised
    shapes = None
    if dynamic:
        dims = torch.export.Dim("batch"), torch.export.Dim("height"), torch.export.Dim("width")
        shapes = {"image": {0: dims[0], 2: dims[1], 3: dims[2]}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", (FutureWarning, DeprecationWarning))
        try:
            program = torch.onnx.export(
                wrapper, (example,), None, input_names=["image"], output_names=["logits"],
                opset_version=opset, dynamo=True, dynamic_shapes=shapes, external_data=False, verbose=False,
            )
        except ImportError as exc:
            raise ExportError(f"ONNX export needs onnx and onnxscript: pip install 'unetfamily[export]' ({exc})") from exc
        except Exception as exc:  # the exporter raises many types; name what was being exported
            raise ExportError(f"torch.onnx.export failed for {type(wrapper.model).__name__}: {exc}") from exc
    program.model.metadata_props.update(meta)
    return program.model_proto.SerializeToString()


def _export_torchscript(wrapper: ExportWrapper, size: tuple[int, int], meta: dict) -> bytes:
    example = torch.rand(1, wrapper.model.in_channels, *size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # jit.trace is deprecated; shape-to-bool warnings are expected (fixed size)
        traced = torch.jit.trace(wrapper, example)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files={"unetfamily.json": json.dumps({**meta, "input_size": list(size)})})
    return buffer.getvalue()


def _max_error(expected: Tensor, actual: Tensor) -> float:
    return float((expected - actual).abs().max() / expected.abs().max().clamp(min=1.0))


def _check_onnx(wrapper: ExportWrapper, data: bytes, sizes: list[tuple[int, int, int]]) -> None:
    try:
        import onnxruntime as ort
    except ImportError:
        log.warning("onnxruntime is not installed: the ONNX graph was not checked against PyTorch")
        return
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    for n, h, w in sizes:
        x = torch.rand(n, wrapper.model.in_channels, h, w)
        with torch.no_grad():
            expected = wrapper(x)
        try:
            actual = torch.from_numpy(session.run(["logits"], {"image": x.numpy()})[0])
        except Exception as exc:  # onnxruntime's own error types
            raise ExportError(f"the ONNX graph fails at input {tuple(x.shape)} ({exc}); nothing written") from exc
        if actual.shape != expected.shape or _max_error(expected, actual) > 1e-4:
            raise ExportError(f"the ONNX graph does not reproduce PyTorch at input {tuple(x.shape)}; nothing written")


def _check_torchscript(wrapper: ExportWrapper, data: bytes, sizes: list[tuple[int, int, int]]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.jit.load(io.BytesIO(data))
    for n, h, w in sizes:
        x = torch.rand(n, wrapper.model.in_channels, h, w)
        with torch.no_grad():
            expected, actual = wrapper(x), loaded(x)
        if actual.shape != expected.shape or _max_error(expected, actual) > 1e-4:
            raise ExportError(f"the TorchScript module does not reproduce PyTorch at input {tuple(x.shape)}; nothing written")
