"""Vietnamese text folding for search: one way to compare text with or without diacritics.

SQLite has no accent-insensitive collation, so each document keeps a folded copy of its text
(diacritics removed, đ -> d, lower case, spaces collapsed) and a query is folded the same way.
"""

from __future__ import annotations

import re
import unicodedata

# The combining marks Vietnamese uses (all of U+0300-U+036F but the grapheme joiner, which is not one).
_MARKS = re.compile("[\u0300-\u034e\u0350-\u036f]+")


def _fold_slow(text: str) -> str:
    return "".join(c for c in text if not unicodedata.combining(c))


def collapse(text: str) -> str:
    """Runs of whitespace to one space, trimmed (str.split is much faster than a regex here)."""
    return " ".join(text.split())


def fold(text: str) -> str:
    """'Quyết định  SỐ 38' -> 'quyet dinh so 38'."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    bare = _MARKS.sub("", decomposed)
    if not bare.isascii():  # other scripts and marks: the general (slower) way
        bare = _fold_slow(decomposed)
    return collapse(bare.lower())


def index_text(*parts: str | None) -> tuple[str, str]:
    """The text to keep for snippets and its folded copy for matching."""
    text = "\n".join(p for p in parts if p)
    return text, fold(text)
