"""The warehouse catalogue: one row per accepted package (SQLite by default, PostgreSQL by URL).

The package files themselves are content-addressed under the store directory (store/ab/abcd....asice).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Connection, DateTime, Engine, Integer, MetaData, String, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from appliance.db import make_engine, utcnow


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON}


class StoredPackage(Base):
    __tablename__ = "packages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    package_id: Mapped[str] = mapped_column(String(64), unique=True)
    device_id: Mapped[str] = mapped_column(String(100), index=True)
    commune_code: Mapped[str] = mapped_column(String(20), index=True, default="")
    dossier_code: Mapped[str | None] = mapped_column(String(64))
    # Decree 118/2025: the agency (or commune) whose warehouse stores it; commune_code is where it was received
    deciding_agency: Mapped[str | None] = mapped_column(String(64), index=True)
    category: Mapped[str | None] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(500))
    signer: Mapped[str | None] = mapped_column(String(500))
    warehouse_id: Mapped[str] = mapped_column(String(100))
    receipt: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Rejection(Base):
    """Every rejection, as a log; a rejected package is not catalogued, so a corrected resend is checked anew."""

    __tablename__ = "rejections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    package_id: Mapped[str] = mapped_column(String(64), index=True)
    device_id: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(String(1000))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def normalise_url(url: str) -> str:
    """`postgresql://...` means psycopg 3 (SQLAlchemy's default driver for it would be psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


SCHEMA_LOCK = 724_011  # PostgreSQL advisory lock key: one receiver at a time creates the tables


def create_tables(engine: Engine, metadata: MetaData) -> None:
    """Create missing tables and add missing nullable columns (the catalogue has no migrations: a column
    added to a model later, such as packages.deciding_agency, is added here to tables made before it);
    receivers starting together on PostgreSQL take turns (else CREATE TABLE / ALTER TABLE races)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
        metadata.create_all(conn)
        add_missing_columns(conn, metadata)


def add_missing_columns(conn: Connection, metadata: MetaData) -> list[str]:
    """ALTER TABLE ... ADD COLUMN for every nullable model column an existing table lacks (and its index)."""
    added: list[str] = []
    existing = inspect(conn)
    for table in metadata.sorted_tables:
        have = {c["name"] for c in existing.get_columns(table.name)}
        for column in table.columns:
            if column.name in have or not column.nullable:
                continue
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(text(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}'))
            added.append(f"{table.name}.{column.name}")
            for index in table.indexes:
                if [c.name for c in index.columns] == [column.name]:
                    index.create(conn, checkfirst=True)
    return added


def open_catalogue(url: str) -> sessionmaker[Session]:
    engine = make_engine(normalise_url(url))
    create_tables(engine, Base.metadata)
    return sessionmaker(engine, expire_on_commit=False)


def find(session: Session, package_id: str) -> StoredPackage | None:
    return session.scalar(select(StoredPackage).where(StoredPackage.package_id == package_id))


def record(factory: sessionmaker[Session], row: StoredPackage) -> StoredPackage:
    """Insert and commit; when another receiver stored the same package first, return its row."""
    try:
        with factory() as s, s.begin():
            s.add(row)
        return row
    except IntegrityError:
        with factory() as s:
            existing = find(s, row.package_id)
        if existing is None:
            raise
        return existing


def record_rejection(factory: sessionmaker[Session], *, package_id: str, device_id: str, reason: str) -> None:
    with factory() as s, s.begin():
        s.add(Rejection(package_id=package_id, device_id=device_id, reason=reason[:1000]))


def list_packages(session: Session) -> list[StoredPackage]:
    return list(session.scalars(select(StoredPackage).order_by(StoredPackage.commune_code, StoredPackage.id)))


def list_rejections(session: Session) -> list[Rejection]:
    return list(session.scalars(select(Rejection).order_by(Rejection.id)))
