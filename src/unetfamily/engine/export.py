"""Export a trained model to ONNX or TorchScript, and the ``export`` command.

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

After writing, the file is loaded back and compared with PyTorch on random inputs (with
onnxruntime for ONNX, when installed); a mismatch raises :class:`ExportError`.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unetfamily.errors import UnetFamilyError
from unetfamily.models import SegmentationModel, UNetPlusPlus, final_output

__all__ = ["ExportError", "ExportWrapper", "export_model", "add_parser"]

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
    from unetfamily.engine.checkpoint import load_model

    model, ckpt = load_model(checkpoint_or_model, "cpu")
    return model, ckpt.extra


def export_model(
    checkpoint_or_model: SegmentationModel | str | Path,
    out_path: str | Path,
    format: Format = "onnx",
    input_size: int | tuple[int, int] = 256,
    opset: int | None = None,
    dynamic: bool = True,
    level: int | None = None,
    check: bool = True,
) -> Path:
    """Export a model (or the model of a checkpoint file / run folder) to ``out_path``; returns it.

    Args:
        format: "onnx" or "torchscript".
        input_size: (H, W) (or one int) of the example input; the only size TorchScript accepts.
        opset: ONNX opset; None = the exporter's default.
        dynamic: ONNX only: dynamic batch, height and width (else everything fixed, batch 1).
        level: UNet++ only: export the pruned depth-``level`` network (smaller and faster).
        check: reload the file and compare it with PyTorch (ONNX: needs onnxruntime).

    The file is written to a temporary name and renamed, so ``out_path`` is never half-written.
    """
    if format not in ("onnx", "torchscript"):
        raise ValueError(f"format={format!r} is not valid; choose 'onnx' or 'torchscript'")
    model, extra = _as_model(checkpoint_or_model)
    if not isinstance(model, SegmentationModel):
        raise TypeError(f"expected a unetfamily model, got {type(model).__name__}")
    if level is not None:
        if not isinstance(model, UNetPlusPlus):
            raise ValueError(f"level selects a pruned UNet++; this model is a {type(model).__name__}")
        model = model.pruned(level)
    model = model.cpu().eval()
    height, width = (input_size, input_size) if isinstance(input_size, int) else map(int, input_size)
    wrapper = ExportWrapper(model).eval()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
    meta = {
        "num_classes": str(model.num_classes),
        "in_channels": str(model.in_channels),
        "activation": "sigmoid" if model.num_classes == 1 else "softmax",
        "input": "float32 (N, in_channels, H, W) in [0, 1], no mean/std normalisation",
        "classes": json.dumps(extra.get("classes")),
    }
    try:
        if format == "onnx":
            _export_onnx(wrapper, tmp, (height, width), opset, dynamic, meta)
            sizes = [(1, height, width)] + ([(2, height + 3, width + 5)] if dynamic else [])
            if check:
                _check_onnx(wrapper, tmp, sizes)
        else:
            _export_torchscript(wrapper, tmp, (height, width), meta)
            if check:
                _check_torchscript(wrapper, tmp, [(1, height, width), (2, height, width)])
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("exported %s (%s) to %s", type(model).__name__, format, out_path)
    return out_path


def _export_onnx(wrapper: ExportWrapper, path: Path, size: tuple[int, int], opset: int | None, dynamic: bool, meta: dict) -> None:
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
    program.save(path, external_data=False)


def _export_torchscript(wrapper: ExportWrapper, path: Path, size: tuple[int, int], meta: dict) -> None:
    example = torch.rand(1, wrapper.model.in_channels, *size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # jit.trace is deprecated; shape-to-bool warnings are expected (fixed size)
        traced = torch.jit.trace(wrapper, example)
        torch.jit.save(traced, str(path), _extra_files={"unetfamily.json": json.dumps({**meta, "input_size": list(size)})})


def _max_error(expected: Tensor, actual: Tensor) -> float:
    return float((expected - actual).abs().max() / expected.abs().max().clamp(min=1.0))


def _check_onnx(wrapper: ExportWrapper, path: Path, sizes: list[tuple[int, int, int]]) -> None:
    try:
        import onnxruntime as ort
    except ImportError:
        log.warning("onnxruntime is not installed: %s was not checked against PyTorch", path)
        return
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
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


def _check_torchscript(wrapper: ExportWrapper, path: Path, sizes: list[tuple[int, int, int]]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.jit.load(str(path))
    for n, h, w in sizes:
        x = torch.rand(n, wrapper.model.in_channels, h, w)
        with torch.no_grad():
            expected, actual = wrapper(x), loaded(x)
        if actual.shape != expected.shape or _max_error(expected, actual) > 1e-4:
            raise ExportError(f"the TorchScript module does not reproduce PyTorch at input {tuple(x.shape)}; nothing written")


# ----------------------------------------------------------------------------- command line


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``unetfamily export``."""
    p = subparsers.add_parser("export", help="export a checkpoint's model to ONNX or TorchScript")
    p.add_argument("--checkpoint", required=True, help="checkpoint .safetensors file or run folder")
    p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    p.add_argument("--out", required=True, type=Path, help="output file (.onnx / .pt)")
    p.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"),
                   help="example input size; the only size a TorchScript file accepts (256 256)")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    p.add_argument("--static", action="store_true", help="ONNX: fixed batch 1 and --size instead of dynamic axes")
    p.add_argument("--level", type=int, help="UNet++: export the pruned depth-L network")
    p.add_argument("--no-check", action="store_true", help="skip comparing the file with PyTorch")
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from unetfamily.engine.checkpoint import CheckpointError

    try:
        path = export_model(
            args.checkpoint, args.out, args.format, tuple(args.size), args.opset,
            dynamic=not args.static, level=args.level, check=not args.no_check,
        )
    except (CheckpointError, ExportError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    shape = "(N, C, H, W)" if args.format == "onnx" and not args.static else f"(1, C, {args.size[0]}, {args.size[1]})"
    print(f"exported {path} ({args.format}): image {shape} -> logits")
    return 0
