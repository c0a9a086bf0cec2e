"""Fuzz targets for the checkpoint loader: damaged safetensors bytes, and real tensors under damaged metadata."""
from __future__ import annotations

import json
import struct
from typing import Any

import torch
from hypothesis import strategies as st

from unetfamily.engine.checkpoint import load_model, save_checkpoint
from unetfamily.models import create_model

from .common import corrupted, json_values, outcome, workdir, write_case

_ckpt_seed: dict[str, Any] = {}


def _checkpoint_seed() -> dict[str, Any]:
    """A real checkpoint of a tiny U-Net: its bytes, tensors and metadata (made once)."""
    if not _ckpt_seed:
        from safetensors import safe_open
        from safetensors.torch import load_file

        torch.manual_seed(0)
        model = create_model("unet", in_channels=1, num_classes=1, channels=(2, 4))
        path = workdir() / "seed.safetensors"
        config = {"model": {"name": "unet", "kwargs": {"in_channels": 1, "num_classes": 1, "channels": [2, 4]}}}
        save_checkpoint(path, model, config, step=3, optimizer=torch.optim.AdamW(model.parameters()))
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata()
        _ckpt_seed.update(bytes=path.read_bytes(), tensors=load_file(str(path)), metadata=metadata)
    return _ckpt_seed


@st.composite
def checkpoint_bytes(draw: st.DrawFn) -> bytes:
    """A real checkpoint with mutations, mostly in its JSON header (where the metadata lives)."""
    seed = _checkpoint_seed()["bytes"]
    header = 8 + struct.unpack("<Q", seed[:8])[0]
    head = draw(corrupted([seed[:header]]))
    return head + (seed[header:] if draw(st.booleans()) else draw(corrupted([seed[header:]])))


meta_value = st.one_of(st.text(max_size=8), json_values.map(json.dumps))
model_configs = st.fixed_dictionaries({"model": st.fixed_dictionaries(
    {"name": st.one_of(st.sampled_from(["unet", "fcn8s", "nope"]), json_values),
     "kwargs": st.one_of(json_values, st.fixed_dictionaries({"channels": st.one_of(
         st.lists(st.integers(-2, 2**20), max_size=3), json_values)}))})}).map(json.dumps)


@st.composite
def checkpoint_metadata(draw: st.DrawFn) -> dict[str, str]:
    """The real checkpoint's metadata with 1-3 entries replaced by random ones, deleted or added."""
    meta = dict(_checkpoint_seed()["metadata"])
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from([*sorted(meta), "other"]))
        if draw(st.integers(0, 4)) == 0:
            meta.pop(name, None)
        else:
            meta[name] = draw(st.one_of(meta_value, model_configs, st.just(_checkpoint_seed()["metadata"].get(name, ""))))
    return meta


def checkpoint_target(data: bytes) -> str:
    path = write_case("ckpt.safetensors", data)
    return outcome(lambda: load_model(path))


def checkpoint_meta_target(meta: dict[str, str]) -> str:
    """The real checkpoint's tensors under fuzzed metadata."""
    from safetensors.torch import save_file

    path = workdir() / "meta.safetensors"
    save_file(_checkpoint_seed()["tensors"], str(path), metadata=meta)
    return outcome(lambda: load_model(path))
