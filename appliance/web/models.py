"""Tables of the web UI: officers, their sessions, dossiers, the review of each document, backlog plans.

Documents and pages themselves belong to :mod:`appliance.db`; packages to :mod:`appliance.outbox.store`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from appliance.db import Base, utcnow


class Role(StrEnum):
    OFFICER = "officer"
    SUPERVISOR = "supervisor"


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


class User(Base):
    __tablename__ = "web_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), default=Role.OFFICER)
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebSession(Base):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is stored."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the cookie token
    user_id: Mapped[int] = mapped_column(ForeignKey("web_users.id", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


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
    package_id: Mapped[str | None] = mapped_column(String(64), index=True)


class Campaign(Base):
    """A yearly backlog plan: how many old, still valid results to digitize."""

    __tablename__ = "web_campaigns"

    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    target: Mapped[int] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(String(500), default="")
    updated_by: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class LoginFailure(Base):
    """One wrong password, keyed "u:<username>" or "c:<client address>" (kept across restarts)."""

    __tablename__ = "web_login_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FormNonce(Base):
    """A submitted form's one-time value and where its first submit led (double-submit guard)."""

    __tablename__ = "web_nonces"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    target: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


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
