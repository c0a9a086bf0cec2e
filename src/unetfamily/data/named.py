"""The real datasets in ``$UNETFAMILY_DATA_ROOT`` (see each folder's SOURCE.md), one call each.

=================  =======  ============================  ==================================  ============
type               samples  classes                       foreground / mask                   splits
=================  =======  ============================  ==================================  ============
isbi2012_em        30       background, membrane          label == 0 (membrane), see below     24/6 slices
dsb2018_nuclei     664      background, nucleus           masks/ 255, or instances/ > 0        80/10/10 seeded
kvasir_seg         1000     background, polyp             JPEG gray > 127                      880/120 lists
camvid             196      11 SegNet classes             class-index PNG, 11 = void (ignore)  123/34/39 lists
=================  =======  ============================  ==================================  ============

ISBI 2012: labels are 255 for cell interior and 0 for membrane. The challenge and the U-Net
paper segment *membranes*, the thin 22 % minority that separates cells; predicting them is the
task's point, so ``membrane`` is class 1 (``foreground="cell"`` gives the other convention, which
many reimplementations use by training on ``label / 255``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from unetfamily.data.base import PairedFilesDataset, SamplePaths
from unetfamily.data.encodings import MaskEncoding
from unetfamily.data import options
from unetfamily.data.errors import DataError, unknown_choice, unknown_split
from unetfamily.data.formats import pair_folder
from unetfamily.data.io import regular_file
from unetfamily.data.registry import named_root, register_dataset
from unetfamily.data.splits import check_listed, read_split_file, select_samples

__all__ = ["CAMVID_CLASSES", "camvid", "dsb2018_nuclei", "isbi2012_em", "kvasir_seg"]

CAMVID_CLASSES = [
    "sky", "building", "pole", "road", "pavement", "tree",
    "sign_symbol", "fence", "car", "pedestrian", "bicyclist",
]  # fmt: skip


@register_dataset
def isbi2012_em(
    split: str,
    *,
    root: str | Path | None = None,
    foreground: Literal["membrane", "cell"] = "membrane",
    val_slices: int = 6,
    resize: int | Sequence[int] | None = None,
    cache: bool = True,
) -> PairedFilesDataset:
    """ISBI 2012 EM: 30 labelled 512x512 slices; ``train`` = slices 0-23, ``val`` = the last ``val_slices``.

    The 30 test slices have no public labels, so there is no ``test`` split.
    """
    root = named_root("isbi2012_em", root)
    if foreground not in ("membrane", "cell"):
        raise unknown_choice("isbi2012_em foreground", foreground, ("membrane", "cell"))
    pairs = pair_folder(root / "train" / "image", root / "train" / "label")
    n = len(pairs)
    val_slices = options.integer("val_slices", val_slices, lo=1, hi=n - 1)
    parts = {"all": pairs, "train": pairs[: n - val_slices], "val": pairs[n - val_slices :]}
    if split not in parts:
        raise unknown_split("isbi2012_em split", split, parts, hint="the test slices have no labels")
    values = {0: 1, 255: 0} if foreground == "membrane" else {0: 0, 255: 1}
    return PairedFilesDataset(
        parts[split],
        ["background", foreground],
        encoding=MaskEncoding("map", values=values),
        in_channels=1,
        resize=resize,
        cache=cache,
    )


@register_dataset
def dsb2018_nuclei(
    split: str,
    *,
    root: str | Path | None = None,
    masks: Literal["masks", "instances"] = "masks",
    splits: Mapping[str, object] | None = None,
    resize: int | Sequence[int] | None = None,
    cache: bool = False,
    strict: bool = False,
) -> PairedFilesDataset:
    """2018 Data Science Bowl stage1_train (fixed): 664 RGBA images (alpha dropped), 9 sizes.

    ``masks="instances"`` reads the 16-bit instance maps and reduces them to nucleus/background,
    which equals ``masks/``. No split ships; the default is a seeded 80/10/10 split.
    """
    root = named_root("dsb2018_nuclei", root)
    if masks not in ("masks", "instances"):
        raise unknown_choice("dsb2018_nuclei masks", masks, ("masks", "instances"))
    pairs = pair_folder(root / "images", root / masks)
    spec = {"fractions": {"train": 0.8, "val": 0.1, "test": 0.1}, "seed": 0} if splits is None else splits
    chosen = select_samples(pairs, split, spec, root, strict=strict)
    encoding = MaskEncoding("binary" if masks == "masks" else "instance")
    return PairedFilesDataset(
        chosen, ["background", "nucleus"], encoding=encoding, in_channels=3, resize=resize, cache=cache
    )


@register_dataset
def kvasir_seg(
    split: str,
    *,
    root: str | Path | None = None,
    threshold: int = 127,
    resize: int | Sequence[int] | None = None,
    cache: bool = False,
    strict: bool = False,
) -> PairedFilesDataset:
    """Kvasir-SEG polyps: 1000 RGB JPEGs with JPEG masks (gray > ``threshold`` is polyp).

    Splits are the official Medico 2020 lists: ``train`` 880, ``val`` 120.
    """
    root = named_root("kvasir_seg", root)
    threshold = options.integer("threshold", threshold, lo=0, hi=254)
    pairs = pair_folder(root / "images", root / "masks")
    lists = {"train": "splits_medico2020/train.txt", "val": "splits_medico2020/val.txt"}
    chosen = select_samples(pairs, split, lists, root, strict=strict)
    return PairedFilesDataset(
        chosen,
        ["background", "polyp"],
        encoding=MaskEncoding("binary", threshold=threshold),
        in_channels=3,
        resize=resize,
        cache=cache,
    )


@register_dataset
def camvid(
    split: str,
    *,
    root: str | Path | None = None,
    resize: int | Sequence[int] | None = None,
    cache: bool = False,
    strict: bool = False,
) -> PairedFilesDataset:
    """CamVid (SegNet version, subset): 480x360 RGB, 11 classes, void (11) is ``ignore_index``.

    Splits follow SegNet's lists: ``train`` 123, ``val`` 34, ``test`` 39 (``all`` = 196). Class
    0 is ``sky``: this dataset has no background class.
    """
    root = named_root("camvid", root)
    splits = ("train", "val", "test") if split == "all" else (split,)
    if any(s not in ("train", "val", "test") for s in splits):
        raise unknown_split("camvid split", split, ("train", "val", "test", "all"))
    pairs = []
    for s in splits:
        listed = root / f"{s}.txt"
        for name in check_listed(read_split_file(listed), listed, strict):
            image, mask = root / s / f"{name}.png", root / f"{s}annot" / f"{name}.png"
            try:
                regular_file(image, "image")
                regular_file(mask, "mask")
            except DataError as e:
                raise DataError(f"{listed}: sample {name!r}: {e}") from e
            pairs.append(SamplePaths(name, image, mask))
    return PairedFilesDataset(
        pairs,
        CAMVID_CLASSES,
        encoding=MaskEncoding("index"),
        ignore_index=11,
        in_channels=3,
        resize=resize,
        cache=cache,
    )
