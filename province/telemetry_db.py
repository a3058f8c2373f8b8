"""The province's telemetry tables: one `devices` row per box (its latest state and the readiness items
computed at ingest), a down-sampled reading history, daily counters, incidents, open alerts, the
administrative units the province expects boxes at, and the dashboard's stored verdict rows.

They live next to the package catalogue (same database, SQLite by default, PostgreSQL by URL) and are
created the same way (`create_all`, no migrations in the province catalogue). The ingest
(`province.telemetry`) writes them and the dashboard (`province.dashboard`) reads them; both import this
module, neither imports the other's internals back.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Date, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from appliance.db import make_engine, utcnow
from province import catalogue


class TelemetryBase(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Device(TelemetryBase):
    __tablename__ = "tm_devices"

    device_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    commune_code: Mapped[str] = mapped_column(String(20), index=True, default="")
    state: Mapped[str] = mapped_column(String(16), default="unknown")  # online / offline / lost / unknown
    boot_id: Mapped[str | None] = mapped_column(String(64))
    seq: Mapped[int | None] = mapped_column(BigInteger)  # milliseconds since the epoch on the box
    state_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # when the province saw it
    last_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    first_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reading_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # the box's clock
    version: Mapped[str | None] = mapped_column(String(64))
    verdict: Mapped[str] = mapped_column(String(16), default="unknown")  # from the last reading
    items: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [{item, level, reason, action}]
    reading: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the last live reading
    disk_used_pct: Mapped[float | None] = mapped_column(Float)
    cpu_temp_c: Mapped[float | None] = mapped_column(Float)
    outbox_depth: Mapped[int | None] = mapped_column(Integer)
    outbox_oldest_s: Mapped[float | None] = mapped_column(Float)
    min_cert_days: Mapped[int | None] = mapped_column(Integer)
    pin_locked: Mapped[bool] = mapped_column(Boolean, default=False)
    messages: Mapped[int] = mapped_column(Integer, default=0)
    roster_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # reading of its roster (tm_roster)


class History(TelemetryBase):
    __tablename__ = "tm_readings"
    __table_args__ = (Index("ix_tm_readings_device_at", "device_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    historical: Mapped[bool] = mapped_column(Boolean, default=False)
    disk_used_pct: Mapped[float | None] = mapped_column(Float)
    cpu_temp_c: Mapped[float | None] = mapped_column(Float)
    outbox_depth: Mapped[int | None] = mapped_column(Integer)
    outbox_oldest_s: Mapped[float | None] = mapped_column(Float)
    link_rtt_ms: Mapped[float | None] = mapped_column(Float)
    memory_used_pct: Mapped[float | None] = mapped_column(Float)


class DayCounters(TelemetryBase):
    __tablename__ = "tm_counters"

    device_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    commune_code: Mapped[str] = mapped_column(String(20), index=True)
    dossiers_received: Mapped[int] = mapped_column(Integer, default=0)
    components_digitized: Mapped[int] = mapped_column(Integer, default=0)
    results_electronic: Mapped[int] = mapped_column(Integer, default=0)
    reused: Mapped[int] = mapped_column(Integer, default=0)
    backlog_digitized: Mapped[int] = mapped_column(Integer, default=0)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AgencyDayCounters(TelemetryBase):
    """One deciding agency's share of a box's day (telemetry `Counters.by_deciding_agency`, Decree 118/2025);
    a box's rows of a day are replaced together whenever its counters for that day are resent.
    `commune_code` is the receiving centre: the unit the box is recorded at."""

    __tablename__ = "tm_agency_counters"

    device_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True, index=True)
    agency: Mapped[str] = mapped_column(String(64), primary_key=True)  # "*": the box's smallest agencies together
    commune_code: Mapped[str] = mapped_column(String(20), index=True)
    dossiers_received: Mapped[int] = mapped_column(Integer, default=0)
    components_digitized: Mapped[int] = mapped_column(Integer, default=0)
    results_electronic: Mapped[int] = mapped_column(Integer, default=0)
    reused: Mapped[int] = mapped_column(Integer, default=0)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class IncidentRow(TelemetryBase):
    __tablename__ = "tm_incidents"

    incident_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(100), index=True)
    commune_code: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reporter: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    handled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    handled_by: Mapped[str | None] = mapped_column(String(200))


class Unit(TelemetryBase):
    """The administrative units the province expects boxes at, today (two levels since 01/07/2025: the
    province's agencies and centre, `level` "province"; xã / phường / đặc khu, `level` "commune"). Loaded from
    the units CSV (appliance.units, `province units`); no district level."""

    __tablename__ = "tm_units"

    commune_code: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    province_code: Mapped[str] = mapped_column(String(10), index=True)
    province_name: Mapped[str] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(20), default="commune")
    kind: Mapped[str] = mapped_column(String(40), default="xã")  # xã / phường / đặc khu / sở ...


class RolloutDeadline(TelemetryBase):
    """A rollout deadline provincial IT sets (`province rollout FILE.csv`): `scope` is a unit code, a kind
    (xã, phường, đặc khu, cơ quan cấp tỉnh ...) or a level (commune, province); the most specific wins."""

    __tablename__ = "tm_deadlines"

    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    deadline: Mapped[date] = mapped_column(Date)
    campaign: Mapped[str] = mapped_column(String(200), default="")
    loaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AlertRow(TelemetryBase):
    __tablename__ = "tm_alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(100), index=True)
    key: Mapped[str] = mapped_column(String(40))  # certificate / pin_locked / disk / lost / outbox
    message: Mapped[str] = mapped_column(String(500))
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)


class UnitRow(TelemetryBase):
    """The dashboard's verdict row for one unit (with its box, or a placeholder `unit:<code>` when no box
    reported yet), kept up to date by the ingest (the boxes in each batch) and by the dashboard (all rows,
    once a minute, for what changes with time alone), so a page is one indexed query, not a rebuild."""

    __tablename__ = "tm_rows"
    __table_args__ = (Index("ix_tm_rows_rank", "rank", "province_name", "name"),)

    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    commune_code: Mapped[str] = mapped_column(String(20), index=True)
    name: Mapped[str] = mapped_column(String(200))
    search: Mapped[str] = mapped_column(String(400))  # folded name + code + device id, for "q"
    province_code: Mapped[str] = mapped_column(String(10), index=True)
    province_name: Mapped[str] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(20))
    device_id: Mapped[str | None] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(16))
    connectivity: Mapped[str] = mapped_column(String(16), index=True)
    verdict: Mapped[str] = mapped_column(String(16), index=True)
    rank: Mapped[int] = mapped_column(Integer)
    problems: Mapped[list[Any]] = mapped_column(JSON, default=list)
    last_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disk_used_pct: Mapped[float | None] = mapped_column(Float)
    cpu_temp_c: Mapped[float | None] = mapped_column(Float)
    outbox_depth: Mapped[int | None] = mapped_column(Integer)
    min_cert_days: Mapped[int | None] = mapped_column(Integer)
    version: Mapped[str | None] = mapped_column(String(64))
    received: Mapped[int] = mapped_column(Integer, default=0)
    digitized: Mapped[int] = mapped_column(Integer, default=0)
    results: Mapped[int] = mapped_column(Integer, default=0)
    digitized_pct: Mapped[float | None] = mapped_column(Float)
    rollout: Mapped[str] = mapped_column(String(20))
    deadline: Mapped[date | None] = mapped_column(Date)
    first_package_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    computed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RosterRow(TelemetryBase):
    """One line of a box's officers' certificate roster (telemetry `Reading.roster`), as of its newest reading
    that carried one: every line of a box is replaced together. No commune column: a line belongs to the unit
    its box is recorded at (`tm_devices.commune_code`, the registered commune), never to one a box claims."""

    __tablename__ = "tm_roster"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(100), index=True)
    username: Mapped[str] = mapped_column(String(64))  # "" for the organisation's certificate
    role: Mapped[str] = mapped_column(String(16))  # officer | organisation
    verdict: Mapped[str] = mapped_column(String(16))  # as the box judged it at `reading_at` (appliance.roster)
    subject: Mapped[str | None] = mapped_column(String(500))
    common_name: Mapped[str] = mapped_column(String(200), default="")  # CN of the subject, for names
    serial: Mapped[str | None] = mapped_column(String(80))
    issuer: Mapped[str | None] = mapped_column(String(500))
    not_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    key: Mapped[str | None] = mapped_column(String(32))
    pss: Mapped[bool | None] = mapped_column(Boolean)
    revocation: Mapped[str | None] = mapped_column(String(16))
    last_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reading_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ExpectedOfficer(TelemetryBase):
    """An officer provincial IT expects at a unit (`province officers FILE.csv`, province.roster): matched
    against the boxes' rosters by account (`username`) or, without one, by the certificate's name."""

    __tablename__ = "tm_expected_officers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    commune_code: Mapped[str] = mapped_column(String(20), index=True)
    full_name: Mapped[str] = mapped_column(String(200))
    username: Mapped[str] = mapped_column(String(64), default="")
    position: Mapped[str] = mapped_column(String(200), default="")
    line: Mapped[int] = mapped_column(Integer, default=0)  # in the file it came from
    loaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def open_telemetry(url: str) -> sessionmaker[Session]:
    engine = make_engine(url)
    catalogue.create_tables(engine, TelemetryBase.metadata)
    return sessionmaker(engine, expire_on_commit=False)


def aware(when: datetime | None) -> datetime | None:
    if when is None or when.tzinfo is not None:
        return when
    return when.replace(tzinfo=UTC)


def human_age(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{int(seconds // 86400)} ngày"
    if seconds >= 3600:
        return f"{int(seconds // 3600)} giờ"
    return f"{max(1, int(seconds // 60))} phút"


class RegisteredDevice(TelemetryBase):
    """The provincial device registry (provisioning.registry) as the province knows it: which commune each
    box was registered for. Loaded with `province devices`; when a box is listed here, the commune code its
    telemetry is recorded under is this one, whatever the box claims."""

    __tablename__ = "tm_registered"

    device_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    commune_code: Mapped[str] = mapped_column(String(20))
    commune_name: Mapped[str] = mapped_column(String(200), default="")
    province_code: Mapped[str] = mapped_column(String(10), default="")
    retired: Mapped[bool] = mapped_column(Boolean, default=False)
    loaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
