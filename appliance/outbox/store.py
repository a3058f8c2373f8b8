"""The outbox: one row per package in the appliance database, the source of truth for delivery.

States: queued -> sending -> transferred -> receipted, or rejected (with the warehouse's reason).
Every change is committed before the action it describes, so a kill -9 or a power cut at any
instant leaves a row the sender resumes from. A row leaves the queue only on the warehouse's
receipt; the package file stays in the local archive for the retention period after that.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from sqlalchemy import DateTime, Integer, String, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from appliance.db import Base, utcnow
from appliance.errors import OutboxError


class PackageState(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    TRANSFERRED = "transferred"  # every byte stored by the receiver; waiting for its receipt
    RECEIPTED = "receipted"
    REJECTED = "rejected"


UNSENT = (PackageState.QUEUED, PackageState.SENDING, PackageState.TRANSFERRED)

# Priorities: lower goes first (status > receipts > packages > bulk).
PRIORITY_STATUS = 0
PRIORITY_RECEIPT = 1
PRIORITY_PACKAGE = 2
PRIORITY_BULK = 3


class OutboxItem(Base):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    package_id: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(String(500))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    dossier_code: Mapped[str | None] = mapped_column(String(64), index=True)
    priority: Mapped[int] = mapped_column(Integer, default=PRIORITY_PACKAGE)
    state: Mapped[str] = mapped_column(String(16), default=PackageState.QUEUED, index=True)
    reason: Mapped[str | None] = mapped_column(String(500))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    bytes_acked: Mapped[int] = mapped_column(Integer, default=0)
    next_try_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    warehouse_id: Mapped[str | None] = mapped_column(String(100))
    receipted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    archived: Mapped[int] = mapped_column(Integer, default=1)  # 0 once the file left the local archive
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


def file_sha256(path: Path) -> tuple[int, str]:
    """Size and SHA-256 of a file, read in 1 MB blocks (a 200 MB package never sits in memory)."""
    h = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
                size += len(block)
    except OSError as err:
        raise OutboxError(f"cannot read {path}: {err.strerror}") from err
    return size, h.hexdigest()


def enqueue(
    session: Session, *, path: Path, package_id: str, dossier_code: str | None = None, priority: int = 2
) -> OutboxItem:
    """Queue a package file; idempotent per package_id (the existing row is returned unchanged)."""
    existing = session.scalar(select(OutboxItem).where(OutboxItem.package_id == package_id))
    if existing is not None:
        return existing
    size, sha = file_sha256(path)
    item = OutboxItem(
        package_id=package_id,
        path=str(path),
        size=size,
        sha256=sha,
        dossier_code=dossier_code,
        priority=priority,
        state=PackageState.QUEUED,
        attempts=0,
        bytes_acked=0,
    )
    session.add(item)
    session.flush()
    return item


def list_items(session: Session, *, states: Sequence[str] | None = None, limit: int = 200) -> list[OutboxItem]:
    """Newest first."""
    q = select(OutboxItem)
    if states:
        q = q.where(OutboxItem.state.in_(list(states)))
    return list(session.scalars(q.order_by(OutboxItem.created_at.desc(), OutboxItem.id.desc()).limit(limit)))


def get_item(session: Session, *, item_id: int | None = None, package_id: str | None = None) -> OutboxItem:
    item = (
        session.get(OutboxItem, item_id)
        if item_id is not None
        else session.scalar(select(OutboxItem).where(OutboxItem.package_id == package_id))
    )
    if item is None:
        raise OutboxError(f"no outbox item {item_id if item_id is not None else package_id}")
    return item


def retry(session: Session, *, item_id: int) -> OutboxItem:
    """A rejected package goes back to the queue (after the officer corrected it): attempts reset."""
    item = get_item(session, item_id=item_id)
    if item.state != PackageState.REJECTED:
        raise OutboxError(f"outbox item {item_id} is {item.state}, only a rejected package can be retried")
    size, sha = file_sha256(Path(item.path))
    item.size, item.sha256 = size, sha
    item.state = PackageState.QUEUED
    item.attempts = 0
    item.bytes_acked = 0
    item.next_try_at = None
    item.reason = None
    session.flush()
    return item


def depth(session: Session) -> tuple[int, datetime | None]:
    """How many packages are not yet receipted (nor rejected), and when the oldest of them was queued."""
    count, oldest = session.execute(
        select(func.count(OutboxItem.id), func.min(OutboxItem.created_at)).where(OutboxItem.state.in_(list(UNSENT)))
    ).one()
    return int(count), aware(oldest)


def aware(when: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; they are stored in UTC."""
    if when is None or when.tzinfo is not None:
        return when
    return when.replace(tzinfo=UTC)


def next_due(session: Session, *, now: datetime, max_priority: int | None = None) -> OutboxItem | None:
    """The next package to work on: unsent, due, highest priority first, then oldest."""
    q = select(OutboxItem).where(OutboxItem.state.in_([PackageState.QUEUED, PackageState.SENDING]))
    q = q.where((OutboxItem.next_try_at.is_(None)) | (OutboxItem.next_try_at <= now))
    if max_priority is not None:
        q = q.where(OutboxItem.priority <= max_priority)
    return session.scalar(q.order_by(OutboxItem.priority, OutboxItem.created_at, OutboxItem.id).limit(1))


def awaiting_receipt(session: Session, *, older_than: datetime) -> list[OutboxItem]:
    """Transferred packages whose receipt has not come by `older_than` (asked again with a resent init)."""
    q = select(OutboxItem).where(OutboxItem.state == PackageState.TRANSFERRED)
    return list(session.scalars(q.where(OutboxItem.updated_at <= older_than).order_by(OutboxItem.id)))


def expired_archive(session: Session, *, now: datetime, retention_days: int) -> list[OutboxItem]:
    """Receipted packages whose local copy is past the retention period."""
    cutoff = now - timedelta(days=retention_days)
    q = select(OutboxItem).where(
        OutboxItem.state == PackageState.RECEIPTED, OutboxItem.archived == 1, OutboxItem.receipted_at <= cutoff
    )
    return list(session.scalars(q))


def purge_archive(session: Session, *, now: datetime, retention_days: int) -> list[str]:
    """Delete local package files past retention (the row stays as the record). Returns the paths removed."""
    removed = []
    for item in expired_archive(session, now=now, retention_days=retention_days):
        Path(item.path).unlink(missing_ok=True)
        item.archived = 0
        removed.append(item.path)
    session.flush()
    return removed


def due_again(session: Session, *, now: datetime) -> int:
    """Packages being sent that wait out a back-off become due now (a receiver has come back); how many."""
    items = session.scalars(
        select(OutboxItem).where(OutboxItem.state == PackageState.SENDING, OutboxItem.next_try_at > now)
    ).all()
    for item in items:
        item.next_try_at = now
    return len(items)
