"""Record reference encoders' key layouts and features for tests/models/test_encoder_references.py.

Runs only where torchvision and timm import (not the project's environment; on x86_64:
``python -m venv /tmp/ref && /tmp/ref/bin/pip install torch==2.14.1 torchvision==0.29.1 timm``),
from the repository root::

    /tmp/ref/bin/python tools/make_encoder_fixtures.py

For each reference model it fills every state-dict tensor with ``encoder_reference.fill_value``
(float64, seeded by the key), runs the fixed input, and writes
``tests/models/fixtures/encoders/<library>_<model>.json``: the library versions, every key with its
shape, and a summary of each feature the project's encoder returns (found by forward hooks).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import timm
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encoder_reference import INPUT_SHAPES, filled_state, fixture_input, summarize  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "tests" / "models" / "fixtures" / "encoders"
_RESNET_TV, _RESNET_TIMM = ["relu", "layer1", "layer2", "layer3", "layer4"], ["act1", "layer1", "layer2", "layer3", "layer4"]
#: (library, model name, modules whose outputs are the features, input).
REFERENCES = [
    *[("torchvision", n, _RESNET_TV, "encoder") for n in ("resnet18", "resnet34", "resnet50")],
    *[("timm", n, _RESNET_TIMM, "encoder") for n in ("resnet18", "resnet34", "resnet50")],
    ("torchvision", "convnext_tiny", ["features.1", "features.3", "features.5", "features.7"], "encoder"),
    ("timm", "convnext_tiny", ["stages.0", "stages.1", "stages.2", "stages.3"], "encoder"),
    ("torchvision", "efficientnet_b0", ["features.1", "features.2", "features.3", "features.5", "features.7"], "encoder"),
    ("timm", "efficientnet_b0", ["blocks.0", "blocks.1", "blocks.2", "blocks.4", "blocks.6"], "encoder"),
    # The FCN trunk: pool1..pool5, then fc7 after its ReLU (the paper's fc6/fc7 as convolutions).
    ("torchvision", "vgg16", ["features.4", "features.9", "features.16", "features.23", "features.30", "classifier.4"],
     "vgg16"),
]


def _build(library: str, name: str) -> torch.nn.Module:
    if library == "timm":
        return timm.create_model(name, pretrained=False)
    return getattr(torchvision.models, name)(weights=None)


def record(library: str, name: str, modules: list[str], input_kind: str) -> dict:
    """The fixture of one reference model (see the module docstring)."""
    model = _build(library, name).double().eval()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict(filled_state(shapes))
    outputs: dict[str, torch.Tensor] = {}
    for m in modules:
        model.get_submodule(m).register_forward_hook(lambda mod, args, out, m=m: outputs.__setitem__(m, out.clone()))
    shape = INPUT_SHAPES[input_kind]
    with torch.no_grad():
        model(fixture_input(shape))
    return {
        "library": library, "model": name,
        "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__, "timm": timm.__version__},
        "input_shape": list(shape), "modules": modules,
        "keys": [[k, list(s)] for k, s in shapes.items()],
        "features": [summarize(outputs[m]) for m in modules],
    }


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for library, name, modules, kind in REFERENCES:
        path = OUT / f"{library}_{name}.json"
        path.write_text(json.dumps(record(library, name, modules, kind), indent=None) + "\n")
        print(f"wrote {path.relative_to(OUT.parents[3])}")


if __name__ == "__main__":
    main()
