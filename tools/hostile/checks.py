"""Checks of a result: each ``check(ctx, result)`` returns what is wrong, or None.

They read what the command left behind without importing torch: checkpoint headers (safetensors
is an 8-byte length, a JSON header and raw tensor bytes), ONNX files, output folders, stderr.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from .model import Check, Result
from .workspace import Ctx

__all__ = ["checkpoint_meta", "step_is", "no_checkpoint", "finite_checkpoints", "onnx_opset", "files_exist",
           "file_count", "absent", "stderr_mentions", "all_of", "nothing_written"]

_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "BF16": None}


def _header(path: Path) -> tuple[dict[str, Any], int]:
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(size)), 8 + size


def checkpoint_meta(path: Path) -> dict[str, str]:
    """The string metadata of a safetensors file."""
    return _header(path)[0].get("__metadata__", {})


def step_is(run: str, step: int, which: str = "last") -> Check:
    """``run/checkpoints/<which>.safetensors`` holds step ``step``."""
    def check(ctx: Ctx, result: Result) -> str | None:
        path = ctx.p(run) / "checkpoints" / f"{which}.safetensors"
        if not path.is_file():
            return f"{path.relative_to(ctx.root)} does not exist"
        found = int(checkpoint_meta(path).get("step", -1))
        return None if found == step else f"{which}.safetensors is at step {found}, expected {step}"
    return check


def no_checkpoint(run: str) -> Check:
    """Nothing was trained: ``run/checkpoints/`` holds no checkpoint (the data was checked first)."""
    def check(ctx: Ctx, result: Result) -> str | None:
        found = sorted(p.name for p in (ctx.p(run) / "checkpoints").glob("*.safetensors"))
        return f"training ran before the refusal ({run}/checkpoints holds {', '.join(found)})" if found else None
    return check


def nothing_written(folder: str) -> Check:
    """``folder`` holds no checkpoint anywhere below it (compare's runs)."""
    def check(ctx: Ctx, result: Result) -> str | None:
        found = sorted(str(p.relative_to(ctx.root)) for p in ctx.p(folder).rglob("*.safetensors"))
        return f"training ran before the refusal ({', '.join(found[:3])})" if found else None
    return check


def _nonfinite(path: Path) -> list[str]:
    header, offset = _header(path)
    data = path.read_bytes()
    bad = []
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] not in _DTYPES or _DTYPES[info["dtype"]] is None:
            continue
        start, end = info["data_offsets"]
        values = np.frombuffer(data[offset + start: offset + end], dtype=_DTYPES[info["dtype"]])
        if not np.isfinite(values).all():
            bad.append(name)
    return bad


def finite_checkpoints(run: str) -> Check:
    """Every checkpoint in ``run/checkpoints`` holds finite numbers only."""
    def check(ctx: Ctx, result: Result) -> str | None:
        for path in sorted((ctx.p(run) / "checkpoints").glob("*.safetensors")):
            bad = _nonfinite(path)
            if bad:
                return f"{path.name} holds non-finite values in {', '.join(bad[:3])}"
        return None
    return check


def onnx_opset(path: str, opset: int) -> Check:
    """The ONNX file at ``path`` declares the default-domain opset ``opset``."""
    def check(ctx: Ctx, result: Result) -> str | None:
        import onnx

        model = onnx.load(str(ctx.p(path)), load_external_data=False)
        found = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
        return None if found == [opset] else f"{path} has opset {found}, --opset asked for {opset}"
    return check


def files_exist(*rels: str) -> Check:
    def check(ctx: Ctx, result: Result) -> str | None:
        missing = [r for r in rels if not ctx.p(r).exists()]
        return f"missing: {', '.join(missing)}" if missing else None
    return check


def absent(*rels: str) -> Check:
    """None of ``rels`` exists (nothing was made from bad input)."""
    def check(ctx: Ctx, result: Result) -> str | None:
        found = [r for r in rels if ctx.p(r).exists()]
        return f"{', '.join(found)} written anyway" if found else None
    return check


def file_count(folder: str, pattern: str, count: int) -> Check:
    def check(ctx: Ctx, result: Result) -> str | None:
        found = sorted(p.name for p in ctx.p(folder).glob(pattern))
        if len(found) == count:
            return None
        return f"{folder}/{pattern}: {len(found)} file(s) {found[:4]}, expected {count}"
    return check


def stderr_mentions(*fragments: str | tuple[str, ...]) -> Check:
    """stderr (a warning) names every fragment (a tuple: any one of its strings)."""
    def check(ctx: Ctx, result: Result) -> str | None:
        low = result.stderr.lower()
        missing = ["|".join(f) if isinstance(f, tuple) else f for f in fragments
                   if not any(o.lower() in low for o in (f if isinstance(f, tuple) else (f,)))]
        return f"no warning naming {', '.join(missing)}" if missing else None
    return check


def all_of(*checks: Check) -> Check:
    def check(ctx: Ctx, result: Result) -> str | None:
        for c in checks:
            problem = c(ctx, result)
            if problem:
                return problem
        return None
    return check
