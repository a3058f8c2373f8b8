"""Documents: what happens to one between capture and signing, and the corrections after it.

One function per change: :func:`digitized` (a pipeline step: page results, field prefill, search index),
:func:`review`, :func:`edit_page`, :func:`replace_page`, :func:`split`, :func:`reuse` and :func:`correct`.
Each checks the state table (:mod:`appliance.workflow`), changes the rows and appends to the audit trail
in the caller's transaction. The web routes and the CLI parse their input, call these and show the
result; none of them writes a document row itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from appliance import assemble, audit, domain, resultcodes, units, workflow
from appliance.db import DocState, Document, Page, create_document, fields_json
from appliance.errors import (
    ApplianceError,
    DocumentBusy,
    DocumentFrozen,
    FormInvalid,
    IllegalTransition,
    NotFound,
)
from appliance.messages_vi import MESSAGES_VI, message_for
from appliance.model import Field, RawPage, ReviewWord
from appliance.originals import OriginalStore
from appliance.records import DocumentInfo, Dossier, Kind, Reuse
from appliance.settings import SignSettings
from appliance.textindex import fold, index_text
from appliance.workflow import Actor

REVIEW_FIELDS = (
    ("so_ky_hieu", "Số, ký hiệu"),
    ("ngay_ban_hanh", "Ngày ban hành"),
    ("loai_van_ban", "Loại văn bản"),
    ("co_quan_ban_hanh", "Cơ quan ban hành"),
    ("trich_yeu", "Trích yếu"),
    ("so_dinh_danh", "Số định danh người yêu cầu"),
    ("ma_tthc", "Mã thủ tục hành chính"),
)
FIELD_NAMES = tuple(name for name, _label in REVIEW_FIELDS)
PAGE_ACTIONS = ("rotate", "up", "down", "delete")


# --- reading -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Loaded:
    doc: Document
    info: DocumentInfo | None
    dossier: Dossier | None


def load(session: Session, doc_id: str) -> Loaded:
    """The document with its pages, its review and its dossier, or NotFound."""
    row = session.execute(
        select(Document, DocumentInfo, Dossier)
        .outerjoin(DocumentInfo, DocumentInfo.document_id == Document.id)
        .outerjoin(Dossier, Dossier.code == Document.dossier_code)
        .where(Document.id == doc_id)
        .options(selectinload(Document.pages))
    ).first()
    if row is None:
        raise NotFound(f"document {doc_id} not found")
    doc, info, dossier = row
    return Loaded(doc, info, dossier)


def versions(session: Session, doc: Document) -> list[Document]:
    """Every version of this document, oldest first (the chain of corrections)."""
    chain = [doc]
    seen = {doc.id}
    back = doc
    while back.supersedes_id and back.supersedes_id not in seen:
        older = session.get(Document, back.supersedes_id)
        if older is None:
            break
        chain.insert(0, older)
        seen.add(older.id)
        back = older
    ahead = doc
    while ahead.superseded_by and ahead.superseded_by not in seen:
        newer = session.get(Document, ahead.superseded_by)
        if newer is None:
            break
        chain.append(newer)
        seen.add(newer.id)
        ahead = newer
    return chain


def reused_from(session: Session, doc_id: str) -> tuple[str, str | None] | None:
    """(source document id, its dossier code) when this document is a reuse."""
    row = session.execute(
        select(Reuse.source_document_id, Document.dossier_code)
        .outerjoin(Document, Document.id == Reuse.source_document_id)
        .where(Reuse.document_id == doc_id)
        .limit(1)
    ).first()
    return (row[0], row[1]) if row is not None else None


def _info(session: Session, doc: Document) -> DocumentInfo:
    info = session.get(DocumentInfo, doc.id)
    if info is None:
        info = DocumentInfo(document_id=doc.id, fields={}, backlog=False, text="", text_folded="")
        session.add(info)
        session.flush()
    return info


def reindex(session: Session, info: DocumentInfo, doc: Document) -> None:
    """The folded search text: dossier code, owner, reviewed fields and the OCR text."""
    dossier = session.get(Dossier, doc.dossier_code) if doc.dossier_code else None
    _text, info.text_folded = index_text(
        doc.dossier_code,
        dossier.owner_name if dossier else None,
        dossier.owner_id if dossier else None,
        " ".join(str(v) for v in info.fields.values() if v),
        info.text,
    )


# --- what the officer should look at -----------------------------------------------------------------
def review_words(doc: Document) -> list[ReviewWord]:
    """The words OCR was unsure of, page by page, from the archived PDF/A ([] when there is none yet)."""
    if not doc.pdf_path or doc.state == DocState.CAPTURED or not Path(doc.pdf_path).exists():
        return []
    try:
        return assemble.low_confidence_words(Path(doc.pdf_path))
    except ApplianceError:
        return []


def doubtful_fields(values: Mapping[str, Any], words: Sequence[ReviewWord]) -> dict[str, list[str]]:
    """Per review field, the unsure words its value contains (compared without diacritics): a wrong digit
    in a number, date or ID is seen before signing."""
    unsure = {fold(w.text): w.text for w in words if len(fold(w.text)) >= 1 and any(c.isalnum() for c in w.text)}
    out: dict[str, list[str]] = {}
    for name in FIELD_NAMES:
        tokens = set(fold(str(values.get(name) or "")).split())
        hits = [text for key, text in unsure.items() if key in tokens]
        if hits:
            out[name] = sorted(set(hits))
    return out


# --- the pipeline's last steps ---------------------------------------------------------------------
def captured(session: Session, doc: Document, *, actor: Actor, backlog: bool, detail: dict[str, Any]) -> None:
    """A freshly recorded document: its review row (backlog results are results) and the trail's first line."""
    info = _info(session, doc)
    if backlog:
        info.backlog = True
        info.kind = info.kind or Kind.RESULT
    audit.record(
        session,
        actor=actor.username,
        action="capture",
        document_id=doc.id,
        dossier_code=doc.dossier_code,
        detail=detail,
    )


DATE_FIELDS = ("ngay_ban_hanh",)


def _shown(name: str, value: str) -> str:
    """A prefilled value as officers write it: dates dd/mm/yyyy (the package carries ISO dates)."""
    if name in DATE_FIELDS:
        check = domain.check_date(value)
        if check.ok:
            y, m, d = check.value.split("-")
            return f"{d}/{m}/{y}"
    return value


def digitized(session: Session, doc: Document, *, text: str, found: Sequence[Field]) -> None:
    """After the PDF/A is archived: keep the text for search, prefill unreviewed fields, move to digitized."""
    doc.fields = fields_json(found)
    info = _info(session, doc)
    if not info.reviewed_at:
        best: dict[str, tuple[float, str]] = {}
        for f in found:
            if f.name not in best or f.confidence > best[f.name][0]:
                best[f.name] = (f.confidence, f.value)
        info.fields = {name: _shown(name, value) for name, (_c, value) in best.items()}
    info.text = text
    reindex(session, info, doc)
    doc.error_code, doc.error_detail = None, None
    workflow.move(session, doc, DocState.DIGITIZED, actor=workflow.SYSTEM, detail={"pages": doc.page_count})


def failed(session: Session, doc: Document, err: BaseException) -> None:
    """A step could not finish: the document says why; nothing is deleted."""
    code = err.code if isinstance(err, ApplianceError) else "unknown"
    doc.error_code = code
    doc.error_detail = (err.detail if isinstance(err, ApplianceError) else f"{type(err).__name__}: {err}")[:500]
    if workflow.allowed(doc.state, DocState.FAILED):
        workflow.move(session, doc, DocState.FAILED, actor=workflow.SYSTEM, detail={"error": code})


# --- review ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ReviewForm:
    kind: str
    fields: Mapping[str, str]
    result_code: str = ""
    auto_code: bool = False
    valid_until: str = ""
    backlog: bool = False
    printed_unit: str = ""  # the unit printed on an old paper (a pre-2025 commune or district), as written


def _check_review(form: ReviewForm) -> dict[str, str]:
    errors: dict[str, str] = {}
    if form.kind not in {k.value for k in Kind}:
        errors["kind"] = "Hãy chọn loại tài liệu (một trong ba nhóm theo Quyết định 468)."
    if form.fields.get("ngay_ban_hanh") and not domain.check_date(form.fields["ngay_ban_hanh"]).ok:
        errors["ngay_ban_hanh"] = MESSAGES_VI["invalid_date"]
    if form.valid_until and not domain.check_date(form.valid_until).ok:
        errors["valid_until"] = MESSAGES_VI["invalid_date"]
    if form.fields.get("ma_tthc") and not domain.check_tthc_code(form.fields["ma_tthc"]).ok:
        errors["ma_tthc"] = MESSAGES_VI["invalid_tthc_code"]
    if form.kind == Kind.RESULT and not form.result_code and not form.auto_code:
        errors["result_code"] = (
            "Kết quả giải quyết cần có mã kết quả. Hãy nhập mã hoặc đánh dấu ô «Cấp mã tự động khi để trống»."
        )
    return errors


def _editable(doc: Document, *, what: str) -> None:
    if workflow.frozen(doc.state):
        raise DocumentFrozen(f"document {doc.id} is {doc.state}: {what} refused")
    if doc.superseded_by:
        raise DocumentFrozen(f"document {doc.id} was superseded: {what} refused")
    if doc.state == DocState.CAPTURED:
        raise DocumentBusy(f"document {doc.id} is being digitized: {what} refused")


def review(session: Session, *, actor: Actor, doc_id: str, form: ReviewForm, sign: SignSettings) -> DocumentInfo:
    """The officer's check: fields, kind, result code, validity, and the unit printed on an old paper (kept as
    written, with today's unit from the old -> new mapping beside it, :func:`appliance.units.today_for`).
    Every change goes to the trail (old -> new)."""
    doc = load(session, doc_id).doc
    _editable(doc, what="review")
    if not workflow.allowed(doc.state, DocState.REVIEWED):
        raise IllegalTransition(f"document {doc.id} is {doc.state}: review refused")
    errors = _check_review(form)
    if errors:
        raise FormInvalid(errors)
    info = _info(session, doc)
    values = {name: str(form.fields.get(name, "") or "").strip()[:1000] for name in FIELD_NAMES}
    code: str | None = None
    if form.kind == Kind.RESULT:
        typed = form.result_code.strip()
        try:
            if typed and typed == info.result_code:
                code = typed
            else:
                resultcodes.release(session, document_id=doc.id, back_to=doc.supersedes_id)
                if typed:
                    code = resultcodes.assign(session, document_id=doc.id, code=typed, sign=sign)
                else:
                    code = resultcodes.mint(session, document_id=doc.id, sign=sign)
        except ApplianceError as err:
            raise FormInvalid({"result_code": message_for(err)}) from err
    elif info.result_code:
        resultcodes.release(session, document_id=doc.id, back_to=doc.supersedes_id)
    changes: list[tuple[str, Any, Any]] = []
    for name in FIELD_NAMES:
        old = (info.fields or {}).get(name) or ""
        if old != values[name]:
            changes.append((name, old, values[name]))
    for attr, new in (("kind", form.kind), ("result_code", code), ("valid_until", form.valid_until or None)):
        old = getattr(info, attr)
        if (old or None) != (new or None):
            changes.append((attr, old, new))
    before = (info.printed_unit, info.current_unit)
    printed = " ".join(form.printed_unit.split())[:300]
    if printed:  # looked up again at every review: a reloaded unit table gives today's unit
        units.record_printed_unit(session, document_id=doc.id, printed=printed)
    else:
        info.printed_unit = info.current_unit = None
    for attr, old in zip(("printed_unit", "current_unit"), before, strict=True):
        if (old or None) != (getattr(info, attr) or None):
            changes.append((attr, old, getattr(info, attr)))
    for name, old, new in changes:
        action = name if name in {"kind", "result_code"} else "field"
        audit.record(
            session,
            actor=actor.username,
            action=action,
            document_id=doc.id,
            dossier_code=doc.dossier_code,
            detail={"field": name, "old": old, "new": new},
        )
    info.kind, info.result_code = form.kind, code
    info.valid_until = form.valid_until or None
    info.backlog = form.backlog or info.backlog
    info.fields = values
    info.reviewed_by, info.reviewed_at = actor.username, datetime.now(UTC)
    reindex(session, info, doc)
    workflow.move(session, doc, DocState.REVIEWED, actor=actor, action="review", detail={"changes": len(changes)})
    return info


# --- pages -----------------------------------------------------------------------------------------
def _pages_editable(doc: Document) -> None:
    _editable(doc, what="page edit")
    if doc.state not in workflow.PAGES_EDITABLE:
        raise DocumentBusy(f"document {doc.id} is {doc.state}: page edit refused")


def _renumber(session: Session, order: Sequence[Page]) -> None:
    for i, p in enumerate(order):  # two steps: the (document, index) pair is unique
        p.index = -1 - i
    session.flush()
    for i, p in enumerate(order):
        p.index = i


def edit_page(
    session: Session, store: OriginalStore, *, actor: Actor, doc_id: str, page_id: int, action: str
) -> Document:
    """Rotate (a quarter turn clockwise), move up or down, or delete one page; the document is redone."""
    if action not in PAGE_ACTIONS:
        raise IllegalTransition(f"unknown page action {action!r}")
    doc = load(session, doc_id).doc
    _pages_editable(doc)
    pages = list(doc.pages)
    at = next((i for i, p in enumerate(pages) if p.id == page_id), None)
    if at is None:
        raise NotFound(f"page {page_id} not in document {doc_id}")
    if action == "delete" and len(pages) == 1:
        raise FormInvalid({"pages": "Không xóa được trang duy nhất của tài liệu."})
    if action == "rotate":
        image, dpi = store.get_image(pages[at].original_sha256)
        pages[at].original_sha256 = store.put_image(
            np.ascontiguousarray(np.rot90(image, k=-1)), dpi=dpi or pages[at].dpi
        )
        pages[at].upright = True  # the officer decided: automatic orientation must not undo it
    else:
        order = list(pages)
        if action == "delete":
            doc.pages.remove(order.pop(at))
        elif action == "up" and at > 0:
            order[at - 1], order[at] = order[at], order[at - 1]
        elif action == "down" and at < len(order) - 1:
            order[at + 1], order[at] = order[at], order[at + 1]
        _renumber(session, order)
        doc.page_count = len(order)
    workflow.move(session, doc, DocState.CAPTURED, actor=actor, action="page", detail={"page": at + 1, "edit": action})
    return doc


def replace_page(
    session: Session, store: OriginalStore, *, actor: Actor, doc_id: str, page_id: int, raw: RawPage
) -> Document:
    """A rescanned (or uploaded) page takes the place of page ``page_id``; the document is redone."""
    doc = load(session, doc_id).doc
    _pages_editable(doc)
    page = next((p for p in doc.pages if p.id == page_id), None)
    if page is None:
        raise NotFound(f"page {page_id} not in document {doc_id}")
    digest = store.put_image(raw.image, dpi=raw.dpi)
    page.original_sha256, page.dpi, page.upright, page.flags = digest, round(raw.dpi), False, []
    page.label = f"{raw.label} (thay)"[:200]
    workflow.move(
        session, doc, DocState.CAPTURED, actor=actor, action="page", detail={"page": page.index + 1, "edit": "replace"}
    )
    return doc


def split(session: Session, *, actor: Actor, doc_id: str, page_ids: Sequence[int]) -> list[str]:
    """Cut before each chosen page: every part becomes its own document (same originals). Returns all ids."""
    loaded = load(session, doc_id)
    doc = loaded.doc
    _pages_editable(doc)
    pages = list(doc.pages)
    chosen = set(page_ids)
    cuts = [i for i, p in enumerate(pages) if p.id in chosen and i > 0]
    if not cuts:
        raise FormInvalid({"pages": "Hãy chọn ít nhất một trang bắt đầu tài liệu mới."})
    bounds = [0, *cuts, len(pages)]
    parts = [pages[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    backlog = bool(loaded.info and loaded.info.backlog)
    new_ids = []
    for part in parts[1:]:
        new = create_document(
            session,
            source=doc.source,
            pages=[(p.original_sha256, p.label, float(p.dpi)) for p in part],
            digitizer=doc.digitizer,
            dossier_code=doc.dossier_code,
        )
        for old, fresh in zip(part, new.pages, strict=True):
            fresh.upright = old.upright
        captured(session, new, actor=actor, backlog=backlog, detail={"split_from": doc.id, "pages": len(part)})
        new_ids.append(new.id)
        for p in part:
            doc.pages.remove(p)
    doc.page_count = len(parts[0])
    workflow.move(session, doc, DocState.CAPTURED, actor=actor, action="split", detail={"parts": len(parts)})
    return [doc.id, *new_ids]


# --- reuse and corrections -------------------------------------------------------------------------
def _same_paper(a: DocumentInfo | None, b: DocumentInfo | None) -> bool:
    """Same number and issuer (when both are known)."""
    if a is None or b is None:
        return False
    number = (a.fields.get("so_ky_hieu") or "").strip().lower()
    issuer = (a.fields.get("co_quan_ban_hanh") or "").strip().lower()
    return bool(number and issuer) and (
        number == (b.fields.get("so_ky_hieu") or "").strip().lower()
        and issuer == (b.fields.get("co_quan_ban_hanh") or "").strip().lower()
    )


def _copy_pages(session: Session, source: Document, *, dossier_code: str | None) -> Document:
    copy = create_document(
        session,
        source=source.source,
        pages=[(p.original_sha256, p.label, float(p.dpi)) for p in source.pages],
        digitizer=source.digitizer,
        dossier_code=dossier_code,
    )
    for old, fresh in zip(source.pages, copy.pages, strict=True):
        fresh.rotation, fresh.skew, fresh.flags = old.rotation, old.skew, list(old.flags or [])
        fresh.encoding, fresh.mean_conf, fresh.encoded_bytes = old.encoding, old.mean_conf, old.encoded_bytes
        fresh.upright = old.upright
    copy.fields = dict(source.fields or {})
    copy.pdf_path, copy.pdf_sha256, copy.pdf_bytes = source.pdf_path, source.pdf_sha256, source.pdf_bytes
    return copy


def reuse(session: Session, *, actor: Actor, source_id: str, dossier_code: str) -> tuple[str, bool]:
    """Attach an already digitized document to a dossier instead of scanning the paper again (Decision 766).

    Returns (document id, created): the dossier's own copy when it already holds the same paper."""
    loaded = load(session, source_id)
    source, source_info = loaded.doc, loaded.info
    if source.state not in workflow.DIGITIZED_OR_LATER or not source.pdf_path:
        raise IllegalTransition(f"document {source_id} is {source.state}: not reusable yet")
    if session.get(Dossier, dossier_code) is None:
        raise NotFound(f"dossier {dossier_code} not found")
    mine = session.execute(
        select(Document, DocumentInfo)
        .outerjoin(DocumentInfo, DocumentInfo.document_id == Document.id)
        .where(Document.dossier_code == dossier_code)
    ).all()
    for other, other_info in mine:
        if other.id == source.id or (other.pdf_sha256 and other.pdf_sha256 == source.pdf_sha256):
            return other.id, False
        if _same_paper(other_info, source_info):
            return other.id, False
    copy = _copy_pages(session, source, dossier_code=dossier_code)
    info = DocumentInfo(
        document_id=copy.id,
        kind=Kind.COMPONENT,  # a paper already issued, now a component of this dossier
        fields=dict(source_info.fields) if source_info else {},
        valid_until=source_info.valid_until if source_info else None,
        backlog=False,
        text=source_info.text if source_info else "",
        text_folded="",
        reviewed_by=actor.username,
        reviewed_at=datetime.now(UTC),
    )
    session.add(info)
    session.flush()
    reindex(session, info, copy)
    session.add(
        Reuse(document_id=copy.id, source_document_id=source.id, dossier_code=dossier_code, reused_by=actor.username)
    )
    detail = {"source_document": source.id, "source_dossier": source.dossier_code}
    audit.record(
        session, actor=actor.username, action="reuse", document_id=copy.id, dossier_code=dossier_code, detail=detail
    )
    workflow.move(session, copy, DocState.DIGITIZED, actor=actor, action="reuse")
    workflow.move(session, copy, DocState.REVIEWED, actor=actor, action="review", detail={"kind": Kind.COMPONENT})
    return copy.id, True


def correct(session: Session, *, actor: Actor, doc_id: str) -> str:
    """A new version of a signed document, to be reviewed and signed again; the old one stays, superseded.

    The new version starts digitized (same pages and archived PDF/A), with the old one's fields, kind and
    result code; its package will name the package it supersedes."""
    loaded = load(session, doc_id)
    old = loaded.doc
    if old.superseded_by:
        raise IllegalTransition(f"document {doc_id} already has a correction {old.superseded_by}")
    if old.state not in workflow.CORRECTABLE:
        raise IllegalTransition(f"document {doc_id} is {old.state}: nothing signed to correct")
    new = _copy_pages(session, old, dossier_code=old.dossier_code)
    new.version, new.supersedes_id = old.version + 1, old.id
    old.superseded_by = new.id
    before = loaded.info
    info = DocumentInfo(
        document_id=new.id,
        kind=before.kind if before else None,
        result_code=before.result_code if before else None,
        valid_until=before.valid_until if before else None,
        backlog=bool(before and before.backlog),
        fields=dict(before.fields) if before else {},
        text=before.text if before else "",
        text_folded="",
    )
    session.add(info)
    session.flush()
    reindex(session, info, new)
    resultcodes.hand_over(session, old_document_id=old.id, new_document_id=new.id)
    audit.record(
        session,
        actor=actor.username,
        action="correct",
        document_id=new.id,
        dossier_code=new.dossier_code,
        detail={
            "supersedes": old.id,
            "version": new.version,
            "package_superseded": before.package_id if before else None,
        },
    )
    audit.record(
        session,
        actor=actor.username,
        action="supersede",
        document_id=old.id,
        dossier_code=old.dossier_code,
        detail={"superseded_by": new.id},
    )
    workflow.move(session, new, DocState.DIGITIZED, actor=actor, action="correct")
    return new.id
