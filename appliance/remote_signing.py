"""Remote signing, stored: which provider and credential each officer signs with, and the batches waiting
for the officer's approval on the phone.

A pending batch (`RemoteTransaction`) is written before the provider is asked for anything, with every
document already hashed (the prepared PDFs under data_dir/remote/<id>/), so a restart continues it
(`appliance.signing.resume_remote`). States: waiting -> done | failed (rejected, expired, timed out, or a
document changed meanwhile). What is stored is public: document ids, hashes, signed attributes, the
credential's certificate; never the SAD, an OAuth token or a partner secret.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from appliance.db import Base, utcnow
from appliance.errors import FormInvalid

WAITING = "waiting"
DONE = "done"
FAILED = "failed"


class SigningProfile(Base):
    """The remote signing service an officer signs with; no row = the USB token."""

    __tablename__ = "signing_profiles"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(64))  # a name under settings.remote.providers
    credential_id: Mapped[str] = mapped_column(String(200), default="")
    user_id: Mapped[str] = mapped_column(String(64), default="")  # the provider's user id (CCCD, MST...)
    updated_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RemoteTransaction(Base):
    __tablename__ = "remote_transactions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    provider: Mapped[str] = mapped_column(String(64))
    credential_id: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), default=WAITING, index=True)
    doc_ids: Mapped[list[str]] = mapped_column(JSON)
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)  # prepared documents, credential, algorithm, actor
    provider_ref: Mapped[str | None] = mapped_column(String(200))  # a vendor's transaction id (not a secret)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error_code: Mapped[str | None] = mapped_column(String(64))
    signed_count: Mapped[int] = mapped_column(Integer, default=0)


def profile(session: Session, *, username: str) -> SigningProfile | None:
    return session.get(SigningProfile, username)


def set_profile(
    session: Session,
    *,
    username: str,
    provider: str,
    credential_id: str,
    user_id: str,
    known_providers: set[str],
    by: str,
) -> SigningProfile | None:
    """Set (or with provider "" remove: back to the token) an officer's remote signing service."""
    row = session.get(SigningProfile, username)
    provider = provider.strip()
    if not provider:
        if row is not None:
            session.delete(row)
        return None
    if provider not in known_providers:
        raise FormInvalid({"provider": "Nhà cung cấp này chưa được cấu hình trên thiết bị."}, "unknown provider")
    credential_id, user_id = credential_id.strip()[:200], user_id.strip()[:64]
    if not credential_id and not user_id:
        raise FormInvalid({"credential_id": "Hãy nhập mã chứng thư hoặc mã người dùng của dịch vụ."}, "empty")
    if row is None:
        row = SigningProfile(username=username, provider=provider, updated_by=by)
        session.add(row)
    row.provider, row.credential_id, row.user_id = provider, credential_id, user_id
    row.updated_by, row.updated_at = by, utcnow()
    return row


def pending(session: Session, *, username: str | None = None) -> list[RemoteTransaction]:
    query = select(RemoteTransaction).where(RemoteTransaction.state == WAITING)
    if username is not None:
        query = query.where(RemoteTransaction.username == username)
    return list(session.scalars(query.order_by(RemoteTransaction.created_at)))


def latest(session: Session, *, username: str) -> RemoteTransaction | None:
    return session.scalars(
        select(RemoteTransaction)
        .where(RemoteTransaction.username == username)
        .order_by(RemoteTransaction.created_at.desc())
        .limit(1)
    ).first()
