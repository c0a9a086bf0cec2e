"""Mask encodings: how the pixel values of a mask file become class indices.

Kinds (declared in a config as ``mask_encoding: KIND`` or ``mask_encoding: {kind: KIND, ...}``):

``index``     values are class indices ``0..num_classes-1``, plus ``ignore_index`` (class-index PNGs,
              palette PNGs such as Pascal VOC, whose palette *indices* are the classes).
``binary``    two classes: ``{0, 255}`` or ``{0, 1}``; with ``threshold: t``, ``value > t`` is class 1
              (JPEG masks and anti-aliased masks carry intermediate values).
``instance``  an instance-label map (0 = background, 1..N = objects, 8 or 16 bit) reduced to
              foreground (class 1) versus background.
``rgb``       colour-coded masks; ``colors`` maps ``[r, g, b]`` to a class index (or ignore_index).
``map``       grayscale values mapped through ``values: {raw: class}``; every raw value must be listed.
``auto``      (default) decided per file, without state, and never by a guess that could be wrong:
              palette -> index; for two classes ``{0, 1}`` or ``{0, 255}`` -> binary (both 1 and 255 in
              one file is ambiguous and an error); for more classes -> index. JPEG masks need a
              ``threshold``, colour masks need ``rgb`` + ``colors``, anything else is an error.

Every decoder checks the values it finds: a mask with a value outside the declared classes raises
:class:`DataError` naming the file and the values.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from unetfamily.data import options
from unetfamily.data.errors import DataConfigError, DataError, check_keys, unknown_choice
from unetfamily.data.io import RawMask

__all__ = ["MaskEncoding", "ambiguous_reading", "decode_mask"]

log = logging.getLogger(__name__)

EncodingKind = Literal["auto", "index", "binary", "instance", "rgb", "map"]
_KINDS: tuple[str, ...] = get_args(EncodingKind)


@dataclass(frozen=True)
class MaskEncoding:
    """How to turn a mask file into class indices (see the module docstring for the kinds)."""

    kind: EncodingKind = "auto"
    threshold: int | None = None
    colors: Mapping[tuple[int, int, int], int] | None = None
    values: Mapping[int, int] | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise unknown_choice("mask_encoding kind", self.kind, _KINDS)
        if self.kind == "rgb" and not self.colors:
            raise DataConfigError("mask_encoding 'rgb' needs a 'colors' table mapping [r, g, b] to class indices")
        if self.kind == "map" and not self.values:
            raise DataConfigError("mask_encoding 'map' needs a 'values' table mapping raw values to class indices")
        if self.threshold is not None:
            if self.kind not in ("auto", "binary"):
                raise DataConfigError(f"mask_encoding 'threshold' applies to binary masks, not to kind {self.kind!r}")
            options.integer("mask_encoding threshold", self.threshold, lo=0)

    @classmethod
    def parse(cls, spec: str | Mapping[str, Any] | MaskEncoding | None) -> MaskEncoding:
        """Build from a config value: ``None``, a kind name, a mapping, or a MaskEncoding."""
        if spec is None:
            return cls()
        if isinstance(spec, MaskEncoding):
            return spec
        if isinstance(spec, str):
            return cls(kind=spec)  # type: ignore[arg-type]
        options.mapping("mask_encoding", spec, "give a kind name or {kind, threshold, colors, values}")
        check_keys("mask_encoding", spec, ("kind", "threshold", "colors", "values"))
        colors = spec.get("colors")
        if colors is not None:
            colors = _parse_colors(colors)
        values = spec.get("values")
        if values is not None:
            values = _parse_values(values)
        return cls(kind=spec.get("kind", "auto"), threshold=spec.get("threshold"), colors=colors, values=values)

    def check_classes(self, num_classes: int, ignore_index: int = 255) -> None:
        """Raise DataConfigError when this encoding cannot produce ``num_classes`` classes.

        Every class a ``colors`` or ``values`` table maps to must be ``0..num_classes-1`` or ``ignore_index``.
        """
        if self.kind in ("binary", "instance") and num_classes != 2:
            raise DataConfigError(
                f"mask_encoding {self.kind!r} gives 2 classes, but the dataset declares {num_classes}"
            )
        for key, table in (("colors", self.colors), ("values", self.values)):
            wrong = sorted({c for c in (table or {}).values() if not (0 <= c < num_classes or c == ignore_index)})
            if wrong:
                raise DataConfigError(
                    f"mask_encoding {key} maps to {wrong}, which are neither classes 0..{num_classes - 1} nor "
                    f"ignore_index={ignore_index}; fix the table or the 'classes'"
                )


def _parse_colors(colors: Any) -> dict[tuple[int, int, int], int]:
    """Accept ``{class: [r, g, b]}`` (YAML-friendly) or ``{(r, g, b): class}``; each colour given once."""
    options.mapping("mask_encoding colors", colors, "give {class_index: [r, g, b], ...}")
    out: dict[tuple[int, int, int], int] = {}
    for key, value in colors.items():
        rgb, cls = (key, value) if isinstance(key, tuple) else (value, key)
        where = f"mask_encoding colors[{cls!r}]"
        if not isinstance(rgb, (list, tuple)) or len(rgb) != 3:
            raise DataConfigError(f"{where}={rgb!r} is not an [r, g, b] triple")
        colour = tuple(options.integer(where, c, lo=0, hi=255) for c in rgb)
        if colour in out:
            raise DataConfigError(f"mask_encoding colors: {list(colour)} is given to classes {out[colour]} and {cls}; "
                                  "a colour must mean one class")
        out[colour] = options.integer(f"mask_encoding colors key {cls!r}", cls, lo=0)  # type: ignore[index]
    return out


def _parse_values(values: Any) -> dict[int, int]:
    """``{raw: class}`` with whole numbers >= 0 on both sides."""
    options.mapping("mask_encoding values", values, "give {raw_value: class_index, ...}")
    return {
        options.integer("mask_encoding values key", k, lo=0): options.integer(f"mask_encoding values[{k!r}]", v, lo=0)
        for k, v in values.items()
    }


def _values_str(values: np.ndarray, limit: int = 12) -> str:
    shown = ", ".join(str(v) for v in values[:limit].tolist())
    return "{" + shown + (f", ... ({len(values)} values)" if len(values) > limit else "") + "}"


def _gray(raw: RawMask, kind: str) -> np.ndarray:
    v = raw.values
    if v.ndim == 2:
        return v
    if (v[..., 0] == v[..., 1]).all() and (v[..., 0] == v[..., 2]).all():
        return v[..., 0]  # RGB file with R = G = B (e.g. Kvasir-SEG masks)
    raise DataError(
        f"{raw.path}: colour mask (R, G, B differ) cannot use encoding {kind!r}; "
        "declare mask_encoding {kind: rgb, colors: {class_index: [r, g, b], ...}}"
    )


def _check_index(mask: np.ndarray, num_classes: int, ignore_index: int, raw: RawMask) -> np.ndarray:
    found = np.unique(mask)
    bad = found[(found >= num_classes) & (found != ignore_index)] if found.size else found
    if np.issubdtype(found.dtype, np.signedinteger):
        bad = np.union1d(bad, found[found < 0])
    if bad.size:
        raise DataError(
            f"{raw.path}: mask values {_values_str(bad)} are outside the classes 0..{num_classes - 1} "
            f"(ignore_index={ignore_index}); found {_values_str(found)}. Declare the right classes or "
            "mask_encoding (binary 0/255 masks: 'binary'; instance maps: 'instance'; colours: 'rgb')"
        )
    return mask


def _lossy_error(raw: RawMask) -> DataError:
    return DataError(
        f"{raw.path}: lossy (JPEG or lossy WebP) mask: compression noise adds values that are not classes. For a binary mask "
        "declare mask_encoding {kind: binary, threshold: 127} (value > 127 is foreground); for "
        "multi-class masks re-save them losslessly as PNG"
    )


def decode_mask(raw: RawMask, encoding: MaskEncoding, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """Decode a raw mask into class indices, shape ``(H, W)``, dtype uint8 (int16 past 255 classes).

    Raises DataError naming the file when a value is outside ``0..num_classes-1`` and
    ``ignore_index``, or when the file cannot be decoded with ``encoding``.
    """
    raw = _whole_numbers(raw)
    kind = encoding.kind
    if kind == "auto":
        kind = _resolve_auto(raw, encoding, num_classes)
    dtype = np.uint8 if max(num_classes - 1, ignore_index) <= 255 else np.int16
    if kind == "rgb":
        return _decode_rgb(raw, encoding, num_classes, ignore_index).astype(dtype)
    if raw.lossy and encoding.threshold is None:
        raise _lossy_error(raw)
    gray = _gray(raw, kind)
    if kind == "binary":
        return _decode_binary(gray, encoding.threshold, raw).astype(dtype)
    if kind == "instance":
        if np.issubdtype(gray.dtype, np.signedinteger) and gray.size and gray.min() < 0:
            raise DataError(f"{raw.path}: instance labels must be >= 0; found {_values_str(np.unique(gray[gray < 0]))}")
        return (gray > 0).astype(dtype)
    if kind == "map":
        return _check_index(_decode_map(gray, encoding.values or {}, raw), num_classes, ignore_index, raw).astype(dtype)
    return _check_index(gray, num_classes, ignore_index, raw).astype(dtype)


def _whole_numbers(raw: RawMask) -> RawMask:
    """``raw`` with float or bool values as integers; a DataError if a float value is not a whole number."""
    v = raw.values
    if v.dtype == bool:
        return RawMask(v.astype(np.uint8), raw.palette, raw.lossy, raw.path)
    if not np.issubdtype(v.dtype, np.floating):
        return raw
    found = np.unique(v)
    bad = found[~np.isfinite(found) | (found != np.round(found))]
    if bad.size:
        raise DataError(
            f"{raw.path}: float mask values {_values_str(bad)} are not whole numbers; a mask holds class "
            "values (save it as 8/16-bit integers, or threshold it first)"
        )
    return RawMask(v.astype(np.int64), raw.palette, raw.lossy, raw.path)


def ambiguous_reading(raw: RawMask, encoding: MaskEncoding, num_classes: int) -> str | None:
    """How ``auto`` reads a two-class gray mask whose meaning depends on the dataset's other masks.

    ``"index"`` for values in {0, 1} with a 1, ``"binary"`` for {0, 255} with a 255, ``"either"``
    for an all-0 mask; ``None`` where the encoding decides by a fixed rule (declared kinds, palette,
    threshold, more classes). A dataset whose masks read both ``"index"`` and ``"binary"`` uses 255
    once as foreground and once as ignore: :func:`unetfamily.data.check.check_dataset` refuses it.
    """
    if encoding.kind != "auto" or encoding.threshold is not None or raw.palette or raw.lossy or num_classes != 2:
        return None
    try:
        found = np.unique(_gray(_whole_numbers(raw), "auto"))
    except DataError:  # not a gray mask of whole numbers: decode_mask reports it
        return None
    if np.isin(found, (0,)).all():
        return "either"
    if np.isin(found, (0, 1)).all():
        return "index"
    return "binary" if np.isin(found, (0, 255)).all() else None


def _resolve_auto(raw: RawMask, encoding: MaskEncoding, num_classes: int) -> str:
    if encoding.threshold is not None:
        return "binary"
    if raw.lossy:
        raise _lossy_error(raw)
    if raw.palette:
        return "index"
    if num_classes == 2:
        gray = _gray(raw, "auto")
        found = np.unique(gray)
        if np.isin(found, (0, 255)).all() and not np.isin(found, (0, 1)).all():
            return "binary"
        if np.isin(found, (0, 1)).all():
            return "index"
        raise DataError(
            f"{raw.path}: values {_values_str(found)} are not a binary mask ({{0, 1}} or {{0, 255}}). "
            "Declare mask_encoding: 'index' if 255 means ignore, {kind: binary, threshold: T} for "
            "anti-aliased masks, or 'instance' for instance-label maps"
        )
    return "index"


def _decode_binary(gray: np.ndarray, threshold: int | None, raw: RawMask) -> np.ndarray:
    if threshold is not None:
        return gray > threshold
    found = np.unique(gray)
    if np.isin(found, (0, 1)).all():
        return gray.astype(bool)
    if np.isin(found, (0, 255)).all():
        return gray == 255
    raise DataError(
        f"{raw.path}: binary mask values {_values_str(found)} are not {{0, 255}} or {{0, 1}}; "
        "set mask_encoding threshold (value > threshold is foreground) or fix the file"
    )


def _decode_map(gray: np.ndarray, values: Mapping[int, int], raw: RawMask) -> np.ndarray:
    found = np.unique(gray)
    missing = found[~np.isin(found, list(values))]
    if missing.size:
        raise DataError(
            f"{raw.path}: mask values {_values_str(missing)} are not in mask_encoding 'values' "
            f"(declared: {sorted(values)}); add them or fix the file"
        )
    lut = np.zeros(int(found.max()) + 1, dtype=np.int64)
    for k, v in values.items():
        if k < lut.size:
            lut[k] = v
    return lut[gray]


def _decode_rgb(raw: RawMask, encoding: MaskEncoding, num_classes: int, ignore_index: int) -> np.ndarray:
    if raw.lossy:
        raise DataError(
            f"{raw.path}: JPEG colour mask: compression noise changes the colours; re-save the masks as PNG"
        )
    v = raw.values
    if raw.palette:
        raise DataError(
            f"{raw.path}: a palette PNG, whose pixels are palette indices {_values_str(np.unique(v))}, not colours; "
            "declare mask_encoding: index if the indices are the classes, or save the masks as RGB"
        )
    if v.ndim != 3:
        raise DataError(f"{raw.path}: mask_encoding 'rgb' needs an RGB mask; this file has one channel")
    table = encoding.colors or {}
    keys = np.array([(r << 16) | (g << 8) | b for r, g, b in table], dtype=np.int64)
    classes = np.array(list(table.values()), dtype=np.int64)
    order = np.argsort(keys)
    keys, classes = keys[order], classes[order]
    packed = (v[..., 0].astype(np.int64) << 16) | (v[..., 1].astype(np.int64) << 8) | v[..., 2].astype(np.int64)
    pos = np.clip(np.searchsorted(keys, packed), 0, len(keys) - 1)
    unknown = keys[pos] != packed
    if unknown.any():
        colours = np.unique(packed[unknown])
        shown = [((c >> 16) & 255, (c >> 8) & 255, c & 255) for c in colours[:8].tolist()]
        raise DataError(
            f"{raw.path}: {len(colours)} colour(s) not in the colour table, e.g. {shown}; "
            "add them to mask_encoding colors (map to ignore_index to ignore them)"
        )
    return _check_index(classes[pos], num_classes, ignore_index, raw)
