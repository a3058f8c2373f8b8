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
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, column, or_, select, table
from sqlalchemy.orm import Session

from appliance.db import Document
from appliance.web.models import DocumentInfo, Dossier

_SPACES = re.compile(r"\s+")
_WORDLIKE = re.compile(r"\w")


# The combining marks Vietnamese uses (all of U+0300-U+036F but the grapheme joiner, which is not one).
_MARKS = re.compile("[\u0300-\u034e\u0350-\u036f]+")


def _fold_slow(text: str) -> str:
    return "".join(c for c in text if not unicodedata.combining(c))


def fold(text: str) -> str:
    """'Quyết định  SỐ 38' -> 'quyet dinh so 38'."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    bare = _MARKS.sub("", decomposed)
    if not bare.isascii():  # other scripts and marks: the general (slower) way
        bare = _fold_slow(decomposed)
    return _SPACES.sub(" ", bare.lower()).strip()


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
    snippet: str
    state: str
    created_at: str


def _fold_aligned(flat: str) -> str:
    """fold() of an NFC, space-collapsed text, character for character ("" when that cannot be)."""
    quick = unicodedata.normalize("NFD", flat.replace("đ", "d").replace("Đ", "D")).encode("ascii", "ignore")
    if len(quick) == len(flat):  # every character gave exactly one ASCII letter: the common case, fast
        return quick.decode().lower()
    folded = fold(flat)
    return folded if len(folded) == len(flat) else ""


def snippet(text: str, folded_query: str, width: int = 80) -> str:
    """A piece of the original text around the first match (positions agree after folding).

    The start of the text is tried first: most matches are there, and long OCR texts are costly to fold."""
    for limit in (1500, None):
        piece = text if limit is None else text[:limit]
        flat = _SPACES.sub(" ", unicodedata.normalize("NFC", piece)).strip()
        at = _fold_aligned(flat).find(folded_query) if folded_query else -1
        end = at + len(folded_query) + width
        if at >= 0 and (limit is None or len(piece) == len(text) or end < len(flat)):
            start = max(0, at - width)
            return ("…" if start else "") + flat[start:end] + "…"
        if limit is None or len(piece) == len(text):
            break
    return _SPACES.sub(" ", unicodedata.normalize("NFC", text[: width * 20])).strip()[: width * 2]


def _has_index(session: Session) -> bool:
    bind = session.get_bind()
    if bind.dialect.name != "sqlite":
        return False
    cache: dict[str, bool] = bind.__dict__.setdefault("_web_search_fts", {})
    if "ok" not in cache:
        found = session.execute(
            select(column("name")).select_from(table("sqlite_master")).where(column("name") == "web_search")
        ).first()
        cache["ok"] = found is not None
    return cache["ok"]


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
    for doc_id, code, state, created_at, fields, text, owner in rows:
        fields = fields or {}
        hits.append(
            Hit(
                document_id=doc_id,
                dossier_code=code,
                owner=owner,
                title=str(fields.get("trich_yeu") or fields.get("loai_van_ban") or ""),
                snippet=snippet(text or "", phrase),
                state=state,
                created_at=f"{created_at:%d/%m/%Y}",
            )
        )
    return hits


def index_text(*parts: str | None) -> tuple[str, str]:
    """The text to keep for snippets and its folded copy for matching."""
    text = "\n".join(p for p in parts if p)
    return text, fold(text)
