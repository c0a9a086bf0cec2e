"""Hostile names in the ``compare`` report's text: report.md, report.html, results.json and results.csv.

Case, class and data set names are the user's (file names, a data config's ``classes``). Before the fix a class
named ``[y](//evil.example/p)`` became a link to another host on the page, ``**x**`` and backticks became markup,
``<script>`` went into report.md as raw HTML, and a newline or ``|`` in a name broke the Markdown table it sat
in. Every such name now reads as typed in both renderings (``report_render.literal``).
"""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from tests.compare.conftest import build_results
from tests.reliability.test_audit_names_plots import renamed
from unetfamily.compare.report import write_report
from unetfamily.compare.report_render import markdown, render_html
from unetfamily.compare.results import CompareResults
from unetfamily.text import literal

HOSTILE = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "a|b|c", "tick`s`", "**bold** _it_",
           "[y](//evil.example/p)", "q\"uo'te &amp; x", "line\nbreak\ttab", "\x1b[31mred", "\u202eRTL\U0001F600e\u0301",
           "=HYPERLINK(\"http://evil/\",\"x\")", "$x^2$", "<!--<script>", "C" * 300, "variants", "\\*escaped\\*"]


def _unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)(?:\\\\)*\|", line))


def _check_markdown_tables(md: str) -> None:
    """Every row of every table has its header's number of cells (GFM: unescaped pipes)."""
    lines = md.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and i + 1 < len(lines) and re.fullmatch(r"\|(-+:?\|)+|\|(---:?\|)+", lines[i + 1]):
            width = _unescaped_pipes(line)
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    assert row == "", f"a table row was broken across lines: {row[:80]!r}"
                    break
                assert _unescaped_pipes(row) == width, f"cells differ from the header: {row[:120]!r}"


def _check_html(page: str) -> None:
    body = page.split("<body>", 1)[1]
    scripts = re.findall(r"<script\b[^>]*>", body)
    assert scripts == ['<script type="application/json" id="cb-data">', "<script>"], scripts
    payload = body.split('id="cb-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in payload  # neither '</script>' nor '<!--<script>' can end or extend the data block
    assert json.loads(payload)["cases"]
    assert "<img src=x" not in page and "<!--" not in page
    assert 'href="//' not in page and "<strong>bold" not in page
    assert "\x1b" not in page and "\u202e" not in page and "\t" not in page  # the case browser's table too


def hostile_results(root: Path) -> CompareResults:
    """Multi-class results whose classes, cases and data set carry the hostile names."""
    results = renamed(root, HOSTILE, task="multiclass")
    data = results.to_dict()
    data["protocol"]["classes"] = ["background", *HOSTILE[:2], "line\nbreak"]  # 3 classes, plus one unscored name
    data["protocol"]["data_name"] = "<b>data</b> | `x` \n [z](//evil.example)"
    data["protocol"]["data"] = {"type": "folder", "root": "/tmp/a|b\n<script>", "classes": HOSTILE}
    return CompareResults.from_dict(data)


def test_names_read_as_typed_in_markdown_and_html(tmp_path: Path) -> None:
    paths = write_report(hostile_results(tmp_path), tmp_path)
    md = paths["report.md"].read_text(encoding="utf-8")
    page = paths["report.html"].read_text(encoding="utf-8")
    _check_markdown_tables(md)
    for raw in ("<script", "<img", "<b>", "[y](//evil", "[z](//evil", "\x1b", "\u202e", "**bold**", "`s`", "\nbreak"):
        assert raw not in md, raw
    _check_html(page)
    assert "IoU &lt;script&gt;alert(1)&lt;/script&gt; (%)" in page  # shown as typed, once escaped
    assert "a|b|c" in page or "a|b|c" not in md  # the pipe reads as a pipe on the page
    json.loads(paths["results.json"].read_text(encoding="utf-8"))
    rows = list(csv.reader(io.StringIO(paths["results.csv"].read_text(encoding="utf-8"))))
    assert len({len(r) for r in rows}) == 1


def test_python_markdown_renders_no_markup_from_names(tmp_path: Path) -> None:
    md_lib = pytest.importorskip("markdown")
    md = write_report(hostile_results(tmp_path), tmp_path)["report.md"].read_text(encoding="utf-8")
    rendered = md_lib.markdown(md, extensions=["tables"])
    assert "<script" not in rendered and "<img src=x" not in rendered and 'href="//' not in rendered
    assert "<strong>bold" not in rendered and "<b>data" not in rendered


@pytest.mark.parametrize("name", HOSTILE + ["", "\\", "\\|", "&lt;", "`` ` ``", "a\\\\|b"])
def test_literal_reads_as_typed_in_both_renderings(name: str) -> None:
    text = f"x {literal(name)} y"
    page = render_html([("p", text), ("table", ["h", f"c {literal(name)}"], [["1", literal(name)]])], "t")
    import html as _html
    shown = _html.unescape(re.sub(r"<[^>]+>", "", page.split("<main>")[1].split("</main>")[0]))
    printable = "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)
    assert f"x {printable} y" in shown and f"c {printable}" in shown
    md = markdown([("table", ["h", "c"], [["1", literal(name)]])])
    _check_markdown_tables(md)
    assert "\n" not in literal(name) and "<" not in literal(name)


def test_a_command_holding_backticks_stays_one_code_block() -> None:
    md = markdown([("code", "unetfamily compare --out '```\nx'"), ("p", "after")])
    assert md.startswith("````\n") and "\n````\n\nafter" in md
