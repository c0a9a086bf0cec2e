"""Render the ``compare`` report's blocks to Markdown and to one self-contained HTML page.

A block is ``("h1" | "h2" | "p" | "code", text)``, ``("img", file name, png bytes)`` or
``("table", header, rows)``; a column whose cells all start with a number (or are missing) is
right-aligned. Text may use ``**bold**`` and `` `code` ``. The HTML inlines its CSS and its images
(base64 data URIs) and forbids every external request with a Content-Security-Policy.
"""
from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence

__all__ = ["Block", "DASH", "markdown", "render_html"]

Block = tuple
DASH = "\u2014"  # the cell of a missing value
NUMERIC = re.compile(r"^(\*\*)?[\u2212+\-<]?\s?\d")


def _numeric_columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[bool]:
    return [bool(rows) and all(NUMERIC.match(row[i]) or row[i] == DASH for row in rows) for i in range(len(header))]


def _md_inline(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(blocks: Sequence[Block]) -> str:
    """The blocks as Markdown; images link to ``plots/<name>``."""
    out = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2"):
            out.append(f"{'#' * int(kind[1])} {rest[0]}")
        elif kind == "p":
            out.append(rest[0])
        elif kind == "code":
            out.append(f"```\n{rest[0]}\n```")
        elif kind == "img":
            out.append(f"![{rest[0]}](plots/{rest[0]})")
        elif kind == "table":
            header, rows = rest
            right = _numeric_columns(header, rows)
            out.append("\n".join(["| " + " | ".join(_md_inline(c) for c in header) + " |",
                                  "|" + "|".join("---:" if r else "---" for r in right) + "|"]
                                 + ["| " + " | ".join(_md_inline(c) for c in row) + " |" for row in rows]))
    return "\n\n".join(out) + "\n"


def _html_inline(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


CSS = """body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1d2430;
background:#fff;max-width:1240px;margin:2rem auto;padding:0 1.2rem;line-height:1.5}
h1{font-size:1.7rem;margin-bottom:.2rem}h2{font-size:1.25rem;margin-top:2.2rem;border-bottom:1px solid #d8dee8}
.scroll{overflow-x:auto}table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid #d8dee8;padding:.3rem .55rem}th{background:#eef2f7;text-align:left;vertical-align:bottom}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tbody tr:nth-child(even){background:#f7f9fc}
img{max-width:100%;height:auto;border:1px solid #e4e8ee;margin:.3rem 0 1rem}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;background:#f1f3f6;border-radius:3px}
pre{padding:.6rem;overflow-x:auto;white-space:pre-wrap}"""


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    right = _numeric_columns(header, rows)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td{' class=num' if r else ''}>{_html_inline(c)}</td>"
                                    for c, r in zip(row, right, strict=True)) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def render_html(blocks: Sequence[Block], title: str) -> str:
    """The blocks as one self-contained HTML page (inline CSS, images as data URIs, no external requests)."""
    out = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2"):
            out.append(f"<{kind}>{html.escape(rest[0])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{_html_inline(rest[0])}</p>")
        elif kind == "code":
            out.append(f"<pre><code>{html.escape(rest[0])}</code></pre>")
        elif kind == "img":
            data = base64.b64encode(rest[1]).decode("ascii")
            out.append(f'<img alt="{html.escape(rest[0])}" src="data:image/png;base64,{data}">')
        elif kind == "table":
            out.append(_table(*rest))
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(out) + "\n</body></html>\n")
