"""``unetfamily export``: a checkpoint's model as an ONNX or TorchScript file, or a model folder others load."""
from __future__ import annotations

import argparse
from pathlib import Path

from unetfamily.cli._common import AT_LEAST_ONE, EXIT_OK, check_options, command, out, refuse_existing_output
from unetfamily.errors import ConfigError

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``unetfamily export``."""
    p = command(subparsers, "export", run, help="export a checkpoint's model to ONNX, TorchScript or a model folder")
    p.add_argument("--checkpoint", required=True, help="checkpoint .safetensors file or run folder")
    p.add_argument("--format", choices=["onnx", "torchscript", "pretrained"], default="onnx",
                   help="file format; pretrained: a folder (config.json, model.safetensors, README.md model card) "
                        "that unetfamily.from_pretrained loads and the Hugging Face Hub takes")
    p.add_argument("--out", required=True, type=Path, help="output file (.onnx / .pt), or folder (pretrained)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"),
                   help="example input size (none given: 256 256); the only size a TorchScript file accepts")
    p.add_argument("--opset", type=int, help="ONNX opset; the file has exactly this one or nothing is written (none: "
                   "the exporter's default; an opset it cannot write is refused, naming the ones it can)")
    p.add_argument("--static", action="store_true", help="ONNX: fixed batch 1 and --size instead of dynamic axes "
                   "(TorchScript files are always fixed to --size)")
    p.add_argument("--level", type=int, help="UNet++: export the pruned depth-L network (refused for other models)")
    p.add_argument("--no-check", action="store_true", help="skip comparing the exported graph (pretrained: the "
                   "reloaded folder) with PyTorch")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def run(args: argparse.Namespace) -> int:
    """Export and print what the file takes and returns."""
    from unetfamily.engine.export import export_model

    if args.format == "pretrained":
        return _pretrained(args)
    args.size = args.size or [256, 256]
    check_options(args, size=AT_LEAST_ONE)
    refuse_existing_output("--out", args.out, args.overwrite)
    if args.format == "torchscript" and args.static:
        raise ConfigError("--static applies to ONNX files; a TorchScript file is always fixed to --size: "
                          "leave --static out")
    path = export_model(args.checkpoint, args.out, args.format, tuple(args.size), args.opset,
                        dynamic=not args.static, level=args.level, check=not args.no_check,
                        names={"format": "--format", "input_size": "--size", "opset": "--opset", "level": "--level"})
    dynamic = args.format == "onnx" and not args.static
    shape = "(N, C, H, W)" if dynamic else f"(1, C, {args.size[0]}, {args.size[1]})"
    out(f"exported {path} ({args.format}): image {shape} -> logits")
    return EXIT_OK


def _pretrained(args: argparse.Namespace) -> int:
    """``--format pretrained``: the model folder; the graph options are refused, as they cannot apply."""
    from unetfamily.engine.pretrained import export_pretrained

    given = [flag for flag, value in (("--size", args.size), ("--opset", args.opset), ("--static", args.static or None),
                                      ("--level", args.level)) if value is not None]
    if given:
        raise ConfigError(f"{', '.join(given)} appl{'y' if len(given) > 1 else 'ies'} to ONNX and TorchScript files; a "
                          "pretrained folder keeps the whole model (any input size, every output): leave "
                          f"{'them' if len(given) > 1 else 'it'} out")
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out} is a file; --format pretrained writes a folder: give a folder name")
    refuse_existing_output("--out", args.out, args.overwrite)
    folder = export_pretrained(args.checkpoint, args.out, check=not args.no_check)
    out(f"exported {folder} (pretrained): config.json, model.safetensors, README.md; load it with "
        f"unetfamily.from_pretrained({str(folder)!r})")
    return EXIT_OK
