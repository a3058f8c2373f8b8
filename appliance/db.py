"""SQLite (or PostgreSQL by URL) through SQLAlchemy 2.0; schema owned by Alembic migrations.

Every pipeline step records its state here before it acts, so work resumes after a power cut.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    create_engine,
    event,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class DocState(StrEnum):
    """A document's life; the allowed moves between these are one table in :mod:`appliance.workflow`."""

    CAPTURED = "captured"  # originals stored, pages recorded; digitizing is due
    DIGITIZED = "digitized"  # cleaned, recognised, PDF/A written, fields prefilled, indexed
    REVIEWED = "reviewed"  # an officer checked the fields and chose the kind (and result code)
    SIGNED = "signed"  # signed with a token: frozen from here on
    QUEUED = "queued"  # in a package in the outbox
    DELIVERED = "delivered"  # the warehouse's receipt arrived
    REJECTED = "rejected"  # the warehouse refused the package (reason kept)
    FAILED = "failed"  # a step failed; error_code says why, nothing was deleted


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Document(Base):
    __tablename__ = "documents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    source: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default=DocState.CAPTURED, index=True)
    dossier_code: Mapped[str | None] = mapped_column(String(64), index=True)
    digitizer: Mapped[str | None] = mapped_column(String(200))
    page_count: Mapped[int] = mapped_column(Integer, default=0)
    pdf_path: Mapped[str | None] = mapped_column(String(500))
    pdf_sha256: Mapped[str | None] = mapped_column(String(64))
    pdf_bytes: Mapped[int | None] = mapped_column(Integer)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_detail: Mapped[str | None] = mapped_column(String(500))
    version: Mapped[int] = mapped_column(Integer, default=1)  # 2, 3 ... for corrections
    supersedes_id: Mapped[str | None] = mapped_column(String(36), index=True)  # the version this corrects
    superseded_by: Mapped[str | None] = mapped_column(String(36))  # the correction that replaced this one
    pages: Mapped[list[Page]] = relationship(
        back_populates="document", order_by="Page.index", cascade="all, delete-orphan"
    )


class Page(Base):
    __tablename__ = "pages"
    __table_args__ = (UniqueConstraint("document_id", "index", name="uq_pages_document_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(200), default="")
    original_sha256: Mapped[str] = mapped_column(String(64))
    dpi: Mapped[int] = mapped_column(Integer)
    rotation: Mapped[int | None] = mapped_column(Integer)
    skew: Mapped[float | None]
    flags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    encoding: Mapped[str | None] = mapped_column(String(16))
    mean_conf: Mapped[float | None]
    encoded_bytes: Mapped[int | None] = mapped_column(Integer)
    upright: Mapped[bool] = mapped_column(Boolean, default=False)  # orientation set by an officer
    document: Mapped[Document] = relationship(back_populates="pages")


def make_engine(url: str) -> Engine:
    """An engine with SQLite set up for an appliance: WAL, foreign keys, a busy timeout."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    sqlite = url.startswith("sqlite")
    # Ten officers at once: keep enough SQLite connections open that requests do not reopen the file.
    pooled = sqlite and url.startswith("sqlite:///") and ":memory:" not in url  # a file: a QueuePool
    engine = create_engine(
        url, connect_args={"timeout": 30} if sqlite else {}, **({"pool_size": 20, "max_overflow": 20} if pooled else {})
    )
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

    return engine


_upgrade_lock = threading.Lock()
_upgraded: set[str] = set()


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent; once per database per process).

    Alembic is not thread-safe, so concurrent callers (web jobs, the CLI) are serialised here.
    """
    from alembic import command
    from alembic.config import Config

    key = engine.url.render_as_string(hide_password=False)
    with _upgrade_lock:
        if key in _upgraded:
            return
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "heads")  # parts add independent branches off 0001
        _upgraded.add(key)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    with factory() as session, session.begin():
        yield session


# --- repository functions (keyword-only) -----------------------------------------------------
def create_document(
    session: Session,
    *,
    source: str,
    pages: Sequence[tuple[str, str, float]],
    digitizer: str | None = None,
    dossier_code: str | None = None,
) -> Document:
    """Record a captured document: pages are (original sha256, label, dpi) in physical order."""
    doc = Document(source=source, digitizer=digitizer, dossier_code=dossier_code, page_count=len(pages))
    doc.pages = [
        Page(index=i, original_sha256=sha, label=label, dpi=round(dpi)) for i, (sha, label, dpi) in enumerate(pages)
    ]
    session.add(doc)
    session.flush()
    return doc


def documents_in_state(session: Session, *, states: Sequence[str]) -> list[Document]:
    return list(session.scalars(select(Document).where(Document.state.in_(states)).order_by(Document.created_at)))


def fields_json(fields: Sequence[Any]) -> dict[str, Any]:
    """Fields as stored: name -> list of {value, confidence, source, valid, problem}."""
    out: dict[str, list[dict[str, Any]]] = {}
    for f in fields:
        out.setdefault(f.name, []).append(
            {
                "value": f.value,
                "confidence": f.confidence,
                "source": f.source,
                "valid": f.valid,
                "problem": f.problem,
            }
        )
    result: dict[str, Any] = json.loads(json.dumps(out, ensure_ascii=False))
    return result
