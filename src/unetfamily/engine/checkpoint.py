"""Checkpoints: one safetensors file per checkpoint, written atomically, loaded without pickle.

A checkpoint holds the model weights (``model.*`` tensors), the optimizer's tensors
(``optim.<param>.<name>``) with its non-tensor state and param groups as JSON metadata, the
torch RNG state, the step/epoch counters and the resolved run config (JSON). Nothing in it is
pickled, so loading a file from anywhere never executes code.

Writes go through :func:`unetfamily.files.atomic_write_bytes` (a temporary file in the same
folder, fsynced, renamed over the target): a crash or a full disk at any point leaves either the
previous checkpoint or the new one, never a half-written file. Metadata is strict JSON (NaN as null).

Never a non-finite number: :func:`save_checkpoint` refuses to write a NaN or infinite weight,
buffer or optimizer value, and :func:`load_checkpoint` (hence resume, eval, predict and export)
refuses a file holding one, naming the tensor, as it refuses out-of-range counters.

Layout of a run folder: ``config.yaml``, ``train.log``, ``checkpoints/last.safetensors``,
``checkpoints/best.safetensors``, ``tensorboard/``.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as serialize
from torch import nn

from unetfamily.errors import UnetFamilyError, regular_file
from unetfamily.files import WriteError, atomic_write_bytes, dump_json, fsync_dir
from unetfamily.models import rebuild_kwargs
from unetfamily.engine.trained_cases import check_train_cases

log = logging.getLogger(__name__)

FORMAT = "unetfamily-checkpoint-1"
__all__ = ["CheckpointError", "Checkpoint", "save_checkpoint", "copy_checkpoint", "load_checkpoint",
           "resolve_checkpoint", "load_model", "rebuild_kwargs", "restore_rng"]


class CheckpointError(UnetFamilyError, RuntimeError):
    """A checkpoint is missing, unreadable or not a unetfamily checkpoint; the message names the file."""


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns; tensors are on the CPU."""

    model_state: dict[str, torch.Tensor]
    config: dict[str, Any]
    step: int = 0
    epoch: int = 0
    optimizer_state: dict[str, Any] | None = None
    rng: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def _optimizer_tensors(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, scalars = {}, {}
    for pid, entries in state["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _rebuild_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    for key, value in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    return {"state": dict(sorted(state.items())), "param_groups": meta["param_groups"]}


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    config: dict[str, Any],
    step: int = 0,
    epoch: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Atomically write a checkpoint of ``model`` (and ``optimizer``) to ``path``; returns the path.

    Raises :class:`CheckpointError` (the previous file at ``path`` untouched) when a tensor holds
    a NaN or an infinity (named in the message; such a checkpoint would load as a broken model) or
    when writing fails (a full disk, a read-only folder).
    """
    path = Path(path)
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel / compile
    model = getattr(model, "_orig_mod", model)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta: dict[str, str] = {
        "format": FORMAT,
        "config": dump_json(config, indent=None),
        "step": str(step),
        "epoch": str(epoch),
        "extra": dump_json(extra or {}, indent=None),
        "rng": dump_json({"python": random.getstate(), "numpy": np.random.get_state()}, indent=None),
    }
    tensors["rng.torch"] = torch.get_rng_state()
    if optimizer is not None:
        opt_tensors, opt_meta = _optimizer_tensors(optimizer.state_dict())
        tensors.update(opt_tensors)
        meta["optimizer"] = dump_json(opt_meta, indent=None)
    bad = _nonfinite_names(tensors)
    if bad:
        raise CheckpointError(
            f"refusing to write checkpoint {path}: {_listed(bad)} non-finite (NaN or inf); the previous "
            "checkpoint is unchanged. Training diverged: lower optim.lr, set train.grad_clip or use "
            "train.nan_policy='stop' to stop at the first non-finite step"
        )
    try:
        atomic_write_bytes(path, serialize(tensors, metadata=meta))
    except (OSError, SafetensorError) as exc:
        cause = exc.__cause__ if isinstance(exc, WriteError) and isinstance(exc.__cause__, OSError) else exc
        reason = (cause.strerror if isinstance(cause, OSError) else None) or str(cause) or type(cause).__name__
        raise CheckpointError(
            f"could not write checkpoint {path}: {reason}; the previous checkpoint is unchanged. "
            f"Free disk space or choose a writable output_dir."
        ) from exc
    return path


def copy_checkpoint(source: str | Path, target: str | Path) -> Path:
    """Make ``target`` the same checkpoint as ``source``, atomically; returns ``target``.

    A hard link where the file system allows it: no data is written, so a full disk cannot stop
    it, and it stays valid when ``source`` is later replaced (every write replaces the file).
    Elsewhere the bytes are copied through :func:`~unetfamily.files.atomic_write_bytes`.
    Raises :class:`CheckpointError` (``target`` unchanged) when neither works.
    """
    source, target = Path(source), Path(target)
    link = target.with_name(f".{target.name}.tmp-{os.getpid()}")  # the temporary name of atomic writes
    try:
        link.unlink(missing_ok=True)
        os.link(source, link)
        os.replace(link, target)
        fsync_dir(target.parent)
        return target
    except OSError:
        with contextlib.suppress(OSError):
            link.unlink(missing_ok=True)
    try:
        return atomic_write_bytes(target, source.read_bytes())
    except OSError as exc:
        cause = exc.__cause__ if isinstance(exc, WriteError) and isinstance(exc.__cause__, OSError) else exc
        raise CheckpointError(
            f"could not write checkpoint {target} (a copy of {source.name}): {cause.strerror or cause}; the "
            "previous checkpoint is unchanged. Free disk space or choose a writable output_dir."
        ) from exc


def _nonfinite_names(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or an infinity."""
    return [name for name, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def _listed(names: list[str]) -> str:
    """``"tensor a holds"`` or ``"3 tensors hold values"``-style text naming at most five tensors."""
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"tensor {shown} holds" if len(names) == 1 else f"{len(names)} tensors ({shown}) hold"


def restore_rng(rng: dict[str, Any], torch_state: torch.Tensor | None) -> None:
    """Restore Python, NumPy and torch CPU RNG states saved by :func:`save_checkpoint`."""
    if "python" in rng:
        version, state, gauss = rng["python"]
        random.setstate((version, tuple(state), gauss))
    if "numpy" in rng:
        name, keys, pos, has_gauss, cached = rng["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if torch_state is not None:
        torch.set_rng_state(torch_state)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file from a file path or a run folder (``best`` if present, else ``last``)."""
    path = Path(path)
    if path.is_dir():
        for name in ("best", "last"):
            candidate = path / "checkpoints" / f"{name}.safetensors"
            if candidate.is_file():
                return candidate
        if (path / "config.json").is_file() and (path / "model.safetensors").is_file():  # models.pretrained's files
            raise CheckpointError(f"{path} is a model folder (from --export-best or export --format pretrained), not a "
                                  "training run: predict takes it, unetfamily.from_pretrained loads it; eval and "
                                  "export need the run folder it came from (its card names it) or its checkpoint")
        raise CheckpointError(f"no checkpoint in run folder {path} (expected checkpoints/best.safetensors or "
                              f"last.safetensors){_runs_inside(path)}")
    if not os.path.lexists(path):
        raise CheckpointError(f"checkpoint {path} does not exist; pass a .safetensors file or a run folder")
    return regular_file(path, "checkpoint (a .safetensors file or a run folder)", CheckpointError)


def _runs_inside(path: Path, shown: int = 4) -> str:
    """'; it holds N run folder(s), e.g. ...' naming the run folders one or two levels inside ``path`` (a compare
    variant's seeds and folds) or in a comparison's ``runs/``, or ''."""
    found = sorted({c.parent.parent.relative_to(path).as_posix() for pattern in ("*", "*/*", "runs/*/*", "runs/*/*/*")
                    for c in path.glob(f"{pattern}/checkpoints/*.safetensors") if c.stem in ("best", "last")})
    if not found:
        return ""
    more = f" and {len(found) - shown} more" if len(found) > shown else ""
    return f"; it holds {len(found)} run folder(s), e.g. {', '.join(found[:shown])}{more}: pass one of them"


def _looks_pickled(path: Path) -> bool:
    """A pickle (protocol 2+ starts with 0x80) or a torch.save zip archive, judged by its first bytes only."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")) or head == b"PK\x03\x04"


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint file or run folder (see :func:`resolve_checkpoint`) without unpickling anything."""
    path = resolve_checkpoint(path)
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        if _looks_pickled(path):
            raise CheckpointError(
                f"{path} is a pickle or torch.save file, not a safetensors checkpoint; it was not loaded, because "
                "unpickling a file can run any code in it. Load only .safetensors checkpoints written by unetfamily"
            ) from exc
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint ({exc}); it may be truncated or corrupt") from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a unetfamily checkpoint (format={meta.get('format')!r})")
    bad = _nonfinite_names({k: v for k, v in tensors.items() if k.startswith(("model.", "optim."))})
    if bad:
        raise CheckpointError(f"{path}: {_listed(bad)} non-finite (NaN or inf) values; a model from it would "
                              "predict garbage, so it was not loaded. Use an earlier checkpoint of the run")
    try:
        model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        opt_tensors = {k: v for k, v in tensors.items() if k.startswith("optim.")}
        optimizer_state = _rebuild_optimizer_state(opt_tensors, json.loads(meta["optimizer"])) if "optimizer" in meta else None
        ckpt = Checkpoint(
            model_state=model_state,
            config=json.loads(meta["config"]),
            step=int(meta["step"]),
            epoch=int(meta["epoch"]),
            optimizer_state=optimizer_state,
            rng={**json.loads(meta.get("rng", "{}")), "torch": tensors.get("rng.torch")},
            extra=json.loads(meta.get("extra", "{}")),
        )
        _check_fields(ckpt)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: checkpoint metadata is damaged ({exc})") from exc
    return ckpt


def _check_fields(ckpt: Checkpoint) -> None:
    """ValueError for counters and run-state fields out of their range (a hand-edited or damaged file)."""
    if not ckpt.model_state:
        raise ValueError("it holds no model weights")
    if not isinstance(ckpt.config, dict) or not isinstance(ckpt.extra, dict):
        raise ValueError("config and extra must be JSON objects")
    if ckpt.step < 0 or ckpt.epoch < 0:
        raise ValueError(f"step={ckpt.step} and epoch={ckpt.epoch} must be >= 0")
    extra = ckpt.extra
    for key in ("bad_evals", "skipped_steps"):
        value = extra.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"extra.{key}={value!r} must be a count >= 0")
    if extra.get("skipped_steps", 0) > ckpt.step:
        raise ValueError(f"extra.skipped_steps={extra['skipped_steps']} exceeds step={ckpt.step}")
    best = extra.get("best")
    if best is not None and (isinstance(best, bool) or not isinstance(best, (int, float))):
        raise ValueError(f"extra.best={best!r} must be a number or null")
    history = extra.get("history", [])
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise ValueError("extra.history must be a list of score objects")
    check_train_cases(extra)


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, Checkpoint]:
    """Rebuild the model a checkpoint was trained with, load its weights, put it in eval mode.

    The model is built from the checkpoint's resolved config (``model.name`` and ``model.kwargs``,
    which include ``in_channels`` and ``num_classes``; an ``encoder_weights`` file is not read:
    :func:`rebuild_kwargs`).
    """
    from unetfamily.models import create_model

    ckpt = load_checkpoint(path)
    try:
        spec = ckpt.config["model"]
        kwargs = rebuild_kwargs(spec.get("kwargs", {}))
        with torch.device("meta"):  # shapes first: a damaged config must not allocate a huge model
            skeleton = create_model(spec["name"], **kwargs)
        upgrade = getattr(skeleton, "upgrade_state_dict", None)  # keys renamed since 0.1.0
        state = upgrade(ckpt.model_state) if upgrade is not None else ckpt.model_state
        expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
        found = {k: tuple(v.shape) for k, v in state.items()}
        if expected != found:
            wrong = sorted(k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k))
            raise ValueError(f"the weights do not fit the model in its config ({len(wrong)} tensors differ, e.g. {wrong[:3]})")
        model = create_model(spec["name"], **kwargs)
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise CheckpointError(f"{resolve_checkpoint(path)}: cannot rebuild the model from the checkpoint ({exc})") from exc
    return model.to(device).eval(), ckpt
