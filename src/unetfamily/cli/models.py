"""``unetfamily models``: list the registry, count parameters, try a forward pass."""
from __future__ import annotations

import argparse

from unetfamily.cli._common import EXIT_OK, EXIT_USAGE, command, err, out

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``unetfamily models``."""
    p = command(subparsers, "models", run, help="list the registered models")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'unet*'")
    p.add_argument("--params", action="store_true", help="also count parameters at default settings")
    p.add_argument("--forward", action="store_true",
                   help="run one forward pass per model family at a small width (64x64) and print the output shape")
    p.add_argument("--encoders", action="store_true",
                   help="list the pretrained-architecture encoders (model.kwargs.encoder): parameters, GMACs of one "
                        "256x256 image, feature strides and widths, the torchvision/timm models whose weights load")


def run(args: argparse.Namespace) -> int:
    """List the models matching ``args.pattern`` (or the encoders); exit 2 when none does."""
    import torch

    if args.encoders:
        return _list_encoders()

    from unetfamily.models import create_model, family_kwargs, final_output, list_models

    names = list_models(args.pattern)
    if not names:
        err(f"error: no model matches {args.pattern!r}; `unetfamily models` lists them all")
        return EXIT_USAGE
    for name in names:
        line = name
        if args.params:
            with torch.device("meta"):  # counts paper-width models without allocating them
                model = create_model(name)
            line += f"\t{sum(p.numel() for p in model.parameters()):>13,d} parameters"
        if args.forward and name.endswith(("_voc", "_huang2020", "_zhou2018")):
            line += "\tforward: not run (a paper's exact configuration; the plain model of its family is)"
        elif args.forward:
            model = create_model(name, **family_kwargs(name, 8)).eval()
            with torch.no_grad():
                output = final_output(model(torch.randn(1, model.in_channels, 64, 64)))
            line += f"\tforward 64x64 -> {tuple(output.shape)}"
        out(line)
    return EXIT_OK


def _list_encoders() -> int:
    """One line per encoder: name, parameters, GMACs at 256 x 256, strides, widths, weight layouts."""
    import torch

    from unetfamily.bench import count_flops, count_params, format_gmacs
    from unetfamily.models.encoders import encoder_spec, list_encoders

    out("encoder\tparameters\tGMACs@256\tstrides\twidths\tweights from")
    for name in list_encoders():
        spec = encoder_spec(name)
        with torch.device("meta"):  # counted, never run: no weights allocated or initialised
            backbone = spec.build(3, 5)
        macs = format_gmacs(count_flops(backbone, (1, 3, 256, 256)) / 2)  # 3 significant digits: 0.481, not 0.48
        info = backbone.feature_info
        refs = ", ".join(f"{lib} {model}" for lib, model in spec.reference.items())
        out(f"{name}\t{count_params(backbone):,d}\t{macs}\t{'/'.join(map(str, info.reductions()))}\t"
            f"{'/'.join(map(str, info.channels()))}\t{refs}")
    return EXIT_OK
