"""Text the user chose (file, class and data set names, paths, messages), made safe to show.

:func:`printable` keeps a name on its line: characters that are not printable (newline, tab, terminal
escape sequences, bidirectional overrides: ``str.isprintable``) are written as Python writes them
(``\\n``, ``\\x1b``, ``\\u202e``). :func:`literal` also makes it read as typed in Markdown and in the
HTML rendered from it: Markdown's inline markup characters are backslash-escaped and ``&``, ``<``, ``>``
written as HTML entities, so ``<script>``, ``|``, ``**``, backticks, ``[x](//host)`` and ``$x$`` neither
become markup or links nor break a table row. :func:`shown_lines` and :class:`PrintableFormatter` keep the line
breaks (and tabs) of what the program itself writes on the terminal and in logs, and make the rest printable: a file
name holding an escape sequence cannot recolour the terminal or rewrite an earlier line of an error or a log.
"""
from __future__ import annotations

import logging
import re

__all__ = ["PrintableFormatter", "literal", "printable", "shown_lines"]

# what Markdown (GFM, math) reads inline, a backslash first; '_' only where it can open or close emphasis,
# not inside a word (CommonMark never reads dice_ce's underscore as emphasis, and dice\_ce reads badly raw);
# brackets only where they close a link or image (']' before '(' or '['): a list such as [0.449] stays as typed
_MARKUP = re.compile(r"([\\`*|~$]|\](?=[(\[])|(?<![^\W_])_|_(?![^\W_]))")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}  # HTML in Markdown: entities, which every dialect decodes


def printable(text: object, keep: str = "") -> str:
    """``text`` with the characters that are not printable (``str.isprintable``) as Python writes them (``\\x1b``);
    those in ``keep`` stay as they are."""
    return "".join(c if c.isprintable() or c in keep else repr(c)[1:-1] for c in str(text))


def shown_lines(text: object) -> str:
    """``text`` for a terminal or a log file: its newlines and tabs kept, every other character :func:`printable`."""
    return printable(text, keep="\n\t")


class PrintableFormatter(logging.Formatter):
    """A ``logging.Formatter`` that keeps a record on one line: its message (with its arguments) :func:`printable`, so
    a newline in a file name cannot forge a second record; a traceback that follows keeps its lines
    (:func:`shown_lines`)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        return printable(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        return shown_lines(super().format(record))


def literal(text: object) -> str:
    """``text`` as it reads in Markdown and in HTML rendered from it: :func:`printable`, with Markdown's inline
    markup backslash-escaped and ``&``, ``<`` and ``>`` as HTML entities."""
    return "".join(_ENTITIES.get(c, c) for c in printable(_MARKUP.sub(r"\\\1", str(text))))
