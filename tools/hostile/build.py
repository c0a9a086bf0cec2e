"""Setups and command lines the catalogue shares.

A setup is a function of a :class:`~.workspace.Ctx`; the builders here return such functions
(``config_with(train={"epochs": 2})``), so a case reads as one line: what it writes, what it runs.
"""
from __future__ import annotations

import json
import struct
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .model import Case, Expect
from .workspace import SYNTHETIC, Ctx

__all__ = ["case", "steps", "tiny", "trained", "trained_multi", "with_images", "config_with", "folder_config",
           "compare_argv", "compare_data", "bench_argv", "poison_checkpoint", "labelme_doc", "labelme_folder",
           "COMPARE_DATA", "Setup"]

Setup = Callable[[Ctx], Any]
#: Synthetic data with a test split, for compare: 4 train, 2 val, 2 test images of 32 px.
COMPARE_DATA = {**SYNTHETIC, "num_samples": {"train": 4, "val": 2, "test": 2}}


def case(name: str, klass: str, topic: str, argv: str | Sequence[str], expect: Expect, setup: Setup | None = None,
         **options: Any) -> Case:
    """A :class:`Case`; a string ``argv`` is split on whitespace."""
    return Case(name, klass, topic, tuple(argv.split() if isinstance(argv, str) else argv), expect, setup, **options)


def steps(*setups: Setup) -> Setup:
    """Setups run one after the other."""
    def run(ctx: Ctx) -> None:
        for s in setups:
            s(ctx)
    return run


def tiny(ctx: Ctx) -> None:
    """``c.yaml``: the tiny config (2 steps into ``exp1``)."""
    ctx.config()


def config_with(rel: str = "c.yaml", data: dict | None = None, **sections: Any) -> Setup:
    return lambda ctx: ctx.config(rel, data, **sections)


def trained(ctx: Ctx) -> None:
    """A trained binary run ``exp1/`` and its ``c.yaml``."""
    ctx.trained("binary")


def trained_multi(ctx: Ctx) -> None:
    """A trained 4-class run ``exp1/`` and its ``c.yaml``."""
    ctx.trained("multiclass")


def with_images(*names: str, channels: int = 1) -> Setup:
    """Gray 32 px images under the case folder (``imgs/a0.png`` ...)."""
    def run(ctx: Ctx) -> None:
        for i, name in enumerate(names):
            ctx.image(name, 32, channels, seed=i)
    return run


def folder_config(rel: str = "c.yaml", config: dict | None = None, **folder: Any) -> Setup:
    """A folder dataset (``data/``, see :meth:`Ctx.folder_data`) and a tiny config training on it.

    ``folder`` keys that are not ``folder_data`` arguments are dataset options (``strict``, ...).
    """
    def run(ctx: Ctx) -> None:
        data = ctx.folder_data(**folder)
        ctx.config(rel, data, **(config or {}))
    return run


def compare_argv(*extra: str, out: str = "rep", data: str = "cmp.yaml", budget: Sequence[str] = ("--steps", "1"),
                 models: str = "unet") -> list[str]:
    """The smallest comparison: one U-Net of width 4, one seed, one step, 32 px, no cost measurement."""
    argv = ["compare", "--data", data, "--models", models, "--seeds", "1", *budget, "--base-width", "4",
            "--size", "32", "--batch-size", "2", "--no-costs", "--out", out]
    return [*argv, *extra]


def compare_data(ctx: Ctx) -> None:
    ctx.yaml("cmp.yaml", COMPARE_DATA)


def bench_argv(*extra: str) -> list[str]:
    """The smallest benchmark: U-Net of width 4 at 32 px, one repeat, inference only, on the CPU."""
    return ["bench", "--models", "unet", "--size", "32", "--width", "4", "--repeats", "1", "--no-train",
            "--device", "cpu", *extra]


def poison_checkpoint(rel: str, value: float = float("nan")) -> Setup:
    """Write ``value`` into the first weight of ``rel`` (a safetensors checkpoint), header untouched."""
    def run(ctx: Ctx) -> None:
        path = ctx.p(rel)
        data = bytearray(path.read_bytes())
        (size,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8: 8 + size])
        name = next(k for k, v in header.items() if k.startswith("model.") and v.get("dtype") == "F32")
        start = 8 + size + header[name]["data_offsets"][0]
        data[start: start + 4] = np.float32(value).tobytes()
        path.write_bytes(bytes(data))
    return run


def labelme_doc(image: str = "a.png", label: str = "cell", points: list | None = None,
                shape_type: str = "polygon") -> dict[str, Any]:
    """A labelme document for a 32 px image referenced by ``imagePath``."""
    return {
        "version": "5.4.1", "flags": {}, "imagePath": image, "imageData": None, "imageHeight": 32, "imageWidth": 32,
        "shapes": [{"label": label, "points": points or [[4, 4], [20, 4], [20, 20], [4, 20]], "group_id": None,
                    "shape_type": shape_type, "flags": {}}],
    }


def labelme_folder(folder: str = "ann", label: str = "cell") -> Setup:
    """``folder/a.json`` + ``folder/a.png``: one labelled image."""
    def run(ctx: Ctx) -> None:
        ctx.image(f"{folder}/a.png")
        ctx.text(f"{folder}/a.json", json.dumps(labelme_doc(label=label)))
    return run
