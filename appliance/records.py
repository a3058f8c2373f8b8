"""The workflow's tables: dossiers, what officers decided about each document, reuse, separator sheets,
backlog plans, the audit trail, result codes and pending intakes.

Documents and pages themselves are in :mod:`appliance.db`; packages in :mod:`appliance.outbox.store`;
officers' accounts and browser sessions belong to the web UI (:mod:`appliance.web.models`). Table names
keep their first prefix (``web_``) so that existing databases and the search index need no renaming.
Only the functions of the workflow modules (dossiers, documents, signing, delivery) write these rows.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from appliance.db import Base, utcnow


class Kind(StrEnum):
    """The three categories of Decision 468 (values as appliance.sign.package.CATEGORIES)."""

    RESULT = "result"
    PROCESSING = "processing"
    COMPONENT = "component"


KIND_LABELS = {
    Kind.RESULT: "Kết quả giải quyết TTHC (kể cả văn bản từ chối)",
    Kind.PROCESSING: "Kết quả xử lý (kể cả dự thảo)",
    Kind.COMPONENT: "Thành phần hồ sơ do tổ chức, cá nhân nộp",
}


class Dossier(Base):
    __tablename__ = "web_dossiers"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    tthc_code: Mapped[str | None] = mapped_column(String(64))
    owner_id: Mapped[str | None] = mapped_column(String(32))
    owner_name: Mapped[str | None] = mapped_column(String(200))
    title: Mapped[str | None] = mapped_column(String(500))
    appointment: Mapped[str | None] = mapped_column(String(32))
    backlog: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    # Decree 118/2025: any centre receives dossiers for any commune of the province and for provincial
    # procedures, so where it was received and who decides (whose warehouse stores the result) are two
    # facts. receiving_unit: this box's commune when opened (None in dossiers opened before 0009: the box's
    # commune); deciding_agency: a unit or agency code, None = the receiving unit.
    receiving_unit: Mapped[str | None] = mapped_column(String(64))
    deciding_agency: Mapped[str | None] = mapped_column(String(64), index=True)


class DocumentInfo(Base):
    """What the officer decided about one document, and its search text (folded, no diacritics)."""

    __tablename__ = "web_documents"

    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str | None] = mapped_column(String(16))
    result_code: Mapped[str | None] = mapped_column(String(100))
    valid_until: Mapped[str | None] = mapped_column(String(32))
    backlog: Mapped[bool] = mapped_column(Boolean, default=False)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # name -> value, as reviewed
    reviewed_by: Mapped[str | None] = mapped_column(String(64))
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    text: Mapped[str] = mapped_column(Text, default="")
    text_folded: Mapped[str] = mapped_column(Text, default="")
    signed_path: Mapped[str | None] = mapped_column(String(500))
    signed_by: Mapped[str | None] = mapped_column(String(64))
    signed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cert_subject: Mapped[str | None] = mapped_column(String(500))
    cert_serial: Mapped[str | None] = mapped_column(String(100))
    package_id: Mapped[str | None] = mapped_column(String(64), index=True)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rejected_reason: Mapped[str | None] = mapped_column(String(500))
    # an old result keeps the unit printed on it (pre-2025 names stay history) and gets today's unit
    printed_unit: Mapped[str | None] = mapped_column(String(300))
    current_unit: Mapped[str | None] = mapped_column(String(64))


class Campaign(Base):
    """A yearly backlog plan: how many old, still valid results to digitize."""

    __tablename__ = "web_campaigns"

    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    target: Mapped[int] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(String(500), default="")
    updated_by: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class Reuse(Base):
    """An already digitized document attached to another dossier instead of being scanned again."""

    __tablename__ = "web_reuses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    source_document_id: Mapped[str] = mapped_column(String(36))
    dossier_code: Mapped[str] = mapped_column(String(64), index=True)
    reused_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Separator(Base):
    """A QR separator sheet met in a scanned batch: not kept in any document, but recorded."""

    __tablename__ = "web_separators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch: Mapped[str] = mapped_column(String(32), index=True)  # the job id
    position: Mapped[int] = mapped_column(Integer)  # 0-based, among the batch's sheets
    text: Mapped[str] = mapped_column(String(500))
    original_sha256: Mapped[str] = mapped_column(String(64))
    before_document_id: Mapped[str | None] = mapped_column(String(36))  # the part that follows it
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditEvent(Base):
    """One line of the append-only audit trail (SQLite triggers refuse UPDATE and DELETE)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))  # a username, or "system"
    action: Mapped[str] = mapped_column(String(32))
    dossier_code: Mapped[str | None] = mapped_column(String(64), index=True)
    document_id: Mapped[str | None] = mapped_column(String(36), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ResultCode(Base):
    """Every result code in use: one row per code (UNIQUE), pointing at the document that carries it now."""

    __tablename__ = "result_codes"

    code: Mapped[str] = mapped_column(String(100), primary_key=True)
    document_id: Mapped[str] = mapped_column(String(36), index=True)
    minted: Mapped[bool] = mapped_column(Boolean, default=False)  # from the sequence, not typed
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Sequence(Base):
    """A named counter (the result-code sequence); incremented inside the writer's transaction."""

    __tablename__ = "sequences"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class Intake(Base):
    """Uploaded files waiting to become documents: recorded before any decoding, so a restart resumes them.

    The row is marked done in the same transaction that records the documents made from it."""

    __tablename__ = "intakes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    folder: Mapped[str] = mapped_column(String(500))
    files: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [[officer's file name, stored name], ...]
    dossier_code: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(64))
    digitizer: Mapped[str | None] = mapped_column(String(200))
    backlog: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)  # pending | done | failed
    error_code: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AdminUnit(Base):
    """One administrative unit (or provincial agency) over one period of validity: versioned, never edited in
    place. A change (a new name, xã -> phường, Đồng Nai becoming a city on 30/04/2026) closes the current row
    (``valid_to``) and adds one; loaded from provincial IT's CSV by :mod:`appliance.units`."""

    __tablename__ = "admin_units"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(64), index=True)  # Decision 19/2025 code, or an agency's code
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))  # xã / phường / đặc khu / tỉnh / thành phố / cơ quan
    province_code: Mapped[str] = mapped_column(String(10), index=True)
    province_name: Mapped[str] = mapped_column(String(200))
    valid_from: Mapped[str] = mapped_column(String(10))  # YYYY-MM-DD
    valid_to: Mapped[str | None] = mapped_column(String(10))  # first day it is no longer valid; None: current
    version: Mapped[str] = mapped_column(String(64))  # the label of the load that added it
    source: Mapped[str] = mapped_column(String(500), default="")


class UnitMapping(Base):
    """A unit that no longer exists (a pre-2025 commune, with the district it was in, as history) and the
    unit it became; several old units map to one new one, an old unit split in parts has several rows."""

    __tablename__ = "admin_unit_map"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    old_code: Mapped[str] = mapped_column(String(64), index=True)
    old_name: Mapped[str] = mapped_column(String(200))
    old_parent: Mapped[str] = mapped_column(String(200), default="")  # as printed: "huyện ..." is history here
    new_code: Mapped[str] = mapped_column(String(64), index=True)
    valid_to: Mapped[str] = mapped_column(String(10))  # the day the old unit ceased (2025-07-01)
    version: Mapped[str] = mapped_column(String(64))
