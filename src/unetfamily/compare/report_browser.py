"""The report page's case browser: every evaluated image, its ground truth and each model's prediction.

:func:`case_browser` turns the report's artifacts (:mod:`unetfamily.compare.artifacts`) into

- the page's part: per case a thumbnail of the image (JPEG), of the ground truth and of each model's
  first-seed prediction (palette PNGs, background transparent, so the page lays them over the image),
  and of each model's error map (see below), all inline as data URIs in one JSON block the page's
  script reads; the per-case scores of the primary metric (the shown prediction's own), their mean
  over the models and their spread (max - min: how much the models disagree on the case); and a
  table of the cases that sorts like every table of the page;
- the full-resolution files beside the page: ``cases/<k>_<name>/image.png``, ``gt.png`` and
  ``<variant>.png`` (masks in the class colours on black), linked from the browser.

Class 0 is a background (transparent in the layers, black in the files) unless the comparison's data
made it a content class (:attr:`~unetfamily.compare.results.Protocol.background` False, CamVid's
``sky``): then it is drawn in its own colour like every class (:mod:`unetfamily.overlay`).

Thumbnails are at most :data:`THUMB_SIDE` pixels on their long side; with more than
:data:`FULL_SIZE_CASES` cases they shrink (never below :data:`MIN_SIDE`) so the page stays near the
same size. Error maps: when class 0 is a background, a wrong pixel whose truth is background is a
false positive, a wrong pixel of a foreground class (missed or, multi-class, given another class) a
false negative; when class 0 is content there is no background to be positive against, so every
wrong pixel is one colour, "wrong class". Ignored pixels (255) are never errors.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from unetfamily.compare.artifacts import Cases, first_seed_scores
from unetfamily.compare.report_render import DASH
from unetfamily.compare.results import CompareResults, lower_is_better
from unetfamily.compare.summary import METRIC_LABELS, scale
from unetfamily.overlay import IGNORE_INDEX, class_colors, overlay
from unetfamily.text import printable

__all__ = ["ERROR_COLORS", "case_browser", "thumb_side"]

THUMB_SIDE, MIN_SIDE, FULL_SIZE_CASES = 256, 96, 400
ERROR_COLORS = {"false positive": (228, 26, 28), "false negative": (55, 126, 184), "wrong class": (255, 127, 0)}
_CLASS_PALETTE = class_colors(np.arange(256)).reshape(-1).tolist()  # 768 values: the RGB of classes 0..255
_CONTENT_PALETTE = class_colors(np.arange(256), background=False).reshape(-1).tolist()  # class 0 content


def thumb_side(cases: int) -> int:
    """Long side of the thumbnails for ``cases`` evaluated images: the page holds about FULL_SIZE_CASES full ones."""
    if cases <= FULL_SIZE_CASES:
        return THUMB_SIDE
    return max(MIN_SIDE, int(THUMB_SIDE * math.sqrt(FULL_SIZE_CASES / cases)))


def _encode(picture: Any, fmt: str) -> bytes:
    """JPEG at quality 88, or PNG at zlib's default level (``optimize`` took 6x the time for 4% fewer bytes)."""
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt, **({"quality": 88} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _uri(data: bytes, fmt: str) -> str:
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(data).decode('ascii')}"


def _fit(picture: Any, side: int, nearest: bool) -> Any:
    from PIL import Image

    w, h = picture.size
    k = min(1.0, side / max(w, h))
    if k == 1.0:
        return picture
    return picture.resize((max(1, round(w * k)), max(1, round(h * k))),
                          Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR)


def _palette_png(index: np.ndarray, palette: Sequence[int], alpha: Sequence[int], side: int | None) -> bytes:
    """A palette PNG of (H, W) indices with per-index transparency, fitted to ``side`` (nearest) when given."""
    from PIL import Image

    picture = Image.fromarray(index.astype(np.uint8), mode="P")
    picture.putpalette(list(palette) + [0] * (768 - len(palette)))
    picture.info["transparency"] = bytes(alpha)
    return _encode(_fit(picture, side, nearest=True) if side else picture, "PNG")


def mask_png(mask: np.ndarray, side: int | None, transparent: bool, background: bool = True) -> bytes:
    """Class colours of an (H, W) mask; a ``background`` class 0 transparent (page layers) or black (files), a content
    class 0 in its own colour; ignored grey."""
    alpha = [0 if transparent and background else 255] + [255] * 254 + [160]
    palette = (_CLASS_PALETTE if background else _CONTENT_PALETTE)[:3 * IGNORE_INDEX] + [128, 128, 128]
    return _palette_png(mask, palette, alpha, side)


def error_png(pred: np.ndarray, mask: np.ndarray, side: int, background: bool = True) -> bytes:
    """Error map of a prediction (H, W) against its (H, W) truth, else transparent: with a ``background`` class 0,
    1 = false positive (truth background), 2 = false negative; with a content class 0, 1 = wrong class."""
    wrong = (pred != mask) & (mask != IGNORE_INDEX)
    if not background:
        return _palette_png(np.where(wrong, 1, 0), [0, 0, 0, *ERROR_COLORS["wrong class"]], [0, 255], side)
    index = np.where(wrong, np.where(mask == 0, 1, 2), 0)
    palette = [0, 0, 0, *ERROR_COLORS["false positive"], *ERROR_COLORS["false negative"]]
    return _palette_png(index, palette, [0, 255, 255], side)


def _folder(k: int, name: str) -> str:
    stem = re.sub(r"\.[A-Za-z0-9]{1,5}$", "", name)  # img_003.png -> img_003
    return f"cases/{k:04d}_{re.sub(r'[^A-Za-z0-9._-]+', '_', stem)[:60]}"


def _case(k: int, samples: Cases, preds: Mapping[str, list[np.ndarray]], side: int,
          files: dict[str, bytes], background: bool = True) -> dict[str, Any]:
    """One case's thumbnails (data URIs) and full-resolution files (added to ``files``); ``background``: class 0 is."""
    from PIL import Image

    name, image, mask = samples["names"][k], samples["images"][k], samples["masks"][k]
    folder = _folder(k, name)
    picture = Image.fromarray(overlay(image, np.zeros_like(mask)))  # the image alone, as RGB
    files[f"{folder}/image.png"] = _encode(picture, "PNG")
    files[f"{folder}/gt.png"] = mask_png(mask, None, False, background)
    case: dict[str, Any] = {"name": name, "img": _uri(_encode(_fit(picture, side, False), "JPEG"), "JPEG"),
                            "gt": _uri(mask_png(mask, side, True, background), "PNG"), "pred": [], "err": [],
                            "files": {"image": f"{folder}/image.png", "gt": f"{folder}/gt.png", "pred": []}}
    for vid, pred in preds.items():
        files[f"{folder}/{vid}.png"] = mask_png(pred[k], None, False, background)
        case["pred"].append(_uri(mask_png(pred[k], side, True, background), "PNG"))
        case["err"].append(_uri(error_png(pred[k], mask, side, background), "PNG"))
        case["files"]["pred"].append(f"{folder}/{vid}.png")
    return case


def _scores(results: CompareResults, names: Sequence[str], vids: Sequence[str]) -> list[list[float]]:
    """Per case the primary metric of each model's first-seed prediction (NaN where absent), in report units."""
    metric = results.primary_metric
    by_model = [first_seed_scores(results, vid, metric) for vid in vids]
    return [[scale(metric) * s.get(n, math.nan) for s in by_model] for n in names]


def _cell(x: float | None) -> str:
    return DASH if x is None else f"{x:.2f}"


def _table(cases: list[dict[str, Any]], labels: Sequence[str], metric: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["#", "Case", f"Mean {metric}", "Spread", *labels])
    rows = []
    for k, c in enumerate(cases):
        cells = [f"<td class=num>{k + 1}</td>", f"<td>{html.escape(printable(c['name']))}</td>",
                 *(f"<td class=num>{_cell(x)}</td>" for x in (c["mean"], c["spread"], *c["score"]))]
        rows.append(f'<tr data-case="{k}" tabindex="0">{"".join(cells)}</tr>')
    return (f'<div class="scroll cb-list"><table class="sortable" id="cb-table"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _error_key(background: bool) -> str:
    """The error maps' legend: false positive and false negative, or (class 0 content) one colour, wrong class."""
    shown = ["false positive", "false negative"] if background else ["wrong class"]
    return " ".join(f'<span class="key" style="background:rgb{ERROR_COLORS[kind]}"></span> {kind}' for kind in shown)


def _page_part(cases: list[dict[str, Any]], labels: Sequence[str], results: CompareResults) -> str:
    metric = results.primary_metric
    name = METRIC_LABELS.get(metric, metric)
    data = {"metric": name, "higher": not lower_is_better(metric), "models": list(labels), "cases": cases}
    # no '<' at all inside the script element: '</script>' would end it, and a case named '<!--<script>' would
    # make the HTML parser swallow its real end tag (the "double-escaped" state); JSON reads \u003c as '<'
    payload = json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":")).replace("<", "\\u003c")
    background = results.protocol.background
    controls = (
        '<div class="cb-bar"><button type="button" id="cb-prev" title="previous case (\u2190 or k)">\u25c0</button>'
        '<span id="cb-pos"></span><button type="button" id="cb-next" title="next case (\u2192 or j)">\u25b6</button>'
        '<label><input type="checkbox" id="cb-overlay" checked> overlays (o)</label>'
        f'<label><input type="checkbox" id="cb-errors"> error maps (e): {_error_key(background)}</label>'
        '<button type="button" data-order="mean">worst first</button>'
        '<button type="button" data-order="spread">most disagreement</button></div>')
    viewer = '<h3 id="cb-name"></h3><div id="cb-panels" class="panels"></div><p id="cb-links" class="small"></p>'
    return (f'<div id="cb" class="browser" tabindex="-1">{controls}{viewer}{_table(cases, labels, name)}</div>'
            f'<script type="application/json" id="cb-data">{payload}</script>')


def case_browser(results: CompareResults, models: Sequence[tuple[str, str]], samples: Cases | None,
                 preds: Mapping[str, list[np.ndarray]]) -> tuple[list[tuple], dict[str, bytes]]:
    """(report blocks, full-resolution files by path relative to the report) of the case browser.

    ``models``: (variant id, label) in report order; those without ``preds`` are left out of the
    browser. Without samples the browser is replaced by a sentence saying why.
    """
    if samples is None or not samples["names"]:
        return [("p", "No case browser: the results name no evaluated images (`artifacts/samples.npz`).")], {}
    shown = [(vid, label) for vid, label in models if vid in preds]
    files: dict[str, bytes] = {}
    side = thumb_side(len(samples["names"]))
    cases = [_case(k, samples, {vid: preds[vid] for vid, _ in shown}, side, files, results.protocol.background)
             for k in range(len(samples["names"]))]
    for case, scores in zip(cases, _scores(results, samples["names"], [vid for vid, _ in shown]), strict=True):
        finite = [x for x in scores if math.isfinite(x)]  # JSON has no NaN: a missing value is null
        case["score"] = [x if math.isfinite(x) else None for x in scores]
        case["mean"] = float(np.mean(finite)) if finite else None
        case["spread"] = float(max(finite) - min(finite)) if len(finite) > 1 else None
    html_part = _page_part(cases, [label for _, label in shown], results)
    md = (f"{len(cases)} evaluated images with the ground truth and each model's first-seed prediction: the case "
          "browser of `report.html` (sortable, with error maps); full-resolution images in `cases/`.")
    return [("raw", md, html_part)], files
