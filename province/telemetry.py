"""Telemetry ingest at the province: status and readings from every box into the catalogue database
(tables in `province.telemetry_db`).

Each box's `devices` row holds its latest state and the readiness items computed at ingest (the
`appliance.readiness` rules, the same the box's `appliance doctor` applies), so the dashboard never
re-parses readings; `tm_readings` keeps a down-sampled history for the charts.

Status rule (stale wills): an `online` starts a session (boot_id, seq); an `offline` / `lost` counts only
when it carries the session last seen online (or when no session is known yet).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from appliance.readiness import Thresholds, checks, verdict
from appliance.telemetry.schema import AlertState, Counters, Incident, OpenAlert, Reading, Status, parse_message
from appliance.units import UnitRecord
from province import roster
from province.dashboard import readiness
from province.telemetry_db import (
    AgencyDayCounters,
    AlertRow,
    DayCounters,
    Device,
    History,
    IncidentRow,
    RegisteredDevice,
    RolloutDeadline,
    TelemetryBase,
    Unit,
    UnitRow,
    aware,
    human_age,
    open_telemetry,
)

__all__ = [  # the tables are re-exported: callers keep importing them from here
    "ALERTS_TOPIC",
    "AlertPolicy",
    "AlertRow",
    "DayCounters",
    "Device",
    "History",
    "IncidentRow",
    "Ingest",
    "IngestConfig",
    "RegisteredDevice",
    "TelemetryBase",
    "Unit",
    "UnitRow",
    "aware",
    "load_registry",
    "load_units",
    "open_telemetry",
    "run_ingest",
]

log = logging.getLogger(__name__)


# --- alerts -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AlertPolicy:
    cert_days: int = 30
    disk_pct: float = 85.0
    lost_after_s: float = 24 * 3600.0
    outbox_age_s: float = 48 * 3600.0


def device_alerts(d: Device, policy: AlertPolicy, now: datetime, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Alerts worth acting on for one box right now: key -> plain Vietnamese message. `extra`: those worked
    out from other tables (the roster's, `province.roster.alerts_for`)."""
    out: dict[str, str] = dict(extra or {})
    for tok in d.reading.get("tokens") or []:
        if tok.get("pin_state") == "locked":
            out["pin_locked"] = f"Token {tok.get('serial')} đã bị khóa mã PIN"
        for c in tok.get("certificates") or []:
            days = int(c.get("days_to_expiry", 9999))
            if days < policy.cert_days:
                key = f"certificate:{c.get('serial', '')}"[:40]
                out[key] = (
                    f"Chứng thư số của {c.get('owner')} hết hạn sau {days} ngày"
                    if days >= 0
                    else f"Chứng thư số của {c.get('owner')} đã hết hạn"
                )
    if d.disk_used_pct is not None and d.disk_used_pct > policy.disk_pct:
        out["disk"] = f"Ổ đĩa đã dùng {d.disk_used_pct:.0f}%"
    seen = aware(d.last_seen)
    if seen is not None and (now - seen).total_seconds() > policy.lost_after_s:
        out["lost"] = f"Mất kết nối {human_age((now - seen).total_seconds())}"
    for item in d.items or []:
        if item.get("item") == COMMUNE_ITEM:
            out[COMMUNE_ITEM] = str(item.get("reason", ""))[:500]
    if d.outbox_oldest_s is not None and d.outbox_oldest_s > policy.outbox_age_s:
        out["outbox"] = f"Gói cũ nhất chưa gửi về tỉnh đã chờ {human_age(d.outbox_oldest_s)}"
    return out


Notify = Callable[[dict[str, Any]], None]


def webhook(url: str, timeout_s: float = 5.0) -> Notify:
    """POST each newly opened alert as JSON to `url` (in a background thread; failures are logged)."""

    def send(alert: dict[str, Any]) -> None:
        def post() -> None:
            req = urllib.request.Request(  # noqa: S310 - the URL is the operator's configuration
                url, data=json.dumps(alert, ensure_ascii=False).encode(), headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(req, timeout=timeout_s):  # noqa: S310
                    pass
            except OSError as err:
                log.warning("alert webhook %s failed: %s", url, err)

        threading.Thread(target=post, daemon=True).start()

    return send


ALERTS_TOPIC = "province/alerts/{id}"


def alert_state(d: Device, rows: list[AlertRow], now: datetime) -> dict[str, Any]:
    """The payload of the retained `province/alerts/{device}` topic (schema.AlertState): the box's open
    alerts right now."""
    state = AlertState(
        device_id=d.device_id,
        commune_code=d.commune_code or "",
        at=now,
        alerts=[
            OpenAlert(alert=a.key, message=a.message, opened_at=aware(a.opened_at) or now)
            for a in sorted(rows, key=lambda a: a.key)
        ],
    )
    return state.model_dump(mode="json")


def sync_alerts(
    s: Session,
    d: Device,
    policy: AlertPolicy,
    now: datetime,
    notify: Notify | None = None,
    changed: list[dict[str, Any]] | None = None,
    extra: dict[str, str] | None = None,
) -> list[AlertRow]:
    """Open new alerts, close the ones that cleared; newly opened ones go to `notify`; when the set of open
    alerts changed, the new set (`alert_state`) is appended to `changed`."""
    want = device_alerts(d, policy, now, extra)
    open_rows = {
        a.key: a
        for a in s.scalars(select(AlertRow).where(AlertRow.device_id == d.device_id, AlertRow.closed_at.is_(None)))
    }
    opened: list[AlertRow] = []
    for key, row in open_rows.items():
        if key not in want:
            row.closed_at = now
        else:
            row.message = want[key]
    for key, msg in want.items():
        if key not in open_rows:
            row = AlertRow(device_id=d.device_id, key=key, message=msg, opened_at=now)
            s.add(row)
            opened.append(row)
    if changed is not None and (opened or len(want) != len(open_rows)):
        still = [a for k, a in open_rows.items() if k in want]
        changed.append(alert_state(d, still + opened, now))
    if notify is not None:
        for row in opened:
            notify(
                {
                    "device_id": d.device_id,
                    "commune_code": d.commune_code,
                    "alert": row.key,
                    "message": row.message,
                    "at": now.isoformat(),
                }
            )
    return opened


# --- ingest -------------------------------------------------------------------------------------
COMMUNE_ITEM = "commune_code"  # the readiness item (and alert) of a box that reports another commune


def commune_mismatch(claimed: str, registered: str) -> dict[str, str]:
    return {
        "item": COMMUNE_ITEM,
        "level": "failing",
        "reason": f"Thiết bị báo mã xã {claimed or '(trống)'} nhưng được đăng ký cho xã {registered}; "
        f"số liệu được ghi cho xã {registered}",
        "action": "Kiểm tra commune_code trong cấu hình của thiết bị (appliance.toml) và sổ đăng ký thiết bị; "
        "nếu thiết bị đã chuyển xã, đăng ký lại.",
    }


def flag_commune(d: Device, claimed: str, registered: str | None) -> None:
    """Keep the box's `commune_code` item in line with its last message: present (failing) while the box
    claims a commune other than its registered one, gone once it reports the right one again."""
    items = list(d.items or [])
    others = [i for i in items if i.get("item") != COMMUNE_ITEM]
    if registered is not None and claimed != registered:
        d.items = [*others, commune_mismatch(claimed, registered)]
        d.verdict = "failing"
    elif len(others) != len(items):
        d.items = others
        levels = {str(i.get("level")) for i in others}
        d.verdict = (
            "failing" if "failing" in levels else "warning" if "warning" in levels else "ok" if d.reading else "unknown"
        )


def registrations(s: Session, device_ids: set[str]) -> dict[str, str]:
    """device id -> registered commune code, for the boxes of one batch that the registry lists."""
    if not device_ids:
        return {}
    rows = s.execute(
        select(RegisteredDevice.device_id, RegisteredDevice.commune_code).where(
            RegisteredDevice.device_id.in_(sorted(device_ids))
        )
    )
    return {str(d): str(c) for d, c in rows}


@dataclass
class IngestStats:
    messages: int = 0
    readings: int = 0
    statuses: int = 0
    stale_wills: int = 0
    commune_mismatches: int = 0  # messages whose commune code differed from the box's registration
    invalid: int = 0  # refused by the schema
    failed: int = 0  # valid, but storing it failed (skipped alone, the rest of its batch is stored)
    batches: int = 0
    last_batch_s: float = 0.0
    max_batch_s: float = 0.0
    alert_checks: int = 0
    max_alert_check_s: float = 0.0


@dataclass
class Ingest:
    """Applies messages to the database in batches: one transaction per batch, one savepoint per message."""

    factory: sessionmaker[Session]
    policy: AlertPolicy = AlertPolicy()
    limits: Thresholds = Thresholds()
    history_every_s: float = 600.0  # one chart point per box per 10 minutes
    notify: Notify | None = None
    alert_sink: Notify | None = None  # gets alert_state() after each commit that changed a box's open alerts
    rows_config: readiness.DashboardConfig | None = None  # the dashboard's settings (default: its defaults)
    keep_rows: bool = True  # update the dashboard's verdict rows of the boxes in each batch
    stats: IngestStats = field(default_factory=IngestStats)
    _last_history: dict[str, datetime] = field(default_factory=dict)

    def apply(self, batch: list[tuple[str, bytes]], now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        t0 = time.monotonic()
        changed: list[dict[str, Any]] = []
        with self.factory() as s, s.begin():
            devices: dict[str, Device] = {}
            registered = registrations(s, {t.split("/")[1] for t, _ in batch if t.count("/") == 2})
            for topic, payload in batch:
                parts = topic.split("/")
                if len(parts) != 3 or parts[0] != "devices":
                    continue
                self.stats.messages += 1
                self._one(s, devices, parts[1], parts[2], payload, now, registered.get(parts[1]))
            s.flush()
            extra = roster.alerts_for(s, set(devices), self.policy.cert_days, now)
            for d in devices.values():
                sync_alerts(s, d, self.policy, now, self.notify, changed, extra.get(d.device_id))
            if self.keep_rows and devices:
                cfg = self.rows_config or readiness.DashboardConfig()
                s.flush()
                try:  # in a savepoint: a clash with the dashboard's full refresh never loses the batch
                    with s.begin_nested():
                        rows = readiness.build_rows(s, cfg, now, device_ids=set(devices))
                        readiness.store_rows(s, rows, now)
                except SQLAlchemyError as err:
                    log.warning("dashboard rows of %d box(es) not updated (next refresh will): %s", len(devices), err)
        self._sink(changed)
        self.stats.batches += 1
        self.stats.last_batch_s = time.monotonic() - t0
        self.stats.max_batch_s = max(self.stats.max_batch_s, self.stats.last_batch_s)

    def _one(
        self,
        s: Session,
        devices: dict[str, Device],
        device_id: str,
        kind: str,
        payload: bytes,
        now: datetime,
        registered: str | None = None,
    ) -> None:
        """Validate and store one message in a savepoint of its own: a message that is invalid, or that the
        database refuses, is logged and skipped, and the rest of the batch is stored all the same."""
        try:
            msg: Status | Reading | Counters | Incident
            if kind == "status":
                msg = Status.model_validate_json(payload)
            elif kind == "telemetry":
                msg = parse_message(payload)
            else:
                return
            if msg.device_id != device_id:
                raise ValueError(f"device id {msg.device_id!r} differs from the topic")
        except (ValidationError, ValueError) as err:
            self.stats.invalid += 1
            log.warning("invalid %s from %s: %s", kind, device_id, str(err)[:200])
            return
        known, last = dict(devices), self._last_history.get(device_id)
        try:
            with s.begin_nested():
                d = self._device(s, devices, device_id, now, registered)
                if isinstance(msg, Status):
                    self._status(d, msg, now)
                else:
                    self._telemetry(s, d, msg, now, registered)
                s.flush()  # a value the database refuses fails here, inside this message's savepoint
        except Exception as err:  # noqa: BLE001 - one bad message never costs the other boxes their data
            devices.clear()
            devices.update(known)  # a box first seen in the failed message was expunged with it
            if last is None:
                self._last_history.pop(device_id, None)
            else:
                self._last_history[device_id] = last
            self.stats.failed += 1
            log.warning("%s from %s not stored: %s: %s", kind, device_id, type(err).__name__, str(err)[:200])

    def _sink(self, changed: list[dict[str, Any]]) -> None:
        if self.alert_sink is None:
            return
        for state in changed:
            try:
                self.alert_sink(state)
            except Exception:  # noqa: BLE001 - a notification never undoes the ingest
                log.exception("alert notification for %s failed", state.get("device_id"))

    def _device(
        self, s: Session, devices: dict[str, Device], device_id: str, now: datetime, registered: str | None
    ) -> Device:
        d = devices.get(device_id) or s.get(Device, device_id)
        if d is None:
            d = Device(device_id=device_id, first_seen=now, state="unknown", messages=0, items=[], reading={})
            s.add(d)
        if registered is not None and d.commune_code != registered:
            d.commune_code = registered  # a registered box is shown at its commune from its first message on
        devices[device_id] = d
        return d

    def _status(self, d: Device, st: Status, now: datetime) -> None:
        self.stats.statuses += 1
        device_id = d.device_id
        if st.state == "online" or d.boot_id is None:
            # an online starts a session; with no session known yet (the online was missed, a reading
            # came first), an offline/lost is the best knowledge of the current one
            d.boot_id, d.seq = st.boot_id, st.seq
        elif (d.boot_id, d.seq) != (st.boot_id, st.seq):
            self.stats.stale_wills += 1
            log.info("ignored a stale %s from %s (session %s/%s)", st.state, device_id, st.boot_id, st.seq)
            return
        d.state = st.state
        d.state_at = now
        d.version = st.version or d.version
        if st.denied:
            note = {
                "item": "broker_acl",
                "level": "failing",
                "reason": f"Máy chủ tỉnh từ chối {st.denied} bản tin của thiết bị (kiểm tra mã thiết bị / chứng thư)",
                "action": st.denied_reason,
            }
            d.items = [i for i in d.items or [] if i.get("item") != "broker_acl"] + [note]
            d.verdict = "failing"
        if st.state == "online":
            d.last_seen = now

    def _telemetry(
        self, s: Session, d: Device, msg: Reading | Counters | Incident, now: datetime, registered: str | None
    ) -> None:
        """Store one telemetry message. A box in the registry is recorded at its registered commune: a
        different `commune_code` in the message is logged, counted and flagged on the box, never trusted."""
        commune = msg.commune_code if registered is None else registered
        if commune != msg.commune_code:
            self.stats.commune_mismatches += 1
            log.warning(
                "%s from %s claims commune %r, registered for %r: recorded for %r",
                msg.kind, d.device_id, msg.commune_code, registered, commune,
            )  # fmt: skip
        d.commune_code = commune
        d.messages = (d.messages or 0) + 1
        if not msg.historical:
            d.last_seen = now
            if d.state in ("unknown", "lost", "offline"):
                d.state = "online"  # a live message proves it, even before the retained status arrives
        if isinstance(msg, Reading):
            self.stats.readings += 1
            self._reading(s, d, msg)
        elif isinstance(msg, Counters):
            row = s.get(DayCounters, (msg.device_id, msg.day))
            if row is None:
                row = DayCounters(device_id=msg.device_id, day=msg.day)
                s.add(row)
            row.commune_code = commune
            row.dossiers_received = msg.dossiers_received
            row.components_digitized = msg.components_digitized
            row.results_electronic = msg.results_electronic
            row.reused = msg.reused
            row.backlog_digitized = msg.backlog_digitized
            row.at = msg.at
            if msg.by_deciding_agency is not None:  # a box that does not split keeps its earlier rows
                self._agency_counters(s, msg, commune)
        else:
            if s.get(IncidentRow, msg.incident_id) is None:
                s.add(
                    IncidentRow(
                        incident_id=msg.incident_id,
                        device_id=msg.device_id,
                        commune_code=commune,
                        at=msg.at,
                        reporter=msg.reporter,
                        text=msg.text,
                        snapshot=msg.snapshot.model_dump(mode="json") if msg.snapshot else {},
                    )
                )
        flag_commune(d, msg.commune_code, registered)

    def _agency_counters(self, s: Session, msg: Counters, commune: str) -> None:
        """Replace the box's per-deciding-agency rows of that day with the ones just received."""
        s.execute(
            delete(AgencyDayCounters).where(
                AgencyDayCounters.device_id == msg.device_id, AgencyDayCounters.day == msg.day
            )
        )
        s.add_all(
            AgencyDayCounters(
                device_id=msg.device_id,
                day=msg.day,
                agency=a.agency,
                commune_code=commune,
                dossiers_received=a.dossiers_received,
                components_digitized=a.components_digitized,
                results_electronic=a.results_electronic,
                reused=a.reused,
                at=msg.at,
            )
            for a in msg.by_deciding_agency or []
        )

    def _reading(self, s: Session, d: Device, r: Reading) -> None:
        last = self._last_history.get(d.device_id)
        if r.historical or last is None or (r.at - last).total_seconds() >= self.history_every_s:
            s.add(
                History(
                    device_id=d.device_id,
                    at=r.at,
                    historical=r.historical,
                    disk_used_pct=r.disk.used_pct if r.disk else None,
                    cpu_temp_c=r.cpu_temp_c,
                    outbox_depth=r.outbox.depth if r.outbox else None,
                    outbox_oldest_s=r.outbox.oldest_age_s if r.outbox else None,
                    link_rtt_ms=r.outbox.link_rtt_ms if r.outbox else None,
                    memory_used_pct=r.memory.used_pct if r.memory else None,
                )
            )
            if not r.historical:
                self._last_history[d.device_id] = r.at
        current = aware(d.reading_at)
        if current is not None and r.at <= current:
            return  # an older (historical) reading never replaces the newest state
        items = checks(r, lang="vi", limits=self.limits)
        d.reading_at = r.at
        d.version = r.version
        d.reading = r.model_dump(mode="json", exclude={"roster"})  # the roster has its own table
        if r.roster is not None:
            roster.store_roster(s, d.device_id, r.roster, r.at)
            d.roster_at = r.at
        d.items = [
            {"item": c.item, "level": c.level, "reason": c.reason, "action": c.action} for c in items if c.level != "ok"
        ]
        d.verdict = verdict(items)
        d.disk_used_pct = r.disk.used_pct if r.disk else None
        d.cpu_temp_c = r.cpu_temp_c
        d.outbox_depth = r.outbox.depth if r.outbox else None
        d.outbox_oldest_s = r.outbox.oldest_age_s if r.outbox else None
        days = [c.days_to_expiry for t in r.tokens or [] for c in t.certificates]
        d.min_cert_days = min(days) if days else None
        d.pin_locked = any(t.pin_state == "locked" for t in r.tokens or [])

    def prune(self, retention_days: int = 30, now: datetime | None = None) -> int:
        cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
        with self.factory() as s, s.begin():
            res = s.execute(delete(History).where(History.at < cutoff))
        return int(getattr(res, "rowcount", 0) or 0)

    def refresh_alerts(self, now: datetime | None = None) -> None:
        """Alerts that depend on time alone (a box that went silent): checked periodically, for the boxes
        silent longer than `lost_after_s` only (every other alert changes with a message, and is synced at
        ingest). Checking every box took 1.7 s at 3,300 boxes, in the ingest thread; this takes ~2 ms."""
        now = now or datetime.now(UTC)
        changed: list[dict[str, Any]] = []
        cutoff = now - timedelta(seconds=self.policy.lost_after_s)
        with self.factory() as s, s.begin():
            silent = list(s.scalars(select(Device).where(Device.last_seen < cutoff)))
            extra = roster.alerts_for(s, {d.device_id for d in silent}, self.policy.cert_days, now)
            for d in silent:
                sync_alerts(s, d, self.policy, now, self.notify, changed, extra.get(d.device_id))
        self._sink(changed)


@dataclass(frozen=True, slots=True)
class IngestConfig:
    host: str
    port: int  # the broker's telemetry listener (provisioning.broker)
    name: str = "receiver-1"  # certificate CN; that listener makes the client id "CN=<name>" whatever we ask
    group: str = "province"
    db_url: str = "sqlite:///var/province/catalogue.db"
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    batch_max: int = 500
    batch_wait_s: float = 0.2
    policy: AlertPolicy = AlertPolicy()
    webhook_url: str | None = None
    alerts_mqtt: bool = True  # retained province/alerts/{device} with the box's open alerts
    rows_config: readiness.DashboardConfig | None = None  # for the verdict rows kept at ingest


def run_ingest(cfg: IngestConfig, stop: threading.Event, ingest: Ingest | None = None) -> Ingest:
    """Subscribe to every box's status (retained, plain subscription) and telemetry (shared subscription,
    so several province processes split the load) and apply them in batches until `stop`."""
    from appliance.outbox.mqtt import Link, LinkConfig

    ing = ingest or Ingest(
        open_telemetry(cfg.db_url),
        policy=cfg.policy,
        notify=webhook(cfg.webhook_url) if cfg.webhook_url else None,
        rows_config=cfg.rows_config,
    )
    link = Link(
        LinkConfig(
            host=cfg.host,
            port=cfg.port,
            client_id=f"{cfg.name}-telemetry",
            ca_file=cfg.ca_file,
            cert_file=cfg.cert_file,
            key_file=cfg.key_file,
            session_expiry_s=0,
            inflight=100,
            subscriptions=(f"$share/{cfg.group}/devices/+/telemetry", "devices/+/status"),
        )
    )
    link.start()
    if cfg.alerts_mqtt and ing.alert_sink is None:

        def to_broker(state: dict[str, Any]) -> None:
            # called from this loop's thread (the only one that may publish on `link`)
            payload = json.dumps(state, ensure_ascii=False, separators=(",", ":")).encode()
            if not link.publish(ALERTS_TOPIC.format(id=state["device_id"]), payload, retain=True):
                log.warning("alert state of %s not published: link down", state["device_id"])

        ing.alert_sink = to_broker
    next_refresh = time.monotonic() + 60
    try:
        while not stop.is_set():
            batch: list[tuple[str, bytes]] = []
            ev = link.next_event(0.5)
            deadline = time.monotonic() + cfg.batch_wait_s
            while ev is not None:
                if ev.kind == "message":
                    batch.append((ev.topic, ev.payload))
                elif ev.kind in ("disconnected", "refused"):
                    log.warning("telemetry ingest %s: %s", ev.kind, ev.reason)
                if len(batch) >= cfg.batch_max or time.monotonic() >= deadline:
                    break
                ev = link.next_event(max(0.001, deadline - time.monotonic()))
            if batch:
                try:
                    ing.apply(batch)
                except Exception:  # a database hiccup must not end the service; messages are lost, not wrong
                    log.exception("telemetry batch of %d failed", len(batch))
            if time.monotonic() >= next_refresh:
                t0 = time.monotonic()
                ing.refresh_alerts()
                ing.stats.alert_checks += 1
                ing.stats.max_alert_check_s = max(ing.stats.max_alert_check_s, time.monotonic() - t0)
                next_refresh = time.monotonic() + 60
    finally:
        link.stop()
    return ing


# --- units --------------------------------------------------------------------------------------
def load_units(factory: sessionmaker[Session], rows: Sequence[UnitRecord | dict[str, str]]) -> int:
    """Make the units of a CSV (appliance.units.read_units records, or its raw rows) the province's current
    ones: upserted, and the units of the same provinces that the file no longer lists are removed (their
    placeholder rows go at the next refresh). Two levels: "province" (agencies, centre) and "commune"."""
    from appliance.units import read_units

    records = [r if isinstance(r, UnitRecord) else read_units(_csv_line(r))[0] for r in rows]
    provinces = {u.province_code for u in records}
    with factory() as s, s.begin():
        if provinces:
            s.execute(
                delete(Unit).where(
                    Unit.province_code.in_(provinces), Unit.commune_code.not_in([u.code for u in records])
                )
            )
        for r in records:
            u = s.get(Unit, r.code) or Unit(commune_code=r.code)
            u.name, u.kind, u.level = r.name, r.kind, r.level
            u.province_code, u.province_name = r.province_code, r.province_name
            s.add(u)
    return len(records)


def _csv_line(row: dict[str, str]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(row))
    w.writeheader()
    w.writerow(row)
    return buf.getvalue()


def load_deadlines(
    factory: sessionmaker[Session],
    rows: Sequence[dict[str, str]],
    *,
    replace: bool = True,
    lines: Sequence[int] | None = None,
) -> int:
    """Rollout deadlines from CSV rows `scope,deadline[,campaign]` (deadline YYYY-MM-DD); `replace` drops
    the deadlines not in the file. `lines`: each row's line in the file, for the error (default: the rows
    follow a header on line 1)."""
    parsed: list[RolloutDeadline] = []
    for n, r in zip(lines or range(2, len(rows) + 2), rows, strict=True):
        scope = (r.get("scope") or "").strip()
        try:
            when = date.fromisoformat((r.get("deadline") or "").strip())
        except ValueError as err:
            raise ValueError(f"line {n}: deadline {r.get('deadline')!r} is not YYYY-MM-DD") from err
        if not scope or scope in ("district", "huyện"):
            raise ValueError(f"line {n}: scope {scope!r}: a unit code, a kind or a level (commune, province)")
        parsed.append(RolloutDeadline(scope=scope, deadline=when, campaign=(r.get("campaign") or "").strip()))
    with factory() as s, s.begin():
        if replace:
            s.execute(delete(RolloutDeadline))
        for d in parsed:
            s.merge(d)
    return len(parsed)


def load_registry(factory: sessionmaker[Session], devices: list[dict[str, Any]]) -> int:
    """Replace the province's copy of the device registry with `devices` (the rows of `python -m provisioning
    registry list --json`: device_id, commune_code[, commune_name, province_code, retired]). The boxes in it
    have their telemetry recorded at their registered commune from the next message on (and right away
    on the dashboard's device rows)."""
    now = datetime.now(UTC)
    with factory() as s, s.begin():
        s.execute(delete(RegisteredDevice))
        for r in devices:
            device_id, code = str(r["device_id"]).strip(), str(r["commune_code"]).strip()
            if not device_id or not code:
                raise ValueError(f"a registry row needs device_id and commune_code: {r!r}")
            s.merge(
                RegisteredDevice(
                    device_id=device_id,
                    commune_code=code,
                    commune_name=str(r.get("commune_name") or ""),
                    province_code=str(r.get("province_code") or ""),
                    retired=bool(r.get("retired", False)),
                    loaded_at=now,
                )
            )
            d = s.get(Device, device_id)
            if d is not None and d.commune_code != code:
                log.warning(
                    "box %s was recorded at commune %r, registered for %r: moved", device_id, d.commune_code, code
                )
                d.commune_code = code
    return len(devices)


def today_local() -> date:
    from appliance.telemetry.counters import local_day

    return local_day(datetime.now(UTC))
