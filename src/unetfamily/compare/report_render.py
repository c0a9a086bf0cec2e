"""Render the ``compare`` report's blocks to Markdown and to one self-contained web page.

A block is ``("h1" | "h2" | "p" | "code", text)``, ``("img", file name, png bytes[, svg text])``,
``("table", header, rows)`` or ``("raw", markdown, html)`` (a part only the page can show, such as
the case browser, with what the Markdown says instead). A column whose cells all start with a
number (or are missing) is right-aligned. Text may use ``**bold**``, `` `code` `` and links to
files beside the report, ``[text](relative/path)``, and Markdown's backslash escapes (a backslash before
an ASCII punctuation mark), which the
page honours too. Text the user chose (case, class and data set names, paths, error messages) enters a
block only through :func:`unetfamily.text.literal`, so that neither rendering reads it as markup: ``<script>``, ``|``,
``**``, backticks, ``[text](//host)`` and ``$x$`` read as typed, and a newline, tab or bidirectional
override shows as an escape instead of breaking its table row or reordering the line.

The page inlines its CSS, its script (``assets/report.js``: sortable tables, hover values on the
SVG plots, the case browser) and its images (data URIs), opens with a table of contents, and
forbids every external request with a Content-Security-Policy that allows only its own script (by
its SHA-256) and data-URI images: it opens the same with networking off.
"""
from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Sequence
from importlib import resources

__all__ = ["Block", "DASH", "markdown", "render_html"]

Block = tuple
DASH = "\u2014"  # the cell of a missing value
NUMERIC = re.compile(r"^(\*\*)?[\u2212+\-<]?\s?\d")


def _numeric_columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[bool]:
    return [bool(rows) and all(NUMERIC.match(row[i]) or row[i] == DASH for row in rows) for i in range(len(header))]


LINK = re.compile(r"\[([^\]]+)\]\(([\w./-]+)\)")  # [text](relative/path): files beside the report


# a backslash escape (the ASCII punctuation after it is literal) or one of those entities
_ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])|&(amp|lt|gt);")
_DECODED = {"amp": "&", "lt": "<", "gt": ">"}
_PIPE = re.compile(r"(?<!\\)((?:\\\\)*)\|")  # a pipe that is not escaped


def _md_inline(text: str) -> str:
    return _PIPE.sub(r"\1\\|", text)


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks in ``text``: a command holding three stays one block."""
    return "`" * max([3] + [len(run) + 1 for run in re.findall(r"`+", text)])


def markdown(blocks: Sequence[Block]) -> str:
    """The blocks as Markdown; images link to ``plots/<name>``."""
    out = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2"):
            out.append(f"{'#' * int(kind[1])} {rest[0]}")
        elif kind == "p":
            out.append(rest[0])
        elif kind == "code":
            out.append(f"{_fence(rest[0])}\n{rest[0]}\n{_fence(rest[0])}")
        elif kind == "img":
            out.append(f"![{rest[0]}](plots/{rest[0]})")
        elif kind == "raw":
            out.append(rest[0])
        elif kind == "table":
            header, rows = rest
            right = _numeric_columns(header, rows)
            out.append("\n".join(["| " + " | ".join(_md_inline(c) for c in header) + " |",
                                  "|" + "|".join("---:" if r else "---" for r in right) + "|"]
                                 + ["| " + " | ".join(_md_inline(c) for c in row) + " |" for row in rows]))
    return "\n\n".join(out) + "\n"


def _html_inline(text: str) -> str:
    held: list[str] = []  # escaped characters, kept out of the markup and put back as text

    def hold(m: re.Match) -> str:
        held.append(m.group(1) or _DECODED[m.group(2)])
        return f"\x00{len(held) - 1}\x00"

    text = html.escape(_ESCAPED.sub(hold, text))
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    text = LINK.sub(r'<a href="\2">\1</a>', text)
    text = re.sub(r"`(.+?)`", r"<code>\1</code>", text)
    return re.sub("\x00(\\d+)\x00", lambda m: html.escape(held[int(m.group(1))]), text)


def _asset(name: str) -> str:
    return resources.files("unetfamily.compare").joinpath("assets", name).read_text(encoding="utf-8")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    right = _numeric_columns(header, rows)
    head = "".join(f"<th>{_html_inline(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td{' class=num' if r else ''}>{_html_inline(c)}</td>"
                                    for c, r in zip(row, right, strict=True)) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _anchor(text: str, taken: set[str]) -> str:
    """A unique id for a heading: its words in lower case joined by hyphens."""
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    anchor, k = base, 2
    while anchor in taken:
        anchor, k = f"{base}-{k}", k + 1
    taken.add(anchor)
    return anchor


def _html_block(kind: str, rest: Sequence, anchors: dict[int, str], i: int) -> str:
    if kind == "h2":
        return f'<h2 id="{anchors[i]}">{_html_inline(rest[0])}</h2>'
    if kind == "h1":
        return f"<h1>{_html_inline(rest[0])}</h1>"
    if kind == "p":
        return f"<p>{_html_inline(rest[0])}</p>"
    if kind == "code":
        return f"<pre><code>{html.escape(rest[0])}</code></pre>"
    if kind == "img":
        if len(rest) > 2 and rest[2]:
            return rest[2]  # inline SVG with hover values
        data = base64.b64encode(rest[1]).decode("ascii")
        return f'<img alt="{html.escape(rest[0])}" src="data:image/png;base64,{data}">'
    if kind == "raw":
        return rest[1]
    return _table(*rest)


def render_html(blocks: Sequence[Block], title: str) -> str:
    """The blocks as one self-contained web page (inline CSS and script, images as data URIs, no requests)."""
    taken: set[str] = set()
    anchors = {i: _anchor(rest[0], taken) for i, (kind, *rest) in enumerate(blocks) if kind == "h2"}
    toc = "".join(f'<li><a href="#{a}">{_html_inline(blocks[i][1])}</a></li>' for i, a in anchors.items())
    out = [_html_block(kind, rest, anchors, i) for i, (kind, *rest) in enumerate(blocks)]
    first_h2 = next((k for k, (kind, *_) in enumerate(blocks) if kind == "h2"), len(out))
    if toc:
        out.insert(first_h2, f'<nav class="toc" aria-label="contents"><strong>Contents</strong><ol>{toc}</ol></nav>')
    script = _asset("report.js")
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode("ascii")
    csp = f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{digest}'"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{_asset('report.css')}</style></head>\n<body>\n<main>\n"
            + "\n".join(out) + '\n</main>\n<div id="tip" role="tooltip" hidden></div>\n'
            f"<script>{script}</script>\n</body></html>\n")
