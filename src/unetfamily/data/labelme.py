"""labelme JSON annotations -> class-index masks (``unetfamily dataset labelme``).

A labelme file (https://github.com/wkentaro/labelme, ``labelme/_label_file.py``) holds
``shapes`` (each with ``label``, ``points`` ``[[x, y], ...]``, ``shape_type``), the image as
``imagePath`` (relative to the JSON file) and optionally ``imageData`` (base64 of the image file),
plus ``imageHeight`` / ``imageWidth``. Shapes are rasterised as ``labelme.utils.shape_to_mask``
does (Pillow ``ImageDraw``; polygon, rectangle, circle = centre + point on the rim, line and
linestrip 10 px wide, point = 5 px radius disc, mask = a base64 PNG in the box of two points); later
shapes overwrite earlier ones, as in ``labelme.utils.shapes_to_label``.

Class lists follow labelme's ``labels.txt`` convention: one label per line, ``__ignore__`` marks
pixels to ignore and ``_background_`` is class 0. A label names its class with surrounding whitespace
stripped, as the folder loader reads ``classes.txt``; ``_background_`` and ``background`` (any case) are
class 0, ``__ignore__`` (any case) the ignore index.

``imagePath`` is only read inside the dataset root: an absolute path, or one that climbs out with
``..`` (symlinks resolved), is a DataError. When ``imageData`` is present it is used instead.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import glob
import io
import json
import logging
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageDraw

from unetfamily.data.errors import DataError
from unetfamily.data.io import natural_key, open_image, read_lines, regular_file
from unetfamily.files import WriteError, atomic_write_bytes
from unetfamily.overlay import class_colors

__all__ = ["LabelmeConversion", "LabelmeFile", "convert_labelme", "rasterize_shapes", "read_labelme"]

log = logging.getLogger(__name__)

LINE_WIDTH, POINT_SIZE = 10, 5  # labelme.utils.shape_to_mask defaults
MAX_COORDINATE = 1e6  # points farther out are corrupt, and drawing them (a circle of that radius) is slow
IGNORE_LABEL, BACKGROUND_LABEL = "__ignore__", "_background_"
#: Labels meaning class 0 (compared stripped and case-folded): labelme's and the name classes.txt gives it.
BACKGROUND_NAMES = frozenset({BACKGROUND_LABEL, "background"})
#: Suffix of a copied image by its Pillow format (the bytes are copied, never re-encoded).
IMAGE_SUFFIX = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "BMP": ".bmp", "TIFF": ".tif", "GIF": ".gif",
                "WEBP": ".webp"}


@dataclass
class LabelmeFile:
    """One parsed annotation: the image (Pillow, loaded), its file bytes, format and the shapes."""

    path: Path
    image: Image.Image
    image_bytes: bytes
    image_format: str
    shapes: list[dict]


@dataclass(frozen=True)
class LabelmeConversion:
    """What :func:`convert_labelme` wrote: ``files`` image/mask pairs, the class names (background
    first), and the pixel count of each class and of ``"<ignore>"``."""

    files: int
    classes: list[str]
    pixels: dict[str, int]


def _resolve_inside(root: Path, json_path: Path, image_path: str) -> Path:
    if "\x00" in image_path:
        raise DataError(f"{json_path}: imagePath {image_path!r} contains a NUL character")
    posix = image_path.replace("\\", "/")
    if PurePosixPath(posix).is_absolute() or (len(posix) > 1 and posix[1] == ":"):
        raise DataError(
            f"{json_path}: imagePath {image_path!r} is absolute; labelme paths must be relative to the JSON "
            "file and inside the dataset root. Fix the path or embed the image (imageData)"
        )
    target = (json_path.parent / posix).resolve()
    root = root.resolve()
    if not target.is_relative_to(root):
        raise DataError(
            f"{json_path}: imagePath {image_path!r} points outside the dataset root {root}; refusing to read it. "
            "Move the image under the root or fix imagePath"
        )
    return target


def _read_document(json_path: Path) -> dict:
    """The parsed JSON of a labelme file, checked to be an object whose ``shapes`` are objects."""
    regular_file(json_path, "labelme file")
    try:
        doc = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise DataError(f"{json_path}: not a readable labelme JSON file ({e})") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("shapes"), list):
        raise DataError(f"{json_path}: not a labelme file (no 'shapes' list)")
    for i, shape in enumerate(doc["shapes"]):
        if not isinstance(shape, dict):
            raise DataError(f"{json_path}: shape {i} is not an object with 'label', 'points' and 'shape_type'")
    return doc


def read_labelme(json_path: str | Path, root: str | Path | None = None) -> LabelmeFile:
    """Parse a labelme JSON file and load its image (``imageData`` if present, else ``imagePath``).

    ``root`` (default: the JSON file's folder) bounds where ``imagePath`` may point.
    """
    json_path = Path(json_path)
    root = Path(root) if root is not None else json_path.parent
    doc = _read_document(json_path)
    if doc.get("imageData"):
        try:
            data = base64.b64decode(doc["imageData"], validate=True)
        except (binascii.Error, ValueError, TypeError) as e:
            raise DataError(f"{json_path}: imageData is not valid base64 ({e})") from e
        image = open_image(io.BytesIO(data), f"{json_path} (imageData)")
    elif doc.get("imagePath"):
        source = _resolve_inside(root, json_path, str(doc["imagePath"]))
        image = open_image(source)
        data = source.read_bytes()
    else:
        raise DataError(f"{json_path}: neither imageData nor imagePath is set")
    h, w = doc.get("imageHeight"), doc.get("imageWidth")
    if (h is not None and h != image.height) or (w is not None and w != image.width):
        raise DataError(
            f"{json_path}: imageHeight/imageWidth {h}x{w} do not match the image ({image.height}x{image.width})"
        )
    return LabelmeFile(json_path, image, data, image.format or "PNG", doc["shapes"])


def _shape_mask(shape: Mapping, height: int, width: int, where: Path) -> np.ndarray:
    kind = shape.get("shape_type") or "polygon"
    if not isinstance(kind, str):
        raise DataError(f"{where}: shape_type {kind!r} is not supported")
    try:
        xy = [(float(x), float(y)) for x, y in shape["points"]]
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise DataError(f"{where}: shape {shape.get('label')!r} has malformed 'points' ({e})") from e
    if not all(abs(v) <= MAX_COORDINATE for point in xy for v in point):
        raise DataError(
            f"{where}: shape {shape.get('label')!r} has points that are not finite or beyond +-{MAX_COORDINATE:g} px"
        )
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    need = {"circle": 2, "rectangle": 2, "line": 2, "point": 1, "oriented_rectangle": 4, "mask": 2}
    if kind in need and len(xy) != need[kind] or kind == "polygon" and len(xy) < 3:
        raise DataError(f"{where}: {kind} shape {shape.get('label')!r} has {len(xy)} points")
    if kind == "circle":
        (cx, cy), (px, py) = xy
        _disc(draw, cx, cy, math.hypot(cx - px, cy - py))
    elif kind == "rectangle":
        (x0, y0), (x1, y1) = xy
        draw.rectangle(((min(x0, x1), min(y0, y1)), (max(x0, x1), max(y0, y1))), outline=1, fill=1)
    elif kind in ("line", "linestrip"):
        draw.line(xy, fill=1, width=LINE_WIDTH)
    elif kind == "point":
        _disc(draw, *xy[0], POINT_SIZE)
    elif kind in ("polygon", "oriented_rectangle"):
        draw.polygon(xy, outline=1, fill=1)
    elif kind == "mask":
        return _embedded_mask(shape, xy, height, width, where)
    else:
        raise DataError(f"{where}: shape_type {kind!r} is not supported")
    return np.asarray(canvas, dtype=bool)


def _disc(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float) -> None:
    draw.ellipse(((cx - r, cy - r), (cx + r, cy + r)), outline=1, fill=1)


def _embedded_mask(shape: Mapping, xy: list, height: int, width: int, where: Path) -> np.ndarray:
    try:
        patch = np.asarray(open_image(io.BytesIO(base64.b64decode(shape["mask"])), where)).astype(bool)
    except (KeyError, TypeError, ValueError, binascii.Error, DataError) as e:
        raise DataError(f"{where}: mask shape {shape.get('label')!r} has no readable base64 'mask' ({e})") from e
    if patch.ndim == 3:
        patch = patch.any(axis=-1)
    x1, y1 = (int(v) for v in xy[0])
    ph, pw = patch.shape
    top, left, bottom, right = max(y1, 0), max(x1, 0), min(y1 + ph, height), min(x1 + pw, width)
    out = np.zeros((height, width), bool)
    if bottom > top and right > left:  # the part of the patch that lies on the image
        out[top:bottom, left:right] = patch[top - y1 : bottom - y1, left - x1 : right - x1]
    return out


def rasterize_shapes(
    shapes: Sequence[Mapping],
    height: int,
    width: int,
    class_index: Mapping[str, int],
    where: Path | str = "<shapes>",
) -> np.ndarray:
    """Paint ``shapes`` in order into a ``(height, width)`` uint8 class-index mask (0 where unlabelled).

    ``class_index`` maps labels to class indices (or the ignore index); an unknown label is a DataError.
    """
    mask = np.zeros((height, width), np.uint8)
    lookup = {_class_name(name): value for name, value in class_index.items()}
    for i, shape in enumerate(shapes):
        label = _label(shape, i, where)
        if _class_name(label) not in lookup:
            raise DataError(f"{where}: label {label!r} is not in the class list {sorted(class_index)} (shape {i}); "
                            "add it to --labels")
        mask[_shape_mask(shape, height, width, Path(str(where)))] = lookup[_class_name(label)]
    return mask


def _label(shape: Mapping, i: int, where: Path | str) -> str:
    """The ``label`` of shape ``i``; a DataError unless it is a string of one non-blank line."""
    label = shape.get("label")
    if not isinstance(label, str) or len(label.strip().splitlines()) != 1:  # "", "  ", "a\nb" included
        raise DataError(f"{where}: shape {i}: label must be a non-empty one-line string, got "
                        f"{repr(label) if 'label' in shape else 'none'}; set the shape's label in labelme")
    return label


def _class_name(label: str) -> str:
    """The class ``label`` names: stripped (as classes.txt is read), reserved names in labelme's spelling."""
    name = label.strip()
    if name.casefold() in BACKGROUND_NAMES:
        return BACKGROUND_LABEL
    return IGNORE_LABEL if name.casefold() == IGNORE_LABEL else name


def _class_list(labels_file: Path | None, files: list[Path], source: Path) -> list[str]:
    """Class names, ``_background_`` first; ``__ignore__`` is not a class (it maps to ignore_index).

    Without ``labels_file``: the sorted labels found; two spellings of one class (case, whitespace) are refused.
    """
    reserved = (IGNORE_LABEL, BACKGROUND_LABEL)
    if labels_file is not None:
        names = [_class_name(n) for n in read_lines(labels_file, "the labels file")]
        names = [n for n in names if n not in reserved]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice or not names:
            raise DataError(f"{labels_file}: " + (f"{twice} listed twice; list each class once" if twice else
                            f"no class besides {', '.join(reserved)}; add the class names, one per line"))
        return [BACKGROUND_LABEL, *names]
    first: dict[str, tuple[str, Path]] = {}  # case-folded class name -> (label as first written, its file)
    for f in files:
        for i, shape in enumerate(_read_document(f)["shapes"]):
            label = _label(shape, i, f)
            if _class_name(label) not in reserved:
                seen = first.setdefault(_class_name(label).casefold(), (label, f))
                if seen[0] != label:
                    raise DataError(
                        f"{seen[1]}: label {seen[0]!r} and {f}: label {label!r} differ only in letter case or "
                        "surrounding whitespace; nothing was written. Make them the same in the labelme files, or give "
                        "--labels (it matches labels ignoring surrounding whitespace; list both if they are 2 classes)"
                    )
    if not first:
        raise DataError(f"{source}: no shape in the {len(files)} labelme file(s) has a class label (only "
                        "__ignore__ / background shapes, or none): nothing to segment; label objects or give --labels")
    return [BACKGROUND_LABEL, *sorted(_class_name(label) for label, _ in first.values())]


def convert_labelme(
    source: str | Path,
    out: str | Path,
    labels_file: str | Path | None = None,
    ignore_index: int = 255,
    root: str | Path | None = None,
    overwrite: bool = False,
) -> LabelmeConversion:
    """Convert every ``*.json`` under ``source`` into ``out/images``, ``out/masks``, ``out/classes.txt``.

    Masks are palette PNGs whose indices are classes (``ignore_index`` for ``__ignore__``), so
    ``{type: folder, root: out, classes: out/classes.txt}`` loads the result. Images keep their file
    bytes and format. ``root`` (default: ``source``, or its folder for a single file) bounds where
    ``imagePath`` may point.

    All or nothing: files that already exist where the dataset would go are refused before
    anything is read (a :class:`DataError` naming one), unless ``overwrite``; every file is first
    written (atomically) into a hidden folder inside ``out`` and moved into place only once all
    are written, so a bad annotation or a full disk leaves ``out`` as it was.
    """
    source, out = Path(source), Path(out)
    files = [source] if source.is_file() else sorted(source.rglob("*.json"), key=lambda p: natural_key(str(p)))
    root = Path(root) if root is not None else (source.parent if source.is_file() else source)
    if not files:
        raise DataError(f"{source}: no labelme *.json files found")
    stems = [f.stem for f in files]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise DataError(f"{source}: several JSON files share the name(s) {dupes[:5]}; output names must be unique")
    if not overwrite:
        _refuse_existing(out, stems)
    classes = _class_list(Path(labels_file) if labels_file else None, files, source)
    if not len(classes) <= ignore_index <= 255:
        raise DataError(
            f"{len(classes)} classes do not fit an 8-bit PNG mask with ignore_index={ignore_index} (--ignore-index); "
            "the ignore index must lie between the number of classes and 255"
        )
    class_index = {name: i for i, name in enumerate(classes)} | {IGNORE_LABEL: ignore_index}
    names = ["background", *classes[1:]]
    created = not out.exists()
    stage = out / f".labelme-{os.getpid()}.tmp"
    try:
        counts, written = _write_staged(files, root, class_index, _palette(ignore_index), stage, out)
        written.append(_staged(stage, out, "classes.txt", ("\n".join(names) + "\n").encode("utf-8")))
        _publish(stage, out, written)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only when nothing was published
    pixels = {name: int(counts[i]) for i, name in enumerate(names)}
    pixels["<ignore>"] = int(counts[ignore_index])
    log.info("converted %d labelme file(s) into %s with %d classes", len(files), out, len(classes))
    return LabelmeConversion(len(files), names, pixels)


def _refuse_existing(out: Path, stems: list[str]) -> None:
    """A DataError when ``out`` holds a file the conversion would replace (an image of any suffix counts)."""
    images, masks = out / "images", out / "masks"
    by_stem = {p.stem: p for p in sorted(images.iterdir())} if images.is_dir() else {}
    existing = [out / "classes.txt"] if os.path.lexists(out / "classes.txt") else []
    for stem in stems:
        existing += [by_stem[stem]] if stem in by_stem else []
        existing += [masks / f"{stem}.png"] if os.path.lexists(masks / f"{stem}.png") else []
    if existing:
        raise DataError(
            f"{out} already holds {len(existing)} file(s) this conversion would replace (e.g. {existing[0]}); "
            "nothing was written. Add --overwrite to replace them, or choose another --out"
        )


def _write_staged(files: list[Path], root: Path, class_index: Mapping[str, int], palette: list[int], stage: Path,
                  out: Path) -> tuple[np.ndarray, list[str]]:
    """Write every image and mask into ``stage``; (pixel counts per mask value, the files' paths relative to it)."""
    counts = np.zeros(256, np.int64)
    written = []
    for f in files:
        ann = read_labelme(f, root)
        mask = rasterize_shapes(ann.shapes, ann.image.height, ann.image.width, class_index, f)
        counts += np.bincount(mask.ravel(), minlength=256)
        written.append(_staged(stage, out, f"images/{f.stem}{IMAGE_SUFFIX.get(ann.image_format, '.png')}",
                               ann.image_bytes))
        png = Image.fromarray(mask)
        png.putpalette(palette)  # "L" -> "P", pixel values kept as palette indices
        buffer = io.BytesIO()
        png.save(buffer, format="PNG")
        written.append(_staged(stage, out, f"masks/{f.stem}.png", buffer.getvalue()))
    return counts, written


def _staged(stage: Path, out: Path, name: str, data: bytes) -> str:
    """Write ``data`` to ``stage/name``; a failure is a WriteError naming ``out/name``, where it was going."""
    atomic_write_bytes(stage / name, data, shown_as=out / name)
    return name


def _publish(stage: Path, out: Path, names: list[str]) -> None:
    """Move the staged files into ``out``; an image replaces the old image of its name whatever its suffix."""
    for name in names:
        target = out / name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if name.startswith("images/"):
                for old in target.parent.glob(f"{glob.escape(target.stem)}.*"):
                    if old.stem == target.stem and old.name != target.name:
                        old.unlink()
            os.replace(stage / name, target)
        except OSError as exc:
            raise WriteError(target, exc) from exc


def _palette(ignore_index: int) -> list[int]:
    """The project's class colours (:mod:`unetfamily.overlay`) as a PNG palette; ``ignore_index`` light grey."""
    colors = class_colors(np.arange(256))
    colors[ignore_index] = (224, 224, 192)  # VOC's colour for its ignored object borders
    return colors.ravel().tolist()
