"""Model folders others can load: ``config.json`` + ``model.safetensors`` + ``README.md``.

The layout and the method names follow huggingface_hub's ``ModelHubMixin`` / ``PyTorchModelHubMixin``
(``save_pretrained`` / ``_save_pretrained``, ``from_pretrained`` / ``_from_pretrained``,
``push_to_hub``), so a folder uploads to and downloads from the Hugging Face Hub as is; the
package itself needs huggingface_hub only to upload or download (``pip install 'unetfamily[hub]'``).

- ``config.json``: the format and its version, the unetfamily version, the registry name and the
  exact keyword arguments ``create_model`` rebuilds the model from (``input_norm`` included),
  what it takes and returns, the input geometry a predictor applies (``scale`` / ``resize``), the
  class names, and the SHA-256 of the weights file.
- ``model.safetensors``: the state dict (safetensors: loading executes no code).
- ``README.md``: the model card (:mod:`unetfamily.models.card`).

Writing is atomic: the files go into a hidden sibling folder that is renamed into place once
complete (the weights written last), so an interrupted save leaves no folder that loads. Loading
is strict: the config's format version must be known, the weights must match the config's
checksum, and every tensor must fit the rebuilt model (missing and unexpected keys are named).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as serialize
from torch import nn

from unetfamily.errors import UnetFamilyError
from unetfamily.models._blocks import SegmentationModel
from unetfamily.models._registry import create_model
from unetfamily.models.card import ModelCard, render_card
from unetfamily.models.families import family_of, model_label
from unetfamily.models.flops import count_flops

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "CARD_NAME", "FORMAT", "FORMAT_VERSION", "PretrainedError", "count_macs",
           "model_spec", "model_facts", "save_pretrained", "write_files", "check_destination"]

log = logging.getLogger(__name__)

CONFIG_NAME, WEIGHTS_NAME, CARD_NAME = "config.json", "model.safetensors", "README.md"
FILES = (CONFIG_NAME, CARD_NAME, WEIGHTS_NAME)  # in the order they are written: the weights last
FORMAT = "unetfamily-pretrained"
FORMAT_VERSION = 1
#: MACs of a bare model are counted at this (H, W) unless the card gives a size.
DEFAULT_MACS_SIZE = (256, 256)


class PretrainedError(UnetFamilyError, RuntimeError):
    """A model folder cannot be written or loaded; the message names the folder or file and what to do."""


def _plain(value: Any) -> Any:
    """``value`` with tuples as lists, checked to be JSON (numbers, text, booleans, None, lists, mappings)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)) or (isinstance(value, float) and math.isfinite(value)):
        return value
    raise PretrainedError(f"constructor argument value {value!r} ({type(value).__name__}) cannot be written to "
                          f"{CONFIG_NAME}; build the model with numbers, text and lists only")


def model_spec(model: nn.Module) -> tuple[str, dict[str, Any]]:
    """(registry name, keyword arguments) that ``create_model`` rebuilds ``model`` from, checked by a rebuild.

    The rebuild happens on the ``meta`` device (no memory, no arithmetic) and must have the same
    class and the same state-dict keys and shapes; a model changed after it was built (e.g. by
    ``fold_batchnorm``) is refused, naming what differs.
    """
    if not isinstance(model, SegmentationModel):
        raise PretrainedError(f"save_pretrained needs a unetfamily model, got {type(model).__name__}")
    created = model.__dict__.get("_created_as")
    if created is not None:
        name, kwargs = created[0], dict(created[1])
    else:
        name, kwargs = model.pretrained_name(), dict(model.__dict__.get("_init_kwargs") or {})
        if name is None or "_init_kwargs" not in model.__dict__:
            raise PretrainedError(f"{type(model).__name__} is not a registered model, so a folder could not rebuild "
                                  "it; register its factory with @register_model and build it with create_model")
    norm = getattr(model, "input_norm", None)
    if norm is None:
        kwargs.pop("input_norm", None)
    elif "input_norm" not in kwargs:  # attached after the model was built: its float32 values
        kwargs["input_norm"] = norm.spec()
    kwargs = _plain(kwargs)
    with torch.device("meta"):
        skeleton = create_model(name, **kwargs)
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if type(skeleton) is not type(model) or expected != found:
        differ = sorted(k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k))
        raise PretrainedError(f"the {type(model).__name__} differs from what create_model({name!r}, ...) builds "
                              f"({len(differ)} tensors differ, e.g. {differ[:3]}): it was changed after it was built "
                              "(fold_batchnorm, replaced layers); save the model as it was built")
    return name, kwargs


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one eval forward pass on (N, C, H, W) ``input_shape``, counted on a meta copy:
    convolutions and matrix products (:func:`unetfamily.models.flops.count_flops` / 2)."""
    return count_flops(model, input_shape) // 2


def _dtype(model: nn.Module) -> str:
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    return str(dtypes.pop()).removeprefix("torch.") if len(dtypes) == 1 else "float32"


def model_facts(model: SegmentationModel, name: str, kwargs: Mapping[str, Any], card: ModelCard) -> dict[str, Any]:
    """What the model card says about the model itself: names, sizes, parameters, MACs, outputs."""
    from unetfamily import __version__

    size = tuple(card.input_size or card.resize or DEFAULT_MACS_SIZE)
    shape = (1, model.in_channels, *size)
    macs = card.macs if card.macs is not None else count_macs(model, shape)
    outputs = []
    if getattr(model, "deep_supervision", False):
        outputs.append("deep supervision: a list of logit maps, the final one first")
    if getattr(model, "cgm", False):
        outputs.append("CGM: a tuple (segmentation, image-level classification logits (N, 2))")
    norm = getattr(model, "input_norm", None)
    return {"name": name, "kwargs": dict(kwargs), "class": type(model).__name__, "family": family_of(name),
            "label": model_label(name), "in_channels": model.in_channels, "num_classes": model.num_classes,
            "size_multiple": model.size_multiple, "params": sum(p.numel() for p in model.parameters()),
            "macs": macs, "macs_input": " x ".join(str(s) for s in shape), "outputs": "; ".join(outputs),
            "input_norm": None if norm is None else norm.spec(), "encoder_weights": model.__dict__.get("_encoder_weights"),
            "version": __version__, "format": FORMAT,
            "format_version": FORMAT_VERSION}


def _config(model: SegmentationModel, name: str, kwargs: dict[str, Any], card: ModelCard, digest: str) -> dict:
    from unetfamily import __version__

    k = model.num_classes
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "unetfamily_version": __version__,
        "model": {"name": name, "kwargs": kwargs},
        "architecture": type(model).__name__, "family": family_of(name), "label": model_label(name),
        "in_channels": model.in_channels, "num_classes": k, "size_multiple": model.size_multiple,
        "dtype": _dtype(model), "task": "binary" if k <= 2 else "multiclass",
        "output": {"kind": "logits", "activation": "sigmoid" if k == 1 else "softmax"},
        "input": {"range": [0, 1], "normalised_inside": getattr(model, "input_norm", None) is not None},
        "classes": card.classes, "scale": card.scale, "resize": card.resize,
        "weights": {"file": WEIGHTS_NAME, "sha256": digest},
    }


def _nonfinite(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    return [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_files(model: nn.Module, folder: Path, card: ModelCard | Mapping[str, Any] | None) -> None:
    """Write ``config.json``, ``README.md`` and ``model.safetensors`` (last) into the existing ``folder``.

    Not atomic by itself: :func:`save_pretrained` calls it on a temporary folder. Raises
    :class:`PretrainedError` for a model that cannot be rebuilt or holds NaN/inf weights.
    """
    card = ModelCard.of(card)
    name, kwargs = model_spec(model)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    bad = _nonfinite(state)
    if bad:
        raise PretrainedError(f"refusing to save: tensor(s) {', '.join(bad[:5])} hold NaN or inf; a model "
                              "loaded from them would predict garbage")
    data = serialize(state, metadata={"format": "pt"})  # "pt": what the Hub's safetensors readers expect
    config = _config(model, name, kwargs, card, hashlib.sha256(data).hexdigest())
    _write(folder / CONFIG_NAME, (json.dumps(config, indent=2, allow_nan=False) + "\n").encode())
    _write(folder / CARD_NAME, render_card(card, model_facts(model, name, kwargs, card)).encode())
    _write(folder / WEIGHTS_NAME, data)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_destination(dest: Path) -> None:
    """Refuse a ``dest`` that is a file, or a folder holding files other than a model folder's (they would be lost)."""
    if dest.exists() and not dest.is_dir():
        raise PretrainedError(f"{dest} is a file; give a folder for the model (a new one, or an earlier model folder)")
    others = sorted(p.name for p in dest.iterdir() if p.name not in FILES) if dest.is_dir() else []
    if others:
        raise PretrainedError(f"{dest} holds other files ({', '.join(others[:3])}{' ...' if len(others) > 3 else ''}) "
                              "that saving would delete; choose a new or empty folder, or an earlier model folder")


def save_pretrained(model: nn.Module, save_directory: str | Path, card: ModelCard | Mapping[str, Any] | None = None,
                    check: Callable[[Path], None] | None = None) -> Path:
    """Write ``model``'s folder at ``save_directory`` atomically; returns the folder.

    ``model`` maps (N, in_channels, H, W) images to logits (N, num_classes, H, W); the folder
    rebuilds it with the same outputs (:func:`~unetfamily.models.pretrained_load.from_pretrained`). The files are written into a hidden sibling folder, which is then renamed into place (an
    earlier model folder there is replaced; a folder holding other files is refused). ``check``,
    when given, is called with the complete hidden folder first (e.g. to load it back and compare);
    what it raises stops the save. Failures raise :class:`PretrainedError` (or ``check``'s error)
    and leave ``save_directory`` as it was.
    """
    dest = Path(save_directory)
    check_destination(dest)
    base = dest.absolute()  # "." and "dir/" have a name too
    tmp, old = (base.with_name(f".{base.name}.{kind}-{os.getpid()}") for kind in ("tmp", "old"))
    try:
        for stale in (tmp, old):  # left by an earlier process of this id that was killed
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir(parents=True)
        write_files(model, tmp, card)
        _fsync_dir(tmp)
        if check is not None:
            check(tmp)
        if dest.exists():
            os.replace(dest, old)
        try:
            os.replace(tmp, dest)
        except OSError:
            if old.exists():
                os.replace(old, dest)
            raise
        _fsync_dir(dest.parent)
    except OSError as exc:
        raise PretrainedError(f"could not write {dest}: {exc.strerror or exc}; nothing was written there (free "
                              "disk space, or choose a writable folder)") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    log.info("saved %s to %s", type(model).__name__, dest)
    return dest
