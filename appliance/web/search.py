"""Search of the local archive, with or without Vietnamese diacritics.

SQLite has no accent-insensitive collation, so each document keeps a folded copy of its text
(diacritics removed, đ -> d, lower case, spaces collapsed) and a query is folded the same way.
On SQLite the folded text is indexed with FTS5 (migration 0006_web_fts, kept in step by triggers):
each query word must start a word of the document, in any order. Words are always quoted for FTS5,
so whatever an officer types (quotes, ``*``, ``-``, ``NEAR``, brackets) is searched as text.
When the index finds nothing (or on other databases) the query falls back to a LIKE scan, which
also finds words in the middle of longer ones. "quyet dinh" and "Quyết Định" both find "quyết định".
"""

from __future__ import annotations

import re
import unicodedata
import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from markupsafe import Markup, escape
from sqlalchemy import Engine, Select, column, or_, select, table, text
from sqlalchemy.orm import Session

from appliance.db import Document
from appliance.records import DocumentInfo, Dossier
from appliance.textindex import collapse, fold

_SPACES = re.compile(r"\s+")
_WORDLIKE = re.compile(r"\w")


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def fts_query(words: list[str]) -> str | None:
    """An FTS5 query where every word is a quoted prefix phrase (nothing the officer types is syntax).

    None when no word has a letter or digit (FTS5 would find nothing; LIKE still may)."""
    terms = ['"' + w.replace('"', '""') + '"*' for w in words if _WORDLIKE.search(w)]
    return " AND ".join(terms) if terms else None


_FTS = table("web_search", column("rowid"), column("web_search"))
_FTS_IDS = table("web_search_ids", column("id"), column("document_id"))


@dataclass(frozen=True, slots=True)
class Hit:
    document_id: str
    dossier_code: str | None
    owner: str | None
    title: str
    snippet: Markup  # escaped text, the matched words in <mark>
    state: str
    created_at: datetime  # UTC; the page shows it with vn_date


def _fold_aligned(flat: str) -> str:
    """fold() of an NFC, space-collapsed text, character for character ("" when that cannot be)."""
    quick = unicodedata.normalize("NFD", flat.replace("đ", "d").replace("Đ", "D")).encode("ascii", "ignore")
    if len(quick) == len(flat):  # every character gave exactly one ASCII letter: the common case, fast
        return quick.decode().lower()
    folded = fold(flat)
    return folded if len(folded) == len(flat) else ""


_collapse = collapse


def snippet(text: str, folded_query: str, width: int = 80) -> str:
    """A piece of the original text around the query (positions agree after folding).

    The whole query is looked for first, then each of its words, longest first (documents match
    every word, not always side by side). The first 600 characters are tried before the whole text: long OCR
    texts are costly to fold, and most matches come early."""
    words = sorted(set(folded_query.split(" ")) - {"", folded_query}, key=len, reverse=True)
    needles = [folded_query, *words] if folded_query else []
    for limit in (600, None):
        piece = text if limit is None or len(text) <= limit else text[:limit]
        flat = _collapse(unicodedata.normalize("NFC", piece))
        folded = _fold_aligned(flat) if needles else ""
        for needle in needles:
            at = folded.find(needle)
            end = at + len(needle) + width
            if at >= 0 and (piece is text or end <= len(flat)):
                start = max(0, at - width)
                return ("…" if start else "") + flat[start:end] + "…"
        if piece is text:
            return flat[: width * 2]
    return ""  # not reached: the second round always has the whole text


def _word_end(text: str, at: int) -> int:
    while at < len(text) and text[at].isalnum():
        at += 1
    return at


def highlight(text: str, folded_query: str) -> Markup:
    """``text`` escaped for HTML, with each word that matches a query word in ``<mark>``.

    Matching ignores diacritics and case, as the search does ("quyet" marks "QUYẾT"). A query word
    marks the words it starts ("quy" marks all of "Quyết"); only when it starts none does it mark
    where it occurs inside longer words (what the LIKE fallback finds). Text whose folded copy does
    not line up character by character with it is shown without marks."""
    words = {w for w in folded_query.split(" ") if _WORDLIKE.search(w)}
    folded = _fold_aligned(text) if words else ""
    if not folded:
        return escape(text)
    spans: list[tuple[int, int]] = []
    for word in words:
        found = [m.start() for m in re.finditer(re.escape(word), folded)]
        starts = [at for at in found if at == 0 or not folded[at - 1].isalnum()]
        spans.extend((at, _word_end(folded, at + len(word))) for at in starts or found)
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and (start <= merged[-1][1] or text[merged[-1][1] : start].isspace()):  # "<mark>quyết định</mark>"
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    out: list[Markup] = []
    done = 0
    for start, end in merged:
        out += [escape(text[done:start]), Markup("<mark>"), escape(text[start:end]), Markup("</mark>")]
        done = end
    out.append(escape(text[done:]))
    return Markup("").join(out)


_INDEXED: weakref.WeakKeyDictionary[Engine, bool] = weakref.WeakKeyDictionary()


def _has_index(session: Session) -> bool:
    """Whether this SQLite database has the FTS5 index (asked once per engine)."""
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    if engine.dialect.name != "sqlite":
        return False
    if engine not in _INDEXED:
        found = session.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'web_search'")).first()
        if found is None:
            return False  # not cached: a later upgrade adds it
        _INDEXED[engine] = True
    return _INDEXED[engine]


def _base() -> Select[Any]:
    """Only the columns a hit shows (whole rows would decode every JSON column)."""
    return (
        select(
            Document.id,
            Document.dossier_code,
            Document.state,
            Document.created_at,
            DocumentInfo.fields,
            DocumentInfo.text,
            Dossier.owner_name,
        )
        .join(DocumentInfo, DocumentInfo.document_id == Document.id)
        .outerjoin(Dossier, Dossier.code == Document.dossier_code)
    )


def search(session: Session, *, query: str, limit: int = 50) -> list[Hit]:
    """Documents whose code, owner, fields or full text contain every word of the query."""
    words = [w for w in fold(query).split(" ") if w][:8]
    if not words:
        return []
    rows: list[Any] = []
    match = fts_query(words)
    if match is not None and _has_index(session):
        found = (
            select(_FTS_IDS.c.document_id)
            .join(_FTS, _FTS.c.rowid == _FTS_IDS.c.id)
            .where(_FTS.c.web_search.op("MATCH")(match))
            .order_by(_FTS.c.rowid.desc())  # the most recently indexed first, without reading every match
            .limit(limit)
        )
        stmt = _base().where(Document.id.in_(found))
        rows = list(session.execute(stmt.order_by(Document.created_at.desc()).limit(limit)).all())
    if not rows:
        stmt = _base()
        for word in words:
            pattern = _like(word)
            stmt = stmt.where(
                or_(
                    DocumentInfo.text_folded.like(pattern, escape="\\"),
                    Document.dossier_code.ilike(pattern, escape="\\"),
                )
            )
        rows = list(session.execute(stmt.order_by(Document.created_at.desc()).limit(limit)).all())
    phrase = " ".join(words)
    hits = []
    for doc_id, code, state, created_at, fields, body, owner in rows:
        fields = fields or {}
        hits.append(
            Hit(
                document_id=doc_id,
                dossier_code=code,
                owner=owner,
                title=str(fields.get("trich_yeu") or fields.get("loai_van_ban") or ""),
                snippet=highlight(snippet(body or "", phrase), phrase),
                state=state,
                created_at=created_at,
            )
        )
    return hits
