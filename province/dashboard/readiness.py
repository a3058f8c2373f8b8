"""Per-commune readiness rows: connectivity against the office schedule, the box's own failing items,
Decision 766 rates and the rollout state. Pure functions over rows loaded in bulk (no per-row queries)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, func, inspect, or_, select
from sqlalchemy.orm import Session

from appliance.domain import VN_TZ
from appliance.indicators import rate
from appliance.textindex import fold
from province.dashboard.units import place_of, places
from province.telemetry_db import AlertRow, DayCounters, Device, IncidentRow, UnitRow, aware, human_age

LOCAL = VN_TZ

VERDICT_LABEL = {
    "ok": "Sẵn sàng",
    "warning": "Cần chú ý",
    "failing": "Chưa sẵn sàng",
    "none": "Chưa lắp đặt",
}
VERDICT_RANK = {"failing": 0, "warning": 1, "none": 2, "ok": 3}
CONNECTIVITY_LABEL = {
    "online": "Trực tuyến",
    "scheduled": "Ngoại tuyến theo lịch",
    "overdue": "Quá hạn liên lạc",
    "never": "Chưa từng kết nối",
}
ROLLOUT_LABEL = {
    "in_service": "Đã vận hành",
    "installed": "Đã lắp, chưa gửi gói",
    "not_installed": "Chưa lắp đặt",
}


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    office_start: time = time(7, 0)
    office_end: time = time(17, 30)
    workdays: tuple[int, ...] = (0, 1, 2, 3, 4)  # Monday = 0
    silent_after_s: float = 300.0  # no message for this long during office hours: not online
    lost_after_s: float = 24 * 3600.0  # overdue this long: failing ("Mất kết nối ...")
    # Rollout deadlines are data provincial IT sets (`province rollout FILE.csv`, table tm_deadlines): scope =
    # a unit code, a kind or a level ("commune", "province"). These override the table (tests, one-off runs).
    # History: Directive 02/CT-TTg (2022) set province 01/06/2022, district 01/12/2022, commune 01/06/2023;
    # the district level no longer exists since 01/07/2025.
    deadlines: dict[str, date] = field(default_factory=dict)
    # Decision 766 targets in %: set to the province's own targets
    target_digitized_pct: float = 100.0
    target_results_pct: float = 100.0
    rates_days: int = 30
    refresh_s: float = 60.0  # all verdict rows are recomputed (time-dependent connectivity) this often
    page_size: int = 100


def office_hours(cfg: DashboardConfig, when: datetime) -> bool:
    local = when.astimezone(LOCAL)
    return local.weekday() in cfg.workdays and cfg.office_start <= local.time() < cfg.office_end


def last_office_end(cfg: DashboardConfig, now: datetime) -> datetime:
    """The end of the most recent office window that has finished (or is running: then its start)."""
    local = now.astimezone(LOCAL)
    for back in range(0, 15):
        day = local.date() - timedelta(days=back)
        if day.weekday() not in cfg.workdays:
            continue
        end = datetime.combine(day, cfg.office_end, LOCAL)
        if end <= local:
            return end.astimezone(UTC)
    return (now - timedelta(days=15)).astimezone(UTC)


def connectivity(cfg: DashboardConfig, state: str, last_seen: datetime | None, now: datetime) -> tuple[str, str | None]:
    """(online / scheduled / overdue / never, problem text or None)."""
    if last_seen is None:
        return "never", "Chưa từng kết nối"
    age = (now - last_seen).total_seconds()
    if state == "online" and age <= cfg.silent_after_s:
        return "online", None
    if not office_hours(cfg, now) and last_seen >= last_office_end(cfg, now) - timedelta(hours=2):
        return "scheduled", None  # seen until about the end of the last working day: switched off for the night
    if age <= cfg.silent_after_s:
        return "online", None
    return "overdue", f"Mất kết nối {human_age(age)}"


@dataclass(slots=True)
class Row:
    commune_code: str
    name: str
    province_code: str
    province_name: str
    level: str
    device_id: str | None
    state: str
    connectivity: str
    verdict: str  # ok / warning / failing / none
    problems: list[tuple[str, str]]  # (level, plain Vietnamese)
    last_seen: datetime | None
    disk_used_pct: float | None
    cpu_temp_c: float | None
    outbox_depth: int | None
    min_cert_days: int | None
    version: str | None
    received: int = 0
    digitized: int = 0
    results: int = 0
    rollout: str = "not_installed"
    deadline: date | None = None
    first_package_at: datetime | None = None

    @property
    def verdict_label(self) -> str:
        return VERDICT_LABEL[self.verdict]

    @property
    def connectivity_label(self) -> str:
        return CONNECTIVITY_LABEL.get(self.connectivity, self.connectivity)

    @property
    def rollout_label(self) -> str:
        return ROLLOUT_LABEL[self.rollout]

    @property
    def digitized_pct(self) -> float | None:
        return rate(self.digitized, self.received)

    @property
    def results_pct(self) -> float | None:
        return rate(self.results, self.received)

    def rollout_late(self, today: date) -> bool:
        return self.rollout != "in_service" and self.deadline is not None and today > self.deadline


DEVICE_COLUMNS = (
    Device.device_id,
    Device.commune_code,
    Device.state,
    Device.last_seen,
    Device.verdict,
    Device.items,
    Device.disk_used_pct,
    Device.cpu_temp_c,
    Device.outbox_depth,
    Device.min_cert_days,
    Device.version,
)


def first_packages(s: Session, device_ids: Collection[str] | None = None) -> dict[str, datetime]:
    """device id -> when the warehouse first stored a signed package from it."""
    from province.catalogue import StoredPackage

    if not inspect(s.get_bind()).has_table(StoredPackage.__tablename__):
        return {}  # a telemetry-only database (`province dashboard` before any package arrived)
    query = select(StoredPackage.device_id, func.min(StoredPackage.received_at)).group_by(StoredPackage.device_id)
    if device_ids is not None:
        query = query.where(StoredPackage.device_id.in_(list(device_ids)))
    rows = s.execute(query).all()
    return {str(d): w for d, w in ((d, aware(w)) for d, w in rows) if w is not None}


def build_rows(
    s: Session,
    cfg: DashboardConfig,
    now: datetime,
    *,
    device_id: str | None = None,
    device_ids: Collection[str] | None = None,
) -> list[Row]:
    """Every unit's row (or only those of `device_id` / `device_ids`), from a handful of bulk queries."""
    if device_id is not None:
        device_ids = {device_id}
    query = select(*DEVICE_COLUMNS)
    if device_ids is not None:
        query = query.where(Device.device_id.in_(list(device_ids)))
    devices = s.execute(query).all()
    table = deadlines(s, cfg)
    rate_query = (
        select(
            DayCounters.commune_code,
            func.sum(DayCounters.dossiers_received),
            func.sum(DayCounters.components_digitized),
            func.sum(DayCounters.results_electronic),
        )
        .where(DayCounters.day >= (now.astimezone(LOCAL).date() - timedelta(days=cfg.rates_days)).isoformat())
        .group_by(DayCounters.commune_code)
    )
    codes = None if device_ids is None else {dev.commune_code for dev in devices}
    if codes is not None:
        rate_query = rate_query.where(DayCounters.commune_code.in_(list(codes)))
    units = places(s, communes=codes)
    rates = {str(code): (int(r or 0), int(d or 0), int(e or 0)) for code, r, d, e in s.execute(rate_query).all()}
    firsts = first_packages(s, device_ids)
    rows: list[Row] = []
    seen_codes: set[str] = set()
    for dev in devices:
        unit = place_of(units, dev.commune_code)
        seen_codes.add(dev.commune_code)
        last = aware(dev.last_seen)
        conn, problem = connectivity(cfg, dev.state, last, now)
        problems: list[tuple[str, str]] = [(str(i["level"]), str(i["reason"])) for i in dev.items or []]
        verdict = dev.verdict if dev.verdict in VERDICT_RANK else "warning"
        if problem is not None:
            lost = last is None or (now - last).total_seconds() > cfg.lost_after_s
            problems.insert(0, ("failing" if lost else "warning", problem))
            verdict = worst(verdict, "failing" if lost else "warning")
        first = firsts.get(dev.device_id)
        r, d, e = rates.get(dev.commune_code, (0, 0, 0))
        rows.append(
            Row(
                **unit.fields(),
                device_id=dev.device_id,
                state=dev.state,
                connectivity=conn,
                verdict=verdict,
                problems=problems,
                last_seen=last,
                disk_used_pct=dev.disk_used_pct,
                cpu_temp_c=dev.cpu_temp_c,
                outbox_depth=dev.outbox_depth,
                min_cert_days=dev.min_cert_days,
                version=dev.version,
                received=r,
                digitized=d,
                results=e,
                rollout="in_service" if first else "installed",
                deadline=deadline_for(table, dev.commune_code, unit.kind, unit.level),
                first_package_at=first,
            )
        )
    for code, unit in units.items():
        if code in seen_codes or device_ids is not None:
            continue
        rows.append(
            Row(
                **unit.fields(),
                device_id=None,
                state="unknown",
                connectivity="never",
                verdict="none",
                problems=[("failing", "Chưa lắp đặt thiết bị")],
                last_seen=None,
                disk_used_pct=None,
                cpu_temp_c=None,
                outbox_depth=None,
                min_cert_days=None,
                version=None,
                deadline=deadline_for(table, code, unit.kind, unit.level),
            )
        )
    return rows


def deadlines(s: Session, cfg: DashboardConfig) -> dict[str, date]:
    """scope -> deadline: the table provincial IT loads, then the configuration's overrides."""
    from province.telemetry_db import RolloutDeadline

    if not inspect(s.get_bind()).has_table(RolloutDeadline.__tablename__):
        return dict(cfg.deadlines)
    table = {str(scope): when for scope, when in s.execute(select(RolloutDeadline.scope, RolloutDeadline.deadline))}
    return table | dict(cfg.deadlines)


def deadline_for(table: dict[str, date], code: str, kind: str, level: str) -> date | None:
    """The most specific deadline: the unit's own, else its kind's (xã, phường ...), else its level's."""
    for scope in (code, kind, level):
        if scope in table:
            return table[scope]
    return None


def worst(a: str, b: str) -> str:
    return a if VERDICT_RANK.get(a, 9) <= VERDICT_RANK.get(b, 9) else b


def open_alerts(s: Session) -> list[AlertRow]:
    return list(s.scalars(select(AlertRow).where(AlertRow.closed_at.is_(None)).order_by(AlertRow.opened_at.desc())))


def open_incidents(s: Session) -> list[IncidentRow]:
    return list(s.scalars(select(IncidentRow).where(IncidentRow.handled_at.is_(None)).order_by(IncidentRow.at.desc())))


# --- the stored verdict rows (table tm_rows) ------------------------------------------------------
def row_key(r: Row) -> str:
    return r.device_id if r.device_id is not None else f"unit:{r.commune_code}"


def store_rows(s: Session, rows: Sequence[Row], now: datetime, *, full: bool = False) -> None:
    """Write the verdict rows: `full` replaces the table, otherwise only these rows (and the placeholder of
    a unit whose first box just reported) are replaced."""
    if full:
        s.execute(delete(UnitRow))
    else:
        keys = [row_key(r) for r in rows] + [f"unit:{r.commune_code}" for r in rows if r.device_id is not None]
        for i in range(0, len(keys), 500):
            s.execute(delete(UnitRow).where(UnitRow.key.in_(keys[i : i + 500])))
    s.add_all(
        UnitRow(
            key=row_key(r),
            commune_code=r.commune_code,
            name=r.name,
            search=fold(f"{r.name} {r.commune_code} {r.device_id or ''}"),
            province_code=r.province_code,
            province_name=r.province_name,
            level=r.level,
            device_id=r.device_id,
            state=r.state,
            connectivity=r.connectivity,
            verdict=r.verdict,
            rank=VERDICT_RANK.get(r.verdict, 9),
            problems=[list(p) for p in r.problems],
            last_seen=r.last_seen,
            disk_used_pct=r.disk_used_pct,
            cpu_temp_c=r.cpu_temp_c,
            outbox_depth=r.outbox_depth,
            min_cert_days=r.min_cert_days,
            version=r.version,
            received=r.received,
            digitized=r.digitized,
            results=r.results,
            digitized_pct=r.digitized_pct,
            rollout=r.rollout,
            deadline=r.deadline,
            first_package_at=r.first_package_at,
            computed_at=now,
        )
        for r in rows
    )


def refresh_rows(s: Session, cfg: DashboardConfig, now: datetime) -> int:
    """Recompute every unit's verdict row (connectivity changes with time alone)."""
    rows = build_rows(s, cfg, now)
    store_rows(s, rows, now, full=True)
    return len(rows)


ROW_COLUMNS = tuple(
    getattr(UnitRow, n)
    for n in (
        "commune_code", "name", "province_code", "province_name", "level", "device_id", "state", "connectivity",
        "verdict", "problems", "last_seen", "disk_used_pct", "cpu_temp_c", "outbox_depth", "min_cert_days",
        "version", "received", "digitized", "results", "rollout", "deadline", "first_package_at",
    )
)  # fmt: skip


def _row(t: Any) -> Row:
    return Row(
        commune_code=t.commune_code,
        name=t.name,
        province_code=t.province_code,
        province_name=t.province_name,
        level=t.level,
        device_id=t.device_id,
        state=t.state,
        connectivity=t.connectivity,
        verdict=t.verdict,
        problems=[(str(a), str(b)) for a, b in t.problems or []],
        last_seen=aware(t.last_seen),
        disk_used_pct=t.disk_used_pct,
        cpu_temp_c=t.cpu_temp_c,
        outbox_depth=t.outbox_depth,
        min_cert_days=t.min_cert_days,
        version=t.version,
        received=t.received,
        digitized=t.digitized,
        results=t.results,
        rollout=t.rollout,
        deadline=t.deadline,
        first_package_at=aware(t.first_package_at),
    )


def _order(sort: str, desc: bool) -> list[Any]:
    cols: dict[str, list[Any]] = {
        "name": [UnitRow.province_name, UnitRow.name],
        "verdict": [UnitRow.rank, UnitRow.province_name, UnitRow.name],
        "last_seen": [func.coalesce(UnitRow.last_seen, datetime(1, 1, 1, tzinfo=UTC))],
        "disk": [func.coalesce(UnitRow.disk_used_pct, -1.0)],
        "cert": [func.coalesce(UnitRow.min_cert_days, 10**6)],
        "digitized": [func.coalesce(UnitRow.digitized_pct, -1.0)],
    }
    chosen = cols.get(sort, cols["verdict"]) + [UnitRow.key]  # the key keeps pages stable
    return [c.desc() for c in chosen] if desc else chosen


def _where(province: str, verdict: str, q: str) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if province:
        where.append(UnitRow.province_code == province)
    if verdict:
        where.append(or_(UnitRow.verdict == verdict, UnitRow.connectivity == verdict))
    if q:
        needle = fold(q).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append(UnitRow.search.like(f"%{needle}%", escape="\\"))
    return where


def query_rows(
    s: Session,
    *,
    province: str = "",
    verdict: str = "",
    q: str = "",
    sort: str = "verdict",
    desc: bool = False,
    limit: int | None = None,
    offset: int = 0,
) -> tuple[list[Row], int]:
    """One page of stored rows (filtered and sorted in SQL) and how many match in all."""
    where = _where(province, verdict, q)
    total = int(s.scalar(select(func.count()).select_from(UnitRow).where(*where)) or 0)
    query = select(*ROW_COLUMNS).where(*where).order_by(*_order(sort, desc)).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return [_row(t) for t in s.execute(query)], total


@dataclass(frozen=True, slots=True)
class ProvinceSummary:
    code: str
    name: str
    counts: dict[str, int]  # verdict -> units

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def summaries(s: Session) -> tuple[list[ProvinceSummary], dict[str, int], dict[str, int]]:
    """Per province verdict counts, national verdict counts, national connectivity counts."""
    per: dict[tuple[str, str], dict[str, int]] = {}
    for code, name, v, n in s.execute(
        select(UnitRow.province_code, UnitRow.province_name, UnitRow.verdict, func.count()).group_by(
            UnitRow.province_code, UnitRow.province_name, UnitRow.verdict
        )
    ):
        per.setdefault((str(code), str(name)), {})[str(v)] = int(n)
    totals: dict[str, int] = {}
    for counts in per.values():
        for v, n in counts.items():
            totals[v] = totals.get(v, 0) + n
    conn = {
        str(c): int(n) for c, n in s.execute(select(UnitRow.connectivity, func.count()).group_by(UnitRow.connectivity))
    }
    provinces = sorted((ProvinceSummary(c, n, k) for (c, n), k in per.items()), key=lambda p: p.name)
    return provinces, totals, conn


def rollout_counts(s: Session) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for level, state, n in s.execute(
        select(UnitRow.level, UnitRow.rollout, func.count()).group_by(UnitRow.level, UnitRow.rollout)
    ):
        out.setdefault(str(level), {})[str(state)] = int(n)
    return out


def count_open(s: Session) -> tuple[int, int]:
    """(open alerts, open incidents)."""
    alerts = s.scalar(select(func.count()).select_from(AlertRow).where(AlertRow.closed_at.is_(None))) or 0
    incidents = s.scalar(select(func.count()).select_from(IncidentRow).where(IncidentRow.handled_at.is_(None))) or 0
    return int(alerts), int(incidents)
