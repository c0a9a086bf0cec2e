"""Text the user chose (file, class and data set names, paths, messages), made safe to show.

:func:`printable` keeps a name on its line: characters that are not printable (newline, tab, terminal
escape sequences, bidirectional overrides: ``str.isprintable``) are written as Python writes them
(``\\n``, ``\\x1b``, ``\\u202e``). :func:`literal` also makes it read as typed in Markdown and in the
HTML rendered from it: Markdown's inline markup characters are backslash-escaped and ``&``, ``<``, ``>``
written as HTML entities, so ``<script>``, ``|``, ``**``, backticks, ``[x](//host)`` and ``$x$`` neither
become markup or links nor break a table row.
"""
from __future__ import annotations

import re

__all__ = ["literal", "printable"]

# what Markdown (GFM, math) reads inline, a backslash first; '_' only where it can open or close emphasis,
# not inside a word (CommonMark never reads dice_ce's underscore as emphasis, and dice\_ce reads badly raw);
# brackets only where they close a link or image (']' before '(' or '['): a list such as [0.449] stays as typed
_MARKUP = re.compile(r"([\\`*|~$]|\](?=[(\[])|(?<![^\W_])_|_(?![^\W_]))")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}  # HTML in Markdown: entities, which every dialect decodes


def printable(text: object) -> str:
    """``text`` with the characters that are not printable (``str.isprintable``) as Python writes them (``\\x1b``)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def literal(text: object) -> str:
    """``text`` as it reads in Markdown and in HTML rendered from it: :func:`printable`, with Markdown's inline
    markup backslash-escaped and ``&``, ``<`` and ``>`` as HTML entities."""
    return "".join(_ENTITIES.get(c, c) for c in printable(_MARKUP.sub(r"\\\1", str(text))))
