"""Real data in without detours (issue 14): pairing, regions of interest, formats, convert, download.

Every case is refused (or, for the GIF masks, read correctly) before any training, so all are
fast. The pairing and ROI cases use a retinal-style tree made by :func:`retina`
(``ret/{split}/images/{id}_{tag}.png``, ``ret/{split}/labels/{id}_manual1.png``,
``ret/{split}/fov/{id}_{tag}_mask.png``) and a config ``ret.yaml`` with templates; the formats
and convert cases use the plain folder dataset of :meth:`Ctx.folder_data` (``data.yaml``). The
download cases never reach the network: each hands over an archive the setup builds
(``--archive``), shaped like GitHub's (``unet-COMMIT/data/membrane/...``), or is refused before
any download. A connection error (``--base-url http://127.0.0.1:9``) is not here: it is retried
5 times, 1 + 2 + 4 + 8 + 16 s apart, and the command has no flag to shorten that.
"""
from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .build import case, steps
from .checks import absent, all_of, no_checkpoint
from .model import Result, refused, succeeds
from .workspace import Ctx, Skip, mask_array, pattern

OWNER = "realdata"  # python tools/hostile.py --only realdata
NOT_A_FILE = ("regular file", "fifo", "named pipe", "device", "not a file")
#: The retina tree: split -> (file-name tag, sample ids).
SPLITS = {"train": ("training", (21, 22)), "val": ("val", (31, 32)), "test": ("test", (1, 2))}
TEMPLATES = {"images": "{split}/images/{id}_{tag}.png", "masks": "{split}/labels/{id}_manual1.png",
             "roi": "{split}/fov/{id}_{tag}_mask.png"}
INFO, CHECK = "dataset info ret.yaml --split train", "dataset check ret.yaml"
TRAIN = "train --config c.yaml"
NOT_TRAINED = no_checkpoint("exp1")
ISBI_TOP = "unet-b45af4d458437d8281cc218a07fd4380818ece4a/"  # GitHub's top folder of the ISBI 2012 source
DOWNLOAD = "dataset download isbi2012_em --to d --archive a.zip"


# -- the retina tree and its config ----------------------------------------------------------------

def _disc(h: int = 32, w: int = 32, radius: int = 14) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.where((yy - h // 2) ** 2 + (xx - w // 2) ** 2 <= radius ** 2, 255, 0).astype(np.uint8)


def _retina_files(ctx: Ctx) -> None:
    for split, (tag, ids) in SPLITS.items():
        for n, i in enumerate(ids):
            ctx.image(f"ret/{split}/images/{i}_{tag}.png", seed=i)
            ctx.mask(f"ret/{split}/labels/{i}_manual1.png", seed=n)
            ctx.array(f"ret/{split}/fov/{i}_{tag}_mask.png", _disc())


def retina(*changes: Any, train: bool = False, **keys: Any):
    """The retina tree, ``changes(ctx)``, then ``ret.yaml`` (TEMPLATES updated by ``keys``; None drops a key).

    ``train``: also ``c.yaml``, a tiny training config on it.
    """
    def run(ctx: Ctx) -> None:
        _retina_files(ctx)
        for change in changes:
            change(ctx)
        data: dict[str, Any] = {"type": "folder", "root": "ret", **TEMPLATES, **keys}
        data = {k: v for k, v in data.items() if v is not None}
        ctx.yaml("ret.yaml", data)
        if train:
            ctx.config(data=data, train={"checkpoint_every": 1})
    return run


def rm(rel: str):
    return lambda ctx: ctx.p(rel).unlink()


def put(rel: str, array: np.ndarray):
    return lambda ctx: ctx.array(rel, array)


def fifo(rel: str):
    def run(ctx: Ctx) -> None:
        ctx.p(rel).unlink()
        ctx.fifo(rel)
    return run


# -- plain folder data (data.yaml) and image files of other formats ----------------------------------

def folder(*changes: Any, **options: Any):
    """:meth:`Ctx.folder_data` (``data/``: train s0-s3, val s4-s5), ``changes(ctx)``, then ``data.yaml``."""
    def run(ctx: Ctx) -> None:
        data = ctx.folder_data(**options)
        for change in changes:
            change(ctx)
        ctx.yaml("data.yaml", data)
    return run


def _replace(rel: str, save: Any):
    """``data/rel`` (a PNG written by folder_data) replaced by ``save(path)`` of another suffix."""
    def run(ctx: Ctx) -> None:
        old = ctx.p(f"data/{rel}")
        stem = old.with_suffix("")
        old.unlink()
        save(stem)
    return run


def animated(rel: str, suffix: str, frames: int = 3):
    def save(stem: Path) -> None:
        pics = [Image.fromarray(pattern(32, 1, k)) for k in range(frames)]
        pics[0].save(stem.with_suffix(suffix), save_all=True, append_images=pics[1:], duration=100, loop=0)
    return _replace(rel, save)


def lossy_webp_mask(rel: str):
    return _replace(rel, lambda stem: Image.fromarray(mask_array(32, (0, 255), 1)).save(
        stem.with_suffix(".webp"), lossless=False, quality=60))


def gray_gif_mask(rel: str, seed: int):
    """A 0/255 mask as a gray-palette GIF whose index 0 is white: its indices are the inverse of its classes."""
    def save(stem: Path) -> None:
        pic = Image.fromarray((mask_array(32, (0, 255), seed) == 0).astype(np.uint8), mode="P")
        pic.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
        pic.save(stem.with_suffix(".gif"), optimize=False)
    return _replace(rel, save)


def palette_gif_mask(rel: str, seed: int):
    """Indices 0/1 with a coloured palette (black, red), saved with ``optimize=False`` as docs/data.md says."""
    def save(stem: Path) -> None:
        pic = Image.fromarray((mask_array(32, (0, 255), seed) > 0).astype(np.uint8), mode="P")
        pic.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
        pic.save(stem.with_suffix(".gif"), optimize=False)
    return _replace(rel, save)


def truncated_lzw(rel: str):
    """An LZW TIFF (Pillow's layout: pixel data first, the IFD at the end) cut to 2/3 of its bytes."""
    def save(stem: Path) -> None:
        path = stem.with_suffix(".tif")
        Image.fromarray(pattern(32, 1, 5)).save(path, compression="tiff_lzw")
        data = path.read_bytes()
        path.write_bytes(data[: len(data) * 2 // 3])
    return _replace(rel, save)


def corrupt(rel: str):
    return lambda ctx: ctx.data(f"data/{rel}", b"\x89PNG\r\n\x1a\n" + b"\0" * 40)


def converted_mask_is(rel: str, seed: int) -> Any:
    """``rel`` (a converted class-index mask) holds 1 on the disc of ``mask_array(seed)`` and 0 elsewhere."""
    def check(ctx: Ctx, result: Result) -> str | None:
        path = ctx.p(rel)
        if not path.is_file():
            return f"{rel} was not written"
        got = np.asarray(Image.open(path))
        want = (mask_array(32, (0, 255), seed) > 0).astype(got.dtype)
        if got.shape != want.shape or not np.array_equal(got, want):
            return f"{rel}: values {np.unique(got).tolist()}, {int((got != want).sum())} pixel(s) differ from the GIF"
        return None
    return check


def only_entries(rel: str, *names: str) -> Any:
    """The folder ``rel`` holds exactly ``names`` (hidden entries included): nothing half-written stays."""
    def check(ctx: Ctx, result: Result) -> str | None:
        found = sorted(os.listdir(ctx.p(rel))) if ctx.p(rel).is_dir() else None
        return None if found == sorted(names) else f"{rel} holds {found}, expected {sorted(names)}"
    return check


def out_folder(*entries: str):
    def run(ctx: Ctx) -> None:
        ctx.p("out").mkdir(exist_ok=True)
        for name in entries:
            ctx.text(f"out/{name}", f"mine: {name}\n")
        ctx.protect("out")
    return run


def mine(rel: str):
    def run(ctx: Ctx) -> None:
        ctx.text(rel, "the user's notes\n")
        ctx.protect(rel)
    return run


# -- archives --------------------------------------------------------------------------------------

def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _zip(ctx: Ctx, rel: str, members: dict[str, bytes], links: dict[str, str] | None = None) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, target)
    ctx.data(rel, buffer.getvalue())


def isbi_zip(members: dict[str, bytes] | None = None, links: dict[str, str] | None = None):
    """``a.zip``: GitHub's layout of the ISBI 2012 source with ``members`` (paths after the top folder)."""
    fake = {"data/membrane/train/image/0.png": _png(pattern(32)), "data/membrane/train/label/0.png": _png(mask_array())}
    chosen = fake if members is None else members
    return lambda ctx: _zip(ctx, "a.zip", {ISBI_TOP: b"", **{ISBI_TOP + k: v for k, v in chosen.items()}},
                            {ISBI_TOP + k: v for k, v in (links or {}).items()})


def _evil_zip(ctx: Ctx) -> None:
    _zip(ctx, "a.zip", {ISBI_TOP + "data/membrane/train/image/0.png": _png(pattern(32)), "../evil.png": b"evil"})


def _real_isbi_member(ctx: Ctx) -> None:
    """``a.zip`` holding one genuine file of the shared ISBI copy (its checksum matches), nothing else."""
    roots = [os.environ.get("UNETFAMILY_DATA_ROOT", ""), str(Path(__file__).resolve().parents[3] / "shared" / "data")]
    found = next((Path(r) / "isbi2012_em/train/image/0.png" for r in roots
                  if r and (Path(r) / "isbi2012_em/train/image/0.png").is_file()), None)
    if found is None:
        raise Skip("needs the shared ISBI 2012 copy (a file whose sha256 matches the shipped checksums)")
    isbi_zip({"data/membrane/train/image/0.png": found.read_bytes()})(ctx)


def _truncate(rel: str):
    def run(ctx: Ctx) -> None:
        data = ctx.p(rel).read_bytes()
        ctx.p(rel).write_bytes(data[: len(data) * 2 // 3])
    return run


def _existing_dataset(ctx: Ctx) -> None:
    ctx.text("d/isbi2012_em/train/image/0.png", "an earlier copy\n")
    ctx.protect("d")


NOTHING_INSTALLED = absent("d/isbi2012_em", "d/.isbi2012_em.partial")

PAIRING = [
    case("template_without_id", "unclear", "pairing", INFO, refused("masks", "{id}"),
         retina(masks="{split}/labels/{tag}_manual1.png"), owner=OWNER),
    case("template_id_twice", "unclear", "pairing", INFO, refused("images", "{id}"),
         retina(images="{split}/images/{id}_{id}.png"), owner=OWNER),
    case("template_dotdot", "unclear", "pairing", INFO, refused("masks", ".."),
         retina(masks="{split}/../labels/{id}_manual1.png"), owner=OWNER),
    case("template_absolute", "unclear", "pairing", INFO, refused("images", ("absolute", "relative")),
         retina(images="/tmp/{split}/{id}.png"), owner=OWNER),
    case("regex_without_id_group", "unclear", "pairing", INFO, refused("image_regex", "id"),
         retina(images="{split}/images", image_regex=r"(\d+)_training"), owner=OWNER),
    case("regex_does_not_compile", "traceback_or_hang", "pairing", INFO, refused("mask_regex", "regular expression"),
         retina(masks="{split}/labels", mask_regex=r"(?P<id>\d+_manual1"), owner=OWNER),
    case("regex_empty_id", "silently_wrong", "pairing", INFO, refused("_training.png", "empty"),
         retina(put("ret/train/images/_training.png", pattern(32)), images="{split}/images",
                image_regex=r"(?P<id>\d*)_training"), owner=OWNER, note="an id group that matches nothing"),
    case("image_without_mask_names_id", "unclear", "pairing", CHECK, refused("22_training.png", "'22'", "mask"),
         retina(rm("ret/train/labels/22_manual1.png")), owner=OWNER),
    case("two_files_one_id", "silently_wrong", "pairing", INFO, refused("21_old.png", "21_training.png", "'21'"),
         retina(put("ret/train/images/21_old.png", pattern(32))), owner=OWNER),
    case("template_matches_nothing", "unclear", "pairing", INFO, refused("{id}_label.png", "21_manual1.png"),
         retina(masks="{split}/labels/{id}_label.png"), owner=OWNER, note="the message shows a file that is there"),
    case("mapping_lacks_split", "unclear", "pairing", "dataset info ret.yaml --split test", refused("test", "images"),
         retina(images={"train": "train/images/{id}_training.png", "val": "val/images/{id}_val.png"}), owner=OWNER),
    case("roi_suffix_without_roi", "unclear", "pairing", INFO, refused("roi_suffix"),
         retina(roi=None, roi_suffix="_mask"), owner=OWNER),
    case("split_layout_with_splits", "unclear", "pairing", INFO, refused("splits"),
         retina(lambda c: c.text("ret/lists/train.txt", "21\n22\n"), splits={"train": "lists/train.txt"}),
         owner=OWNER),
    case("train_template_mask_missing", "unclear", "pairing", TRAIN, refused("31", "mask", check=NOT_TRAINED),
         retina(rm("ret/val/labels/31_manual1.png"), train=True), owner=OWNER, note="in val: found before training"),
]

ROI = [
    case("roi_other_size_info", "silently_wrong", "roi", INFO, refused("22_training.png", "22_training_mask.png"),
         retina(put("ret/train/fov/22_training_mask.png", _disc(32, 33))), owner=OWNER),
    case("roi_other_size_check", "silently_wrong", "roi", CHECK, refused("22_training.png", "22_training_mask.png"),
         retina(put("ret/train/fov/22_training_mask.png", _disc(32, 33))), owner=OWNER),
    case("roi_other_size_train", "silently_wrong", "roi", TRAIN, refused("32_val_mask.png", check=NOT_TRAINED),
         retina(put("ret/val/fov/32_val_mask.png", _disc(30, 32)), train=True), owner=OWNER),
    case("roi_is_a_fifo", "traceback_or_hang", "roi", CHECK, refused("21_training_mask.png", NOT_A_FILE),
         retina(fifo("ret/train/fov/21_training_mask.png")), owner=OWNER, timeout=30),
    case("roi_missing_for_one_image", "unclear", "roi", CHECK, refused("'2'", ("region", "roi")),
         retina(rm("ret/test/fov/2_test_mask.png")), owner=OWNER),
]

GIF_MASKS = folder(gray_gif_mask("masks/s1.png", 1), palette_gif_mask("masks/s2.png", 2))
GIF_MASKS_RIGHT = all_of(converted_mask_is("out/train/masks/s1.png", 1),
                         converted_mask_is("out/train/masks/s2.png", 2))
FORMATS = [
    case("animated_gif_image", "silently_wrong", "formats", "dataset check data.yaml", refused("s1.gif", "frames"),
         folder(animated("images/s1.png", ".gif")), owner=OWNER),
    case("lossy_webp_mask_no_threshold", "silently_wrong", "formats", "dataset check data.yaml",
         refused("s1.webp", ("lossy", "threshold")), folder(lossy_webp_mask("masks/s1.png")), owner=OWNER),
    case("truncated_lzw_tiff", "traceback_or_hang", "formats", "dataset check data.yaml",
         refused("s3.tif", ("corrupt", "damaged", "truncated")), folder(truncated_lzw("images/s3.png")),
         owner=OWNER, note="a download cut short: the IFD at the end is gone"),
    case("gif_masks_read_right", "silently_wrong", "formats", "dataset convert data.yaml --out out --split train",
         succeeds(GIF_MASKS_RIGHT), GIF_MASKS, owner=OWNER,
         note="a gray GIF with white at index 0 (read by what it shows) and a black/red palette GIF"),
]

CONVERT = "dataset convert data.yaml --out out"
CONVERTS = [
    case("convert_out_is_a_file", "data_loss", "convert", "dataset convert data.yaml --out notes.txt",
         refused("notes.txt"), steps(folder(), mine("notes.txt")), owner=OWNER),
    case("convert_out_not_empty", "data_loss", "convert", CONVERT, refused("out", "--overwrite", check=only_entries(
        "out", "notes")), steps(folder(), out_folder("notes")), owner=OWNER, note="nothing written, notes unchanged"),
    case("convert_split_misspelled", "unclear", "convert", f"{CONVERT} --split vall",
         refused("vall", "val", check=absent("out")), folder(), owner=OWNER),
    case("convert_corrupt_image_empty_out", "data_loss", "convert", CONVERT, refused("s5", check=only_entries("out")),
         steps(folder(corrupt("images/s5.png")), out_folder()), owner=OWNER, note="no hidden stage folder left"),
    case("convert_corrupt_image_overwrite", "data_loss", "convert", f"{CONVERT} --overwrite",
         refused("s5", check=only_entries("out", "data.yaml", "notes", "train")),
         steps(folder(corrupt("images/s5.png")), out_folder("data.yaml", "notes", "train/images/s0.png")),
         owner=OWNER, note="an earlier conversion stays as it was"),
    case("convert_over_source_folders", "data_loss", "convert", "dataset convert ret.yaml --out ret --overwrite",
         refused("--overwrite", "ret/train/images"), steps(retina(), lambda c: c.protect("ret")), owner=OWNER,
         note="ret/{split}/images would be replaced by the converted files"),
]

DOWNLOADS = [
    case("download_unknown_name", "unclear", "download", "dataset download isbi2012 --to d",
         refused("isbi2012", "isbi2012_em", check=absent("d")), owner=OWNER),
    case("download_to_is_a_file", "data_loss", "download",
         "dataset download isbi2012_em --to notes.txt --archive a.zip", refused("notes.txt"),
         steps(isbi_zip(), mine("notes.txt")), owner=OWNER),
    case("download_archive_not_an_archive", "traceback_or_hang", "download",
         "dataset download isbi2012_em --to d --archive notes.txt", refused("notes.txt", check=NOTHING_INSTALLED),
         mine("notes.txt"), owner=OWNER, note="the user's file is named, never removed"),
    case("download_zip_traversal", "data_loss", "download", DOWNLOAD,
         refused("a.zip", "../evil.png", check=all_of(NOTHING_INSTALLED, absent("evil.png", "d/evil.png"))),
         steps(_evil_zip, lambda c: c.protect("a.zip")), owner=OWNER),
    case("download_zip_symlink", "data_loss", "download", DOWNLOAD,
         refused("a.zip", "link", check=NOTHING_INSTALLED),
         isbi_zip({"data/membrane/train/label/0.png": _png(mask_array())},
                  links={"data/membrane/train/image/0.png": "/etc/passwd"}), owner=OWNER),
    case("download_zip_truncated", "traceback_or_hang", "download", DOWNLOAD,
         refused("a.zip", ("damaged", "truncated", "not a readable"), check=NOTHING_INSTALLED),
         steps(isbi_zip(), _truncate("a.zip")), owner=OWNER, note="an interrupted download handed over"),
    case("download_zip_unrelated", "silently_wrong", "download", DOWNLOAD,
         refused("a.zip", "train/image", check=NOTHING_INSTALLED), isbi_zip({"README.md": b"# another repo\n"}),
         owner=OWNER, note="no member where the dataset's files are"),
    case("download_zip_fake_member", "silently_wrong", "download", DOWNLOAD,
         refused("train/image/0.png", "sha256", check=NOTHING_INSTALLED), isbi_zip(), owner=OWNER),
    case("download_zip_missing_files", "silently_wrong", "download", DOWNLOAD,
         refused("not in the archive", "test/image/", check=NOTHING_INSTALLED), _real_isbi_member, owner=OWNER,
         note="one genuine file: the missing ones are named"),
    case("download_overwrite_bad_archive", "data_loss", "download", f"{DOWNLOAD} --overwrite",
         refused("sha256", "nothing was installed"), steps(isbi_zip(), _existing_dataset), owner=OWNER,
         note="the earlier copy stays until a verified one replaces it"),
    case("download_existing_without_overwrite", "data_loss", "download", DOWNLOAD,
         refused("isbi2012_em", "--overwrite"), steps(isbi_zip(), _existing_dataset), owner=OWNER),
]

CASES = [*PAIRING, *ROI, *FORMATS, *CONVERTS, *DOWNLOADS]
