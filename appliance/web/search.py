"""Search of the local archive, with or without Vietnamese diacritics.

SQLite has no accent-insensitive collation, so each document keeps a folded copy of its text
(diacritics removed, đ -> d, lower case, spaces collapsed); a query is folded the same way and
matched with LIKE. "quyet dinh" and "Quyết Định" both find "quyết định".
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from appliance.db import Document
from appliance.web.models import DocumentInfo, Dossier

_SPACES = re.compile(r"\s+")


def fold(text: str) -> str:
    """'Quyết định  SỐ 38' -> 'quyet dinh so 38'."""
    text = text.replace("đ", "d").replace("Đ", "D")
    decomposed = unicodedata.normalize("NFD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _SPACES.sub(" ", bare.lower()).strip()


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass(frozen=True, slots=True)
class Hit:
    document_id: str
    dossier_code: str | None
    owner: str | None
    title: str
    snippet: str
    state: str
    created_at: str


def snippet(text: str, folded_query: str, width: int = 80) -> str:
    """A piece of the original text around the first match (positions agree after folding)."""
    flat = _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip()
    at = fold(flat).find(folded_query) if folded_query else -1
    if at < 0:
        return flat[: width * 2]
    start = max(0, at - width)
    return ("…" if start else "") + flat[start : at + len(folded_query) + width] + "…"


def search(session: Session, *, query: str, limit: int = 50) -> list[Hit]:
    """Documents whose code, owner, fields or full text contain every word of the query."""
    words = [w for w in fold(query).split(" ") if w][:8]
    if not words:
        return []
    stmt = (
        select(Document, DocumentInfo, Dossier)
        .join(DocumentInfo, DocumentInfo.document_id == Document.id)
        .outerjoin(Dossier, Dossier.code == Document.dossier_code)
    )
    phrase = " ".join(words)
    for word in words:
        pattern = _like(word)
        stmt = stmt.where(
            or_(
                DocumentInfo.text_folded.like(pattern, escape="\\"),
                Document.dossier_code.ilike(pattern, escape="\\"),
            )
        )
    rows = session.execute(stmt.order_by(Document.created_at.desc()).limit(limit)).all()
    hits = []
    for doc, info, dossier in rows:
        title = str(info.fields.get("trich_yeu") or info.fields.get("loai_van_ban") or "")
        hits.append(
            Hit(
                document_id=doc.id,
                dossier_code=doc.dossier_code,
                owner=dossier.owner_name if dossier else None,
                title=title,
                snippet=snippet(info.text, phrase),
                state=doc.state,
                created_at=f"{doc.created_at:%d/%m/%Y}",
            )
        )
    return hits


def index_text(*parts: str | None) -> tuple[str, str]:
    """The text to keep for snippets and its folded copy for matching."""
    text = "\n".join(p for p in parts if p)
    return text, fold(text)
