"""Loading a model folder (:mod:`unetfamily.models.pretrained`) back, and the Hugging Face Hub round trip.

:func:`from_pretrained` takes a local folder or, where huggingface_hub is installed, a Hub
repository id (downloaded with ``snapshot_download``: only the three files). It reads
``config.json`` (a known format version, else an error naming the file and what to do), checks
the weights file against the config's SHA-256, rebuilds the model with ``create_model`` on the
``meta`` device to compare every tensor name and shape with the file's header before anything is
allocated, then loads the weights strictly, in eval mode. :func:`push_to_hub` uploads a folder.
"""
from __future__ import annotations

import hashlib
import json
import logging
import struct
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors

from unetfamily.errors import regular_file, require
from unetfamily.models._blocks import SegmentationModel
from unetfamily.models._registry import create_model
from unetfamily.models.card import ModelCard
from unetfamily.models.pretrained import (
    CARD_NAME, CONFIG_NAME, FORMAT, FORMAT_VERSION, WEIGHTS_NAME, PretrainedError, save_pretrained,
)

__all__ = ["from_pretrained", "read_config", "resolve_folder", "push_to_hub"]

log = logging.getLogger(__name__)

_HOW_TO_WRITE = "write one with model.save_pretrained(DIR) or `unetfamily export --format pretrained`"


def resolve_folder(path: str | Path, revision: str | None = None, cache_dir: str | Path | None = None,
                   force_download: bool = False, local_files_only: bool = False,
                   token: str | bool | None = None) -> Path:
    """The local folder of ``path``: itself when it is a folder, else the Hub repository ``path`` downloaded."""
    folder = Path(path).expanduser()
    if folder.is_dir():
        return folder
    if folder.exists():
        raise PretrainedError(f"{folder} is a file; give the model folder (holding {CONFIG_NAME} and {WEIGHTS_NAME})")
    try:
        import huggingface_hub
    except ImportError:
        raise PretrainedError(f"{path}: no such folder; give a model folder ({_HOW_TO_WRITE}). If it names a Hugging "
                              "Face Hub repository, downloading it needs huggingface_hub: pip install "
                              "'unetfamily[hub]'") from None
    try:
        local = huggingface_hub.snapshot_download(
            repo_id=str(path), revision=revision, cache_dir=cache_dir, force_download=force_download,
            local_files_only=local_files_only, token=token, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, CARD_NAME])
    except Exception as exc:  # huggingface_hub raises many kinds (validation, HTTP, offline cache misses)
        raise PretrainedError(f"{path}: no such folder, and no Hugging Face Hub repository could be downloaded "
                              f"under that name ({type(exc).__name__}: {exc}); give a model folder or a Hub "
                              "repository id (owner/name)") from exc
    return Path(local)


def read_config(folder: str | Path) -> dict[str, Any]:
    """The checked ``config.json`` of a model folder; :class:`PretrainedError` naming the file otherwise."""
    path = Path(folder) / CONFIG_NAME
    if not path.exists():
        raise PretrainedError(f"{path} not found: {folder} is not a unetfamily model folder; {_HOW_TO_WRITE}")
    regular_file(path, f"model config {CONFIG_NAME}", PretrainedError)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise PretrainedError(f"{path}: not readable JSON ({exc}); the folder is damaged: save the model again") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else None
        raise PretrainedError(f"{path}: not a unetfamily model config (format={found!r}, expected {FORMAT!r}); "
                              f"{_HOW_TO_WRITE}")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION
        todo = (f"upgrade unetfamily (pip install -U unetfamily) to load it; it was written by unetfamily "
                f"{config.get('unetfamily_version')}" if newer else "save the model again with this unetfamily")
        raise PretrainedError(f"{path}: format version {version!r} is unknown to unetfamily, which reads version "
                              f"{FORMAT_VERSION}; {todo}")
    model = config.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str) or not isinstance(model.get("kwargs"), dict):
        raise PretrainedError(f"{path}: 'model' must be {{\"name\": ..., \"kwargs\": {{...}}}}; the folder is damaged: "
                              "save the model again")
    return config


def _header(data: bytes, path: Path) -> dict[str, tuple[int, ...]]:
    """{tensor name: shape} from a safetensors file's JSON header (nothing else is read)."""
    try:
        (size,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + size])
        return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    except (struct.error, ValueError, TypeError, KeyError) as exc:
        raise PretrainedError(f"{path}: not a readable safetensors file ({exc}); the folder is damaged or its "
                              "download incomplete: save or download it again") from exc


def _listed(keys: list[str]) -> str:
    return ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")


def _check_keys(expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]], path: Path) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if missing or unexpected or wrong:
        parts = ([f"missing keys: {_listed(missing)}"] if missing else []) + \
                ([f"unexpected keys: {_listed(unexpected)}"] if unexpected else []) + \
                ([f"wrong shapes: " + _listed([f'{k} {found[k]} (model: {expected[k]})' for k in wrong])] if wrong else [])
        raise PretrainedError(f"{path} does not fit the model its {CONFIG_NAME} describes ({'; '.join(parts)}); "
                              "the two files come from different models: save the folder again")


def _build(config: dict[str, Any], path: Path, expected: type | None) -> SegmentationModel:
    spec = config["model"]
    try:
        with torch.device("meta"):  # shapes first: a damaged config must not allocate a huge model
            skeleton = create_model(spec["name"], **spec["kwargs"])
    except (ValueError, TypeError) as exc:
        raise PretrainedError(f"{path}: cannot rebuild the model ({exc}); the folder may need a newer "
                              "unetfamily, or it is damaged") from exc
    if (isinstance(expected, type) and issubclass(expected, SegmentationModel) and expected is not SegmentationModel
            and not isinstance(skeleton, expected)):
        raise PretrainedError(f"{path.parent} holds a {type(skeleton).__name__}, not a {expected.__name__}; load it "
                              "with unetfamily.from_pretrained (any model)")
    return skeleton


def from_pretrained(pretrained_model_name_or_path: str | Path, *, map_location: str | torch.device = "cpu",
                    expected: type | None = None, **hub_kwargs: Any) -> SegmentationModel:
    """The model saved in a folder (or Hub repository) by ``save_pretrained``, in eval mode on ``map_location``.

    The model maps (N, in_channels, H, W) float images in [0, 1] to logits (N, num_classes, H, W),
    exactly as the saved one. ``hub_kwargs``: ``revision``, ``cache_dir``, ``force_download``,
    ``local_files_only``, ``token`` for a Hub repository. ``model.pretrained_config`` keeps the
    folder's ``config.json`` (classes, input geometry). Raises :class:`PretrainedError` naming the
    file for a missing or damaged file, an unknown format version, or weights that do not fit.
    """
    folder = resolve_folder(pretrained_model_name_or_path, **hub_kwargs)
    config = read_config(folder)
    path = folder / WEIGHTS_NAME
    if not path.exists():
        raise PretrainedError(f"{path} not found: the model folder is incomplete (an interrupted copy or download?); "
                              f"{_HOW_TO_WRITE.replace('write one', 'write it again')}")
    regular_file(path, f"weights file {WEIGHTS_NAME}", PretrainedError)
    data = path.read_bytes()
    digest = (config.get("weights") or {}).get("sha256")
    if digest != hashlib.sha256(data).hexdigest():
        raise PretrainedError(f"{path} does not match the checksum in {folder / CONFIG_NAME}: the two files come "
                              "from different saves, or the weights are damaged; save or download the folder again")
    skeleton = _build(config, folder / CONFIG_NAME, expected)
    _check_keys({k: tuple(v.shape) for k, v in skeleton.state_dict().items()}, _header(data, path), path)
    try:
        state = load_tensors(data)
    except SafetensorError as exc:
        raise PretrainedError(f"{path}: not a readable safetensors file ({exc}); save or download it again") from exc
    bad = [k for k, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise PretrainedError(f"{path}: tensor(s) {_listed(bad)} hold NaN or inf; it was not loaded")
    spec = config["model"]
    model = create_model(spec["name"], **spec["kwargs"])
    model.load_state_dict(state, strict=True)
    _restore_runtime(model, config, folder / CONFIG_NAME)
    model.__dict__["pretrained_config"] = config
    return model.to(map_location).eval()


def _restore_runtime(model: SegmentationModel, config: Mapping[str, Any], path: Path) -> None:
    """The padding multiple (a pruned UNet++ keeps its parent's) and the weights' dtype, as saved."""
    multiple = config.get("size_multiple", model.size_multiple)
    if not isinstance(multiple, int) or isinstance(multiple, bool) or multiple < 1 or multiple % model.size_multiple:
        raise PretrainedError(f"{path}: size_multiple={multiple!r} must be a multiple of the model's "
                              f"{model.size_multiple}; the folder is damaged: save the model again")
    model.size_multiple = multiple
    dtype = getattr(torch, str(config.get("dtype", "float32")), None)
    if isinstance(dtype, torch.dtype) and dtype.is_floating_point and dtype != torch.float32:
        model.to(dtype)


def push_to_hub(model: SegmentationModel, repo_id: str, *, card: ModelCard | Mapping[str, Any] | None = None,
                token: str | None = None, private: bool | None = None, branch: str | None = None,
                create_pr: bool | None = None, commit_message: str = "Upload unetfamily model") -> str:
    """Save ``model``'s folder to a temporary place and upload it as the Hub model repository ``repo_id``.

    Needs huggingface_hub (``pip install 'unetfamily[hub]'``); the repository is created if needed.
    Returns what ``upload_folder`` returns (the commit URL).
    """
    hub = require("huggingface_hub", "hub", "push_to_hub (uploading to the Hugging Face Hub)")
    api = hub.HfApi(token=token)
    repo = api.create_repo(repo_id=repo_id, private=private, exist_ok=True)
    repo_id = getattr(repo, "repo_id", repo_id)
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_pretrained(model, Path(tmp) / "model", card=card)
        commit = api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=folder,
                                   commit_message=commit_message, revision=branch, create_pr=create_pr)
    log.info("uploaded %s to the Hub repository %s", type(model).__name__, repo_id)
    return str(commit)
