"""Figures as inline SVG with hover values, for the report's web page.

A figure function draws, beside each data point it wants to explain, a transparent marker through
:func:`hover_point` (a matplotlib artist with a ``gid``); :func:`svg_text` renders the figure to SVG
and turns every such marker into an element carrying ``data-tip`` (and a ``<title>`` for screen
readers and browsers without script), which the page's script shows next to the pointer.
Text stays text (``svg.fonttype: none``: small, selectable) and element ids are salted with the
figure's name, so two figures on one page never share an id and the same figure renders to the
same bytes every time.
"""
from __future__ import annotations

import html
import io
import re
from typing import Any

__all__ = ["Tips", "hover_point", "svg_text"]

#: The hover texts of one figure, in the order their markers were drawn.
Tips = list[str]
TIP_SIZE = 90  # marker area in points^2: a target the pointer can find


def hover_point(ax: Any, x: float, y: float, text: str, tips: Tips | None) -> None:
    """Draw an invisible hover target at (x, y) on ``ax`` explained by ``text``; nothing when ``tips`` is None."""
    if tips is None:
        return
    ax.scatter([x], [y], s=TIP_SIZE, alpha=0.0, gid=f"tip{len(tips)}", zorder=5)
    tips.append(text)


def svg_text(fig: Any, name: str, tips: Tips) -> str:
    """The figure as an ``<svg>`` element (no XML prolog) whose hover targets carry their texts."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": name}):
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    # inline in HTML the namespaces are implied and the RDF metadata says nothing: the page names no URL at all
    text = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", text, count=2)
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, count=1, flags=re.S)
    stem = re.sub(r"\W", "", name.split(".")[0])
    text = text.replace("<svg", f'<svg class="plot" role="img" aria-label="{html.escape(name)}"', 1)

    # every id and reference prefixed with the figure's stem: ids stay unique on a page of several figures
    text = re.sub(r'(id="|href="#|url\(#)', lambda m: f"{m.group(1)}{stem}-", text)

    def tip(m: re.Match) -> str:
        label = html.escape(tips[int(m.group(1))], quote=True)
        return f'<g id="{stem}-tip{m.group(1)}" class="tip" data-tip="{label}"><title>{label}</title>'

    return re.sub(rf'<g id="{stem}-tip(\d+)">', tip, text)
