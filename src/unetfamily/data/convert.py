"""Any dataset config -> the plain ``folder`` layout, as the loader sees it (``unetfamily dataset convert``).

Every sample of every converted split is read as training reads it before ``resize`` and
augmentation (:meth:`~unetfamily.data.base.SegmentationDataset.read`) and written as::

    OUT/data.yaml                   a ready ``type: folder`` config of what was written
    OUT/{split}/images/NAME.png     8-bit gray or RGB; 16-bit gray as a 16-bit PNG (float images scaled
                                    to 16 bit); other pixels (16-bit RGB, 2 or 4+ channels) as NAME.tif
    OUT/{split}/masks/NAME.png      class indices (8-bit; 16-bit when ignore_index or a class passes 255)
    OUT/{split}/roi/NAME.png        255 inside the region of interest, 0 outside (when any sample has one)

``build_dataset("OUT/data.yaml", split)`` then gives back every sample's pixels as they were
(float images within 1/65535). The default splits are train, val and test where the config defines
them, else ``all``. All or nothing: everything is written into a hidden folder inside OUT and
moved into place once complete; an OUT that already holds files is refused unless ``overwrite``,
which replaces ``data.yaml`` and the ``{split}/images|masks|roi`` folders written (nothing else).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import yaml
from PIL import Image

from unetfamily.data.base import DatasetInfo, SegmentationDataset
from unetfamily.data.split_sets import build_splits, shared_info
from unetfamily.data.errors import DataConfigError, DataError, UnknownSplitError
from unetfamily.data.io import image_to_float
from unetfamily.data.registry import load_data_config
from unetfamily.files import WriteError, atomic_write_bytes

__all__ = ["DEFAULT_SPLITS", "convert_dataset", "file_name"]

log = logging.getLogger(__name__)

#: Splits converted when none are named (those the config defines; ``all`` when it defines none).
DEFAULT_SPLITS = ("train", "val", "test")
CONFIG_NAME = "data.yaml"


def file_name(name: str) -> str:
    """A sample name as a file stem: path separators, control characters and leading dots become ``_``."""
    stem = re.sub(r"[\x00-\x1f/\\]", "_", name)
    stem = re.sub(r"^\.", "_", stem)
    return stem or "_"


def _image_file(pixels: np.ndarray, where: str) -> tuple[str, bytes]:
    """``(suffix, bytes)`` of the ``(H, W, C)`` image ``pixels``: a PNG where one holds them exactly, else a TIFF."""
    if pixels.dtype == bool:
        pixels = pixels.astype(np.uint8) * 255  # the loader reads True as 1.0, as 255 / 255
    elif pixels.dtype != np.uint8 and pixels.dtype != np.uint16:
        pixels = np.rint(image_to_float(pixels, where) * 65535).astype(np.uint16)  # refuses what the loader refuses
    channels = pixels.shape[-1]
    if channels == 1 or (channels == 3 and pixels.dtype == np.uint8):
        return ".png", _png(pixels[..., 0] if channels == 1 else pixels)
    buffer = io.BytesIO()  # (H, W, C) with C samples per pixel; never C pages
    tifffile.imwrite(buffer, pixels, photometric="rgb" if channels == 3 else "minisblack", planarconfig="contig")
    return ".tif", buffer.getvalue()


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _mask_dtype(info: DatasetInfo) -> type:
    return np.uint8 if max(info.num_classes - 1, info.ignore_index) <= 255 else np.uint16


class _Stage:
    """A hidden folder inside ``out`` that files are written into, then moved into ``out`` at once."""

    def __init__(self, out: Path) -> None:
        self.out, self.path = out, out / f".convert-{os.getpid()}.tmp"
        self.folders: set[str] = set()

    def write(self, name: str, data: bytes) -> None:
        """Write ``data`` to ``stage/name``; a failure is a WriteError naming ``out/name``, where it was going."""
        atomic_write_bytes(self.path / name, data, shown_as=self.out / name)  # named where it was going
        if "/" in name:
            self.folders.add(name.rsplit("/", 1)[0])

    def targets(self) -> list[str]:
        """What :meth:`publish` puts into ``out``: the staged folders (``split/kind``), then ``data.yaml``."""
        return sorted(self.folders) + [CONFIG_NAME]

    def publish(self) -> None:
        """Move the staged folders and ``data.yaml`` into ``out``, each replacing the one there.

        If a move fails, the folders already replaced are put back before the WriteError is raised.
        """
        trash = self.path / ".replaced"
        moved: list[tuple[Path, Path | None]] = []  # (target, where its old folder went)
        for n, name in enumerate(self.targets()):
            target = self.out / name
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                old = None
                if target.is_dir() and not target.is_symlink():
                    trash.mkdir(exist_ok=True)
                    old = trash / str(n)
                    os.replace(target, old)
                moved.append((target, old))
                os.replace(self.path / name, target)
            except OSError as exc:
                _restore(moved)
                raise WriteError(target, exc) from exc


def _restore(moved: list[tuple[Path, Path | None]]) -> None:
    """Undo a partial :meth:`_Stage.publish`: remove the new folders, put the old ones back (best effort)."""
    for target, old in reversed(moved):
        with contextlib.suppress(OSError):
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            if old is not None:
                os.replace(old, target)


def _source_files(ds: SegmentationDataset) -> list[Path]:
    """The files ``ds`` reads its samples from, where its type says (paired files, TIFF stacks, folds)."""
    if hasattr(ds, "sources"):  # cv_fold: the pooled datasets
        return [p for part, _ in ds.sources() for p in _source_files(part)]
    if hasattr(ds, "samples"):
        return [p for s in ds.samples for p in (s.image, s.mask, s.roi) if p is not None]
    return [p for p in (getattr(ds, "images_path", None), getattr(ds, "labels_path", None)) if p is not None]


def _refuse_replacing_sources(out: Path, built: Mapping[str, SegmentationDataset]) -> None:
    """With ``overwrite``, a DataError if a folder the conversion replaces holds a file it reads from."""
    replaced = [(out / split / kind).resolve() for split in built for kind in ("images", "masks", "roi")]
    for ds in built.values():
        for path in _source_files(ds):
            resolved = Path(path).resolve()
            hit = next((folder for folder in replaced if resolved.is_relative_to(folder)), None)
            if hit is not None:
                raise DataError(f"--overwrite would replace {hit}, which holds the source file {path}; nothing was "
                                "written. Choose an --out outside the dataset")


def _refuse_existing(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder; choose another --out")
    if overwrite or not out.is_dir():
        return
    held = sorted(p.name for p in out.iterdir())
    if held:
        raise DataError(f"{out} is not empty (it holds {len(held)} entries, e.g. {held[0]!r}); nothing was written. "
                        "Choose an empty or new --out, or add --overwrite to replace the converted splits there")


def _choose_splits(cfg: Mapping[str, Any], splits: Sequence[str] | None) -> dict[str, SegmentationDataset]:
    """The splits to convert, built: ``splits``, else those of DEFAULT_SPLITS the config defines, else ``all``."""
    if splits:
        if "all" in splits and len(set(splits)) > 1:
            raise DataConfigError(f"splits {list(splits)}: 'all' holds every sample; give it alone or name splits")
        return build_splits(cfg, list(dict.fromkeys(splits)), (), {})
    try:
        return build_splits(cfg, (), DEFAULT_SPLITS, {})
    except UnknownSplitError:
        return build_splits(cfg, ("all",), (), {})


def _write_split(split: str, ds: SegmentationDataset, stage: _Stage) -> dict[str, Any]:
    """Stage every sample of ``ds`` under ``split/``; what was written (samples, whether any has a region)."""
    dtype = _mask_dtype(ds.info)
    stems: dict[str, str] = {}  # casefolded stem -> sample name (case-insensitive file systems)
    no_roi: list[tuple[str, tuple[int, int]]] = []
    for i in range(len(ds)):
        name = ds.sample_name(i)
        stem = file_name(name)
        if stem.casefold() in stems:
            raise DataError(f"split {split!r}: samples {stems[stem.casefold()]!r} and {name!r} would both be written "
                            f"as {stem!r} (names are compared ignoring case); rename one")
        stems[stem.casefold()] = name
        image, mask = ds.read(i)
        suffix, data = _image_file(image, f"sample {name!r}")
        stage.write(f"{split}/images/{stem}{suffix}", data)
        stage.write(f"{split}/masks/{stem}.png", _png(mask.astype(dtype)))
        roi = ds.read_roi(i)
        if roi is None:
            no_roi.append((stem, mask.shape))
        else:
            stage.write(f"{split}/roi/{stem}.png", _png(np.where(roi, 255, 0).astype(np.uint8)))
    has_roi = len(no_roi) < len(ds)
    for stem, shape in no_roi if has_roi else ():  # a sample without a region counts everywhere
        stage.write(f"{split}/roi/{stem}.png", _png(np.full(shape, 255, np.uint8)))
    log.info("converted split %r: %d samples%s", split, len(ds), " with regions of interest" if has_roi else "")
    return {"samples": len(ds), "roi": has_roi}


def _folder_config(out: Path, info: DatasetInfo, written: Mapping[str, Mapping[str, Any]], source: str) -> bytes:
    """``data.yaml``: a ``type: folder`` config that reads back what was written, split by split."""
    def layout(kind: str) -> str | dict[str, str]:
        if list(written) == ["all"]:
            return f"all/{kind}"
        return {split: f"{split}/{kind}" for split in written}  # only these splits: stale folders are never read

    config: dict[str, Any] = {"type": "folder", "root": str(out.resolve()), "images": layout("images"),
                              "masks": layout("masks")}
    if any(w["roi"] for w in written.values()):
        config["roi"] = layout("roi")
    config |= {"classes": list(info.classes), "mask_encoding": {"kind": "index"}, "ignore_index": info.ignore_index,
               "in_channels": info.in_channels}
    header = (f"# Written by `unetfamily dataset convert` from {source}: each sample as the loader reads it,\n"
              "# before resize and augmentation. Masks hold class indices.\n")
    return (header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True, default_flow_style=None)).encode()


def convert_dataset(
    config: Mapping[str, Any] | str | Path,
    out: str | Path,
    splits: Sequence[str] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write the splits of the dataset ``config`` describes into the plain ``folder`` layout at ``out``.

    Args:
        config: a dataset config (mapping, YAML path or type name), as for :func:`build_dataset`.
        out: the output folder; it must be new or empty unless ``overwrite``.
        splits: the splits to convert; default: train, val and test where defined, else ``all``.
        overwrite: replace ``data.yaml`` and the ``{split}/images|masks|roi`` folders already in ``out``.

    Returns ``{"out", "config" (the data.yaml path), "splits" ({split: samples}), "roi" (bool), "classes",
    "in_channels", "ignore_index"}``. Raises DataError (a bad file, an ``out`` that holds files) or
    DataConfigError; then ``out`` is as it was.
    """
    out = Path(out)
    _refuse_existing(out, overwrite)
    cfg = load_data_config(config)
    built = _choose_splits(cfg, splits)
    info = shared_info(built)
    if overwrite:
        _refuse_replacing_sources(out, built)
    created = not out.exists()
    stage = _Stage(out)
    try:
        written = {split: _write_split(split, ds, stage) for split, ds in built.items()}
        source = str(config) if isinstance(config, (str, Path)) else f"a {cfg['type']!r} config"
        stage.write(CONFIG_NAME, _folder_config(out, info, written, source))
        stage.publish()
    finally:
        shutil.rmtree(stage.path, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only when nothing was published
    return {"out": str(out), "config": str(out / CONFIG_NAME), "splits": {s: w["samples"] for s, w in written.items()},
            "roi": any(w["roi"] for w in written.values()), "classes": list(info.classes),
            "in_channels": info.in_channels, "ignore_index": info.ignore_index}
