"""The dataset fingerprint: what a training plan needs to know about a dataset, measured once.

:func:`fingerprint_dataset` decodes (a seeded subset of) a dataset's samples at their native size,
exactly as the loader does before any transform (images ``(C, H, W)`` scaled to [0, 1] floats,
masks ``(H, W)`` class indices), and summarises sizes, intensities, class frequencies, connected
objects, how thin each class is and whether the images have an "up". Mask pixels equal to
``info.ignore_index`` are left out of every class statistic and of the foreground intensities.

:func:`load_or_compute_fingerprint` keeps the result in a JSON cache file keyed by a string the
caller makes (e.g. a digest of the data files), so a plan is not re-measured on every call.

>>> from unetfamily.data import build_dataset
>>> fp = fingerprint_dataset(build_dataset({"type": "synthetic", "num_samples": 4, "size": 32}, "train"))
>>> fp.cases, fp.channels, fp.size_median
(4, 1, [32, 32])
"""

from __future__ import annotations

import copy
import json
import logging
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from unetfamily.data import fingerprint_stats as stats
from unetfamily.data import options
from unetfamily.data.base import SegmentationDataset
from unetfamily.data.errors import DataError
from unetfamily.data.io import image_to_float
from unetfamily.errors import UnetFamilyError, require
from unetfamily.files import write_json

__all__ = ["FINGERPRINT_VERSION", "THIN_BOUNDARY", "THIN_WIDTH", "UP_ASYMMETRY", "UP_SIGNIFICANCE", "Fingerprint",
           "describe", "fingerprint_dataset", "load_or_compute_fingerprint"]

log = logging.getLogger(__name__)

FINGERPRINT_VERSION = 4  # 2: every class (index 0 too) gets objects, boundary and width; pixel-weighted medians
# 3: size_follows, whether a class's objects grow with the image; 4: vertical_asymmetry_p, the up's flip test
#: A class whose pixels mostly touch another label is drawn in lines 1-3 px wide (vessels, edges) ...
THIN_BOUNDARY = 0.5
#: ... as is one whose typical cross-section is at most this many pixels wide (membranes, poles).
THIN_WIDTH = 7.0
#: Top and bottom halves whose class distributions differ by more than this, and more than the images' flips
#: would (p below UP_SIGNIFICANCE; 6 images laid out alike at least): the images have an "up".
UP_ASYMMETRY, UP_SIGNIFICANCE = 0.1, 0.05
#: ``size_follows`` needs a class in at least this many images of more than one size (a rank correlation
#: over fewer is noise).
SIZE_FOLLOWS_CASES = 8
#: Image sizes kept at evenly spaced quantiles of the area (the smallest, ..., the largest): what a pass over
#: the images costs when their sizes vary (a few large images can take most of a validation).
SIZE_SAMPLE = 21
#: 8-connectivity for the connected objects of a class.
_EIGHT = np.ones((3, 3), dtype=bool)


def _round(x: float) -> float:
    """``x`` to 6 significant digits (idempotent, so a rounded value survives JSON/YAML unchanged)."""
    return float(f"{x:.6g}")


def _clean(obj: Any) -> Any:
    """``obj`` as plain JSON/YAML types: floats rounded to 6 significant digits, numpy scalars unwrapped."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return _round(obj) if math.isfinite(obj) else None
    return obj


@dataclass(frozen=True)
class Fingerprint:
    """Statistics of a dataset's train split at native resolution (see the module docstring).

    ``intensity`` (and ``intensity_foreground``, ``None`` without foreground pixels) holds per
    channel ``{"mean", "std", "p00_5", "p99_5"}`` of pixels in [0, 1]. ``class_fraction`` is each
    class's share of the labelled pixels, ``class_presence`` the share of images containing it.
    ``objects`` maps each class (index 0 too: whether it is a background or content is the plan's
    call, :func:`unetfamily.plan.rules.content_classes`) to ``{"count", "median_area", "p05_area",
    "median_extent", "pixel_area", "pixel_extent"}`` of its 8-connected components (areas in pixels,
    extent = longer bounding-box side; ``count`` is the total over the ``cases`` images; the
    ``pixel_`` medians are taken over the class's pixels, so they describe the component a typical
    pixel belongs to; ``None`` values when it has none).
    ``boundary_fraction`` is the share of a class's pixels with a 4-neighbour of another
    label (ignored pixels included): near 1 for 1-3 px lines, small for blobs; ``None`` when absent.
    ``vertical_asymmetry`` is the total-variation distance between the class distributions of the
    top and bottom image halves, pooled over images: 0 with no "up", up to 1; ``vertical_asymmetry_p`` its flip
    test (:func:`~unetfamily.data.fingerprint_stats.flip_p`), and :meth:`has_up` both. ``width`` is each
    class's typical local width in pixels (``2 d + 1`` at the medial pixels, ``d`` the distance to
    the region's edge; the median weighted by that width, see
    :func:`~unetfamily.data.fingerprint_stats.median_width`): about 1-6 for lines and membranes,
    object-sized for blobs;
    ``None`` when absent (or in a fingerprint made without it). ``size_sample`` holds
    :data:`SIZE_SAMPLE` image sizes ``[H, W]`` at evenly spaced quantiles of the area, smallest to largest.
    ``size_follows`` maps each class to the Spearman rank correlation, over the images containing it,
    between an image's side (``sqrt(H W)``) and the extent of the object a typical pixel of the class
    belongs to in that image: near 1 when larger images show their objects larger (pictures taken at
    several magnifications, as in DSB2018), near 0 when a larger image shows more of the scene; ``None``
    with fewer than :data:`SIZE_FOLLOWS_CASES` such images or when they all have one side.
    ``background`` is the data config's ``background`` (``None``: auto), see
    :func:`~unetfamily.data.base.class0_is_background`.
    """

    cases: int
    channels: int
    classes: list[str]
    size_median: list[int]
    size_min: list[int]
    size_max: list[int]
    intensity: list[dict[str, float]]
    intensity_foreground: list[dict[str, float]] | None
    class_fraction: dict[str, float]
    class_presence: dict[str, float]
    objects: dict[str, dict[str, Any]]
    boundary_fraction: dict[str, float | None]
    vertical_asymmetry: float
    pixels_total: int
    version: int = FINGERPRINT_VERSION
    width: dict[str, float | None] | None = None
    size_sample: list[list[int]] | None = None
    size_follows: dict[str, float | None] | None = None
    background: bool | None = None
    vertical_asymmetry_p: float | None = None

    def has_up(self) -> bool:
        """The images have an up: asymmetry above UP_ASYMMETRY, and p below UP_SIGNIFICANCE (when measured)."""
        p = self.vertical_asymmetry_p
        return self.vertical_asymmetry > UP_ASYMMETRY and (p is None or p < UP_SIGNIFICANCE)

    def is_thin(self, name: str) -> bool:
        """Class ``name`` is drawn in lines: boundary fraction >= :data:`THIN_BOUNDARY` or width <= :data:`THIN_WIDTH`."""
        width = (self.width or {}).get(name)
        return (self.boundary_fraction.get(name) or 0.0) >= THIN_BOUNDARY or (width is not None and width <= THIN_WIDTH)

    @property
    def foreground(self) -> list[str]:
        """The foreground classes: all but index 0."""
        return self.classes[1:]
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-safe dict (floats to 6 significant digits); :meth:`from_dict` reads it back."""
        return _clean(asdict(self))

    @classmethod
    def from_dict(cls, d: Any) -> Fingerprint:
        """The fingerprint stored as ``d`` by :meth:`to_dict`; DataError on a missing/unknown key or version."""
        if not isinstance(d, dict):
            raise DataError(f"fingerprint: expected a mapping, got {type(d).__name__}")
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in d and n not in ("width", "size_follows", "background",
                                                                    "vertical_asymmetry_p")]
        unknown = sorted(set(d) - set(names))
        if missing or unknown:
            raise DataError(f"fingerprint: missing keys {missing}, unknown keys {unknown}; recompute it")
        if d["version"] != FINGERPRINT_VERSION:
            raise DataError(f"fingerprint: version {d['version']!r}, this code writes {FINGERPRINT_VERSION}; "
                            "recompute it")
        return cls(**copy.deepcopy({n: d[n] for n in names if n in d}))


class _Accumulator:
    """Running sums over the decoded samples; :meth:`finish` turns them into the fingerprint's fields."""

    def __init__(self, channels: int, classes: list[str], ignore_index: int) -> None:
        self.classes, self.ignore_index = classes, ignore_index
        k = len(classes)
        self.bins = max(k, ignore_index + 1)
        self.sizes: list[tuple[int, int]] = []
        self.all, self.fg = stats.Moments(channels), stats.Moments(channels)
        self.counts, self.present, self.boundary = np.zeros(k, np.int64), np.zeros(k, np.int64), np.zeros(k, np.int64)
        self.top: list[np.ndarray] = []  # per image: class counts of its top half, and of its bottom half
        self.bottom: list[np.ndarray] = []
        self.areas: dict[int, list[int]] = {c: [] for c in range(k)}
        self.extents: dict[int, list[int]] = {c: [] for c in range(k)}
        self.widths: dict[int, list[np.ndarray]] = {c: [] for c in range(k)}
        self.case_extent: dict[int, list[tuple[float, float]]] = {c: [] for c in range(k)}  # (side, extent)
        self.ndimage = require("scipy.ndimage", "train", "the object statistics of the dataset fingerprint")

    def _count(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(values.ravel(), minlength=self.bins)[: len(self.classes)]

    def add(self, image: np.ndarray, mask: np.ndarray) -> None:
        """Add one sample: ``image`` ``(C, H, W)`` float32 in [0, 1], ``mask`` ``(H, W)`` non-negative ints."""
        h, w = mask.shape
        self.sizes.append((h, w))
        flat = image.reshape(image.shape[0], -1)
        self.all.add(flat)
        labels = mask.ravel()
        self.fg.add(flat[:, (labels > 0) & (labels < len(self.classes))])
        counts = self._count(mask)
        self.counts += counts
        self.present += counts > 0
        edges = stats.edges(mask)
        self.boundary += self._count(mask[edges])
        self._widths(mask, edges, counts)
        self.top.append(self._count(mask[: h // 2]))
        self.bottom.append(self._count(mask[h - h // 2 :]))
        for c in range(len(self.classes)):
            if counts[c]:
                self._objects(mask == c, c)

    def _objects(self, region: np.ndarray, c: int) -> None:
        """Record the areas and extents of the 8-connected components of ``region`` ``(H, W)`` bool."""
        labelled, n = self.ndimage.label(region, structure=_EIGHT)
        areas = np.bincount(labelled.ravel(), minlength=n + 1)[1:]
        extents = np.array([max(r.stop - r.start, k.stop - k.start) for r, k in self.ndimage.find_objects(labelled)])
        self.areas[c].extend(areas.tolist())
        self.extents[c].extend(extents.tolist())
        side = math.sqrt(region.shape[0] * region.shape[1])
        self.case_extent[c].append((side, stats.weighted_median(extents.astype(np.float64), areas.astype(np.float64))))

    def _widths(self, mask: np.ndarray, edges: np.ndarray, counts: np.ndarray) -> None:
        """Record ``2 d + 1`` at the medial pixels of each class (``d``: distance to an edge pixel)."""
        if not edges.any():
            return  # one label fills the image: no local width
        dist = self.ndimage.distance_transform_edt(~edges)
        medial = dist >= self.ndimage.maximum_filter(dist, size=3)
        for c in range(len(self.classes)):
            if counts[c]:
                self.widths[c].append(dist[medial & (mask == c)])

    def finish(self) -> dict[str, Any]:
        """The fingerprint's fields except ``cases`` and ``channels``."""
        classes, cases = self.classes, len(self.sizes)
        sizes = np.array(self.sizes)
        by_area = sorted(self.sizes, key=lambda hw: (hw[0] * hw[1], hw))
        total = int(self.counts.sum())
        return {
            "classes": list(classes),
            "size_median": [int(round(v)) for v in np.median(sizes, axis=0)],
            "size_min": list(by_area[0]),
            "size_max": list(by_area[-1]),
            "size_sample": [list(by_area[round(q * (cases - 1) / (SIZE_SAMPLE - 1))]) for q in range(SIZE_SAMPLE)],
            "intensity": self.all.result(),
            "intensity_foreground": self.fg.result(),
            "class_fraction": {n: float(self.counts[c] / max(total, 1)) for c, n in enumerate(classes)},
            "class_presence": {n: float(self.present[c] / cases) for c, n in enumerate(classes)},
            "objects": {classes[c]: stats.object_stats(self.areas[c], self.extents[c]) for c in self.areas},
            "boundary_fraction": {classes[c]: (float(self.boundary[c] / self.counts[c]) if self.counts[c] else None)
                                  for c in range(len(classes))},
            "vertical_asymmetry": stats.total_variation(sum(self.top), sum(self.bottom)),
            "vertical_asymmetry_p": stats.flip_p(np.array(self.top), np.array(self.bottom)),
            "pixels_total": total,
            "width": {classes[c]: stats.median_width(w) for c, w in self.widths.items()},
            "size_follows": {classes[c]: stats.rank_correlation(pairs, SIZE_FOLLOWS_CASES)
                             for c, pairs in self.case_extent.items()},
        }


def _subset(n: int, max_cases: int | None, seed: int) -> list[int]:
    """All of ``range(n)``, or ``max_cases`` of them drawn with ``seed``, sorted."""
    if max_cases is None or n <= max_cases:
        return list(range(n))
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n, size=max_cases, replace=False))


def fingerprint_dataset(dataset: SegmentationDataset, max_cases: int | None = 500, seed: int = 0) -> Fingerprint:
    """Measure ``dataset`` (its samples as decoded by ``dataset.load``, never ``dataset.transform``).

    Images ``(C, H, W)`` are scaled to [0, 1] as the loader does; masks ``(H, W)``. With more than
    ``max_cases`` samples (``None``: no limit) a subset drawn with ``seed`` is used, so the result
    is reproducible. Build the dataset without ``resize`` to measure native sizes. DataError on an
    empty dataset; DataConfigError naming ``max_cases``/``seed`` when they are not valid integers.
    """
    if max_cases is not None:
        options.integer("max_cases", max_cases, lo=1)
    options.integer("seed", seed, lo=0)
    if len(dataset) == 0:
        raise DataError(f"{dataset!r} has no samples; a fingerprint needs at least one")
    info = dataset.info
    indices = _subset(len(dataset), max_cases, seed)
    acc = _Accumulator(info.in_channels, list(info.classes), info.ignore_index)
    channels = info.in_channels
    for i in indices:
        img, msk = dataset.load(i)
        image = image_to_float(img.numpy(), dataset.sample_name(i))
        channels = image.shape[0]
        acc.add(image, msk.numpy())
    fields_ = {"cases": len(indices), "channels": channels, **acc.finish(), "version": FINGERPRINT_VERSION,
               "background": info.background}
    log.info("fingerprinted %d of %d samples of %s", len(indices), len(dataset), type(dataset).__name__)
    return Fingerprint.from_dict(_clean(fields_))


def _read_cache(cache: Path, key: str, opts: dict[str, Any]) -> Fingerprint | None:
    """The cached fingerprint if ``cache`` holds one for ``key`` and ``opts``; ``None`` (warned if unreadable)."""
    if not cache.exists():
        return None
    try:
        record = json.loads(cache.read_text())
        if record.get("key") != key or record.get("options") != opts:
            log.info("fingerprint cache %s is for another key or options; recomputing", cache)
            return None
        version = record["fingerprint"].get("version") if isinstance(record["fingerprint"], dict) else None
        if isinstance(version, int) and version != FINGERPRINT_VERSION:  # an older fingerprint, not a damaged one
            log.info("fingerprint cache %s was measured by another version of the code; recomputing", cache)
            return None
        return Fingerprint.from_dict(record["fingerprint"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UnetFamilyError) as exc:
        log.warning("fingerprint cache %s is unreadable (%s); recomputing it", cache, exc)
        return None


def load_or_compute_fingerprint(
    dataset: SegmentationDataset, cache: str | Path, key: str, *, max_cases: int | None = 500, seed: int = 0
) -> Fingerprint:
    """:func:`fingerprint_dataset`, reusing the JSON file ``cache`` when it was written for ``key``.

    ``key`` is the caller's: it must change whenever the data changes (e.g. a digest of the data
    config and files). The file holds ``{"key", "options": {"max_cases", "seed"}, "fingerprint"}``
    and is reused only when both match; otherwise (or when it is corrupt, with a warning) the
    fingerprint is computed and the file replaced atomically. A cache that cannot be written is
    logged as a warning; the fingerprint is still returned.
    """
    cache = Path(cache)
    opts = {"max_cases": max_cases, "seed": seed}
    hit = _read_cache(cache, key, opts)
    if hit is not None:
        log.info("fingerprint read from %s", cache)
        return replace(hit, background=dataset.info.background)  # a declaration of the config, not a measurement
    fp = fingerprint_dataset(dataset, max_cases=max_cases, seed=seed)
    try:
        write_json(cache, {"key": key, "options": opts, "fingerprint": fp.to_dict()})
    except (OSError, UnetFamilyError) as exc:
        log.warning("could not write the fingerprint cache %s (%s); it will be recomputed next time", cache, exc)
    return fp


def _fmt(x: float | None, spec: str = ".3g") -> str:
    return "-" if x is None else format(x, spec)


def _intensity_line(label: str, stats: list[dict[str, float]] | None) -> str:
    if stats is None:
        return f"{label}: none"
    parts = [f"ch{c} mean {_fmt(s['mean'])} std {_fmt(s['std'])} [p0.5 {_fmt(s['p00_5'])}, p99.5 {_fmt(s['p99_5'])}]"
             for c, s in enumerate(stats)]
    return f"{label}: " + "; ".join(parts)


def describe(fp: Fingerprint) -> list[str]:
    """A few human-readable lines summarising ``fp`` (for the CLI to print)."""
    size = "x".join(map(str, fp.size_median))
    lines = [
        f"{fp.cases} cases, {fp.channels} channel(s), classes {', '.join(fp.classes)}; {fp.pixels_total} labelled px",
        f"size HxW: median {size}, smallest {'x'.join(map(str, fp.size_min))}, "
        f"largest {'x'.join(map(str, fp.size_max))}",
        _intensity_line("intensity", fp.intensity),
        _intensity_line("foreground intensity", fp.intensity_foreground),
        "class pixels: " + ", ".join(f"{n} {fp.class_fraction[n]:.2%} (in {fp.class_presence[n]:.0%} of images)"
                                     for n in fp.classes),
    ]
    for name in fp.classes:
        o, b = fp.objects.get(name) or {}, fp.boundary_fraction.get(name)
        if not o:  # a fingerprint built by hand may leave a class out
            continue
        width = (fp.width or {}).get(name)
        thin = " (thin structure)" if fp.is_thin(name) else ""
        lines.append(f"{name}: {o['count']} objects, median area {_fmt(o['median_area'])} px "
                     f"(p05 {_fmt(o['p05_area'])}), median extent {_fmt(o['median_extent'])} px; a typical pixel's "
                     f"object {_fmt(o.get('pixel_area'))} px, {_fmt(o.get('pixel_extent'))} px across; "
                     f"width {_fmt(width)} px, boundary fraction {_fmt(b, '.2f')}{thin}")
    up = "images have an up" if fp.has_up() else "no preferred up/down"
    p = "" if fp.vertical_asymmetry_p is None else f", flip test p {fp.vertical_asymmetry_p:.3g}"
    lines.append(f"vertical asymmetry {fp.vertical_asymmetry:.2f}{p} ({up})")
    follows = {n: r for n, r in (fp.size_follows or {}).items() if r is not None}
    if follows:
        lines.append("object size vs image size (rank correlation): "
                     + ", ".join(f"{n} {r:+.2f}" for n, r in follows.items()))
    return lines
