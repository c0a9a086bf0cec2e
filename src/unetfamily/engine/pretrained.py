"""A training checkpoint as a model folder others can load (``unetfamily export --format pretrained``).

The folder is :meth:`~unetfamily.models.SegmentationModel.save_pretrained`'s (config.json,
model.safetensors, README.md); what the model alone does not know comes from the checkpoint:
its run config (training data, loss, optimiser, schedule, budget, seed, augmentation, the input
geometry ``data.scale`` / ``data.resize`` a predictor must apply), the class names, and the
validation scores recorded at the checkpoint's own step (split ``val``). Card fields passed in
replace the ones derived here (``compare --export-best`` passes its test scores).
"""
from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from unetfamily.engine.checkpoint import Checkpoint, load_model, rebuild_kwargs, resolve_checkpoint
from unetfamily.models import ModelCard, SegmentationModel
from unetfamily.models.pretrained import save_pretrained

__all__ = ["checkpoint_card", "export_pretrained"]

log = logging.getLogger(__name__)

#: Scores of a validation history entry that are not metrics.
_NOT_METRICS = ("step", "epoch")


def _resize(data: Mapping[str, Any]) -> list[int] | None:
    from unetfamily.data import options as data_options

    size = data_options.size("data.resize", data.get("resize"))
    return None if size is None else [int(size[0]), int(size[1])]


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(", ", ": "))


def _training_data(config: Mapping[str, Any], classes: list[str] | None,
                   background: Any = None) -> dict[str, Any] | None:
    data = config.get("data")
    if not isinstance(data, Mapping) or not data:
        return None
    out: dict[str, Any] = {"name": str(data.get("name") or data.get("type") or "unknown")}
    for key in ("type", "root", "scale", "resize", "size", "augment"):
        if data.get(key) is not None:
            out[key] = data[key] if isinstance(data[key], (str, int, float)) else _compact(data[key])
    if classes:
        out["classes"] = ", ".join(classes)
    if classes and isinstance(background, bool):  # what the card's dice and iou average
        out["class 0"] = "a background, left out of dice and iou" if background else "scored like the other classes"
    out["data config"] = _compact(data)
    return out


def _training_config(config: Mapping[str, Any], ckpt: Checkpoint) -> dict[str, Any] | None:
    if not any(isinstance(config.get(k), Mapping) for k in ("optim", "train", "loss")):
        return None
    optim, sched, train = (dict(config.get(k) or {}) for k in ("optim", "schedule", "train"))
    loss, loader = dict(config.get("loss") or {}), dict(config.get("loader") or {})
    out: dict[str, Any] = {}
    if loss:
        out["loss"] = loss.get("name") + (f" {_compact(loss['kwargs'])}" if loss.get("kwargs") else "")
    if optim:
        out["optimiser"] = f"{optim.get('name')}, lr {optim.get('lr')}, weight decay {optim.get('weight_decay')}"
    if sched:
        out["schedule"] = f"{sched.get('name')}, {sched.get('warmup_steps', 0)} warm-up steps"
    if loader.get("batch_size"):
        out["batch size"] = loader["batch_size"]
    budget = {k: train.get(k) for k in ("epochs", "max_steps", "max_seconds") if train.get(k) is not None}
    if budget:
        out["budget"] = ", ".join(f"{k} {v}" for k, v in budget.items())
    out["trained"] = f"{ckpt.step} steps ({ckpt.epoch} epoch{'s' if ckpt.epoch != 1 else ''})"
    for key in ("seed", "amp", "monitor"):
        if key in train:
            out[key] = train[key]
    ran = ckpt.extra.get("amp")  # what "auto" resolved to when the run trained (older checkpoints do not keep it)
    if isinstance(ran, str) and ran != out.get("amp"):
        out["amp"] = f"{ran} (train.amp {out['amp']})" if "amp" in out else ran
    norm = rebuild_kwargs(dict((config.get("model") or {}).get("kwargs") or {})).get("input_norm")  # ImageNet's with encoder_weights
    out["input normalisation"] = _compact(norm) if norm else "none"
    return out


def _validation(ckpt: Checkpoint, dataset: str | None) -> list[dict[str, Any]] | None:
    """The validation scores recorded at the checkpoint's own step (these weights), as card rows."""
    history = ckpt.extra.get("history") or []
    entry = history[-1] if history and history[-1].get("step") == ckpt.step else None
    if entry is None:
        return None
    return [{"metric": k, "value": v, "split": "val", "dataset": dataset,
             "scope": f"these weights, validated at step {ckpt.step}"}
            for k, v in entry.items() if k not in _NOT_METRICS and isinstance(v, (int, float))]


def checkpoint_card(ckpt: Checkpoint, source: str | Path) -> ModelCard:
    """The card fields a checkpoint knows: data, training config, classes, geometry, validation scores.

    ``source`` names the checkpoint in the card. Fields the checkpoint lacks stay None (unknown).
    """
    from unetfamily.data import data_geometry

    config = ckpt.config if isinstance(ckpt.config, Mapping) else {}
    data = config.get("data") if isinstance(config.get("data"), Mapping) else {}
    classes = ckpt.extra.get("classes")
    classes = [str(c) for c in classes] if isinstance(classes, list) else None
    training_data = _training_data(config, classes, ckpt.extra.get("background"))
    geometry = data_geometry(data)  # a cross-validated run keeps data.resize in its cv_fold's base
    resize = _resize(geometry)
    scale = geometry["scale"]
    side = geometry["size"]  # a synthetic dataset's image side, before data.scale
    size = [round(side * float(scale or 1.0))] * 2 if isinstance(side, int) and not resize else None
    return ModelCard(
        source=f"training checkpoint {source} (step {ckpt.step})", training_data=training_data,
        training_config=_training_config(config, ckpt),
        evaluation=_validation(ckpt, training_data["name"] if training_data else None),
        classes=classes, scale=float(scale) if scale else None, resize=resize,
        input_size=resize or size,
    )


def _outputs(out: Any) -> list[torch.Tensor]:
    """Every tensor of a model output (a tensor, a deep-supervision list, a CGM tuple), in order."""
    return [out] if isinstance(out, torch.Tensor) else [t for o in out for t in _outputs(o)]


def _reproduces(model: SegmentationModel, size: tuple[int, int]) -> Callable[[Path], None]:
    """A check that a written folder loads and gives ``model``'s outputs exactly on a random (1, C, H, W) input."""
    from unetfamily.engine.export import ExportError
    from unetfamily.models import from_pretrained

    def check(folder: Path) -> None:
        loaded = from_pretrained(folder)
        x = torch.rand(1, model.in_channels, *size)
        with torch.no_grad():
            expected, actual = _outputs(model.eval()(x)), _outputs(loaded(x))
        if len(expected) != len(actual) or not all(torch.equal(a, b) for a, b in zip(expected, actual)):
            raise ExportError("the model folder does not reproduce the checkpoint's outputs; nothing was written")

    return check


def export_pretrained(checkpoint: str | Path, out_dir: str | Path,
                      card: ModelCard | Mapping[str, Any] | None = None, check: bool = True) -> Path:
    """Write the model of ``checkpoint`` (a file or run folder: ``best``, else ``last``) as a model folder.

    The card holds :func:`checkpoint_card`'s fields, with every field given in ``card`` (not None)
    in their place. The model maps (N, C, H, W) images in [0, 1] to logits (N, K, H, W) exactly
    as the checkpoint's does; ``check`` loads the written folder back and compares its outputs
    with the checkpoint's (bit for bit) before it is put in place. Atomic; returns the folder.
    """
    path = resolve_checkpoint(checkpoint)
    model, ckpt = load_model(path, "cpu")
    started = ((ckpt.config.get("model") or {}).get("kwargs") or {}).get("encoder_weights")
    if started and "_encoder_weights" not in model.__dict__:  # the card names the file the run started from
        model.__dict__["_encoder_weights"] = {"file": Path(str(started)).name, "sha256": None}
    derived = checkpoint_card(ckpt, path)
    given = ModelCard.of(card)
    merged = dataclasses.replace(derived, **{f.name: getattr(given, f.name) for f in dataclasses.fields(ModelCard)
                                            if getattr(given, f.name) is not None})
    size = (model.size_multiple + 3, model.size_multiple + 5)  # small, and padded: the odd sizes test the crop too
    folder = save_pretrained(model, out_dir, card=merged, check=_reproduces(model, size) if check else None)
    log.info("exported %s as a model folder %s", path, folder)
    return folder
