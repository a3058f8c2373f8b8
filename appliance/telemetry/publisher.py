"""The telemetry loop on the box: retained status with a last will, periodic readings, daily counters,
and whatever waited in the offline buffer (sent oldest first, marked historical).

Status protocol (docs/telemetry.md): the will is `lost` with this process's (boot_id, seq); after every
(re)connect the box publishes `online` with the same pair; a clean stop publishes `offline`. The province
ignores a `lost` / `offline` whose pair is not the session it last saw `online`, so a stale will never
overrides the current state.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from pydantic import BaseModel

from appliance.settings import Settings
from appliance.telemetry import counters as counters_mod
from appliance.telemetry import probes
from appliance.telemetry.buffer import Buffer
from appliance.telemetry.collector import Collector
from appliance.telemetry.schema import Counters, Incident, Reading, Status

log = logging.getLogger(__name__)
RESEND_DAYS = 31

STATUS_TOPIC = "devices/{id}/status"
TELEMETRY_TOPIC = "devices/{id}/telemetry"


class Link(Protocol):
    connected: threading.Event
    refused: str | None  # the broker's PUBACK reason when it refused the last publish (ACL denial)

    def start(self) -> None: ...

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, timeout_s: float = 10.0) -> float | None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class PublisherOptions:
    interval_s: float = 60.0  # one reading a minute
    counters_every_s: float = 3600.0  # today's running counters; yesterday's final ones after midnight
    drain_batch: int = 200


def status_payload(
    state: str,
    settings: Settings,
    boot_id: str,
    seq: int,
    at: datetime | None,
    denied: int = 0,
    denied_reason: str = "",
) -> bytes:
    s = Status(
        denied=denied,
        denied_reason=denied_reason,
        state=state,  # type: ignore[arg-type]
        device_id=settings.device_id,
        boot_id=boot_id,
        seq=seq,
        at=at,
        version=probes.software_version(),
    )
    return s.model_dump_json().encode()


def buffer_for(settings: Settings) -> Buffer:
    return Buffer(settings.data_dir / "telemetry-buffer.db")


def make_link(settings: Settings, will_payload: bytes) -> Link:
    from appliance.telemetry.mqtt import TelemetryLink, TelemetryLinkConfig

    o = settings.outbox
    return TelemetryLink(
        TelemetryLinkConfig(
            host=o.host,
            port=o.telemetry_port or o.port,  # a listener of its own: the broker binds each id to the certificate
            client_id=f"{settings.device_id}-telemetry",
            will_topic=STATUS_TOPIC.format(id=settings.device_id),
            will_payload=will_payload,
            ca_file=o.ca_file,
            cert_file=o.cert_file,
            key_file=o.key_file,
            keepalive_s=o.keepalive_s,
        )
    )


@dataclass
class Publisher:
    settings: Settings
    collector: Collector
    buffer: Buffer
    options: PublisherOptions = PublisherOptions()
    link: Link | None = None
    boot_id: str = field(default_factory=probes.boot_id)
    seq: int = field(default_factory=lambda: time.time_ns() // 1_000_000)  # grows across restarts in a boot
    sent: int = 0
    buffered: int = 0
    denied: int = 0  # telemetry publishes the broker refused (PUBACK >= 0x80) since the last status
    denied_reason: str = ""
    _online_sent: threading.Event = field(default_factory=threading.Event)
    _counters_day: date | None = None
    _counters_at: float = 0.0
    on_turn: Callable[[], None] | None = None  # called after every reading (watchdog heartbeat)

    def __post_init__(self) -> None:
        if self.link is None:
            self.link = make_link(self.settings, self._status("lost", None))

    @property
    def status_topic(self) -> str:
        return STATUS_TOPIC.format(id=self.settings.device_id)

    @property
    def telemetry_topic(self) -> str:
        return TELEMETRY_TOPIC.format(id=self.settings.device_id)

    def _status(self, state: str, at: datetime | None) -> bytes:
        return status_payload(state, self.settings, self.boot_id, self.seq, at, self.denied, self.denied_reason)

    def run(self, stop: threading.Event, *, rounds: int | None = None, wait_connected_s: float = 0.0) -> None:
        """Until `stop` (or `rounds` readings): collect, send or buffer, drain; `offline` on a clean stop."""
        assert self.link is not None
        self.link.start()
        if wait_connected_s > 0:
            self.link.connected.wait(wait_connected_s)
        done = 0
        try:
            while not stop.is_set():
                t0 = time.monotonic()
                self.step()
                if self.on_turn is not None:
                    self.on_turn()
                done += 1
                if rounds is not None and done >= rounds:
                    break
                stop.wait(max(0.0, self.options.interval_s - (time.monotonic() - t0)))
        finally:
            if self.link.connected.is_set():
                self.link.publish(self.status_topic, self._status("offline", datetime.now(UTC)), retain=True)
            self.link.stop()

    def step(self, now: datetime | None = None) -> None:
        assert self.link is not None
        now = now or datetime.now(UTC)
        reading = self.collector.collect(now)
        if not self.link.connected.is_set():
            self._online_sent.clear()
        elif not self._online_sent.is_set():
            self.announce()  # (again) after every reconnect, before any reading of the session
        self.send(reading)
        self._maybe_counters(now)
        self.drain()

    def announce(self) -> None:
        assert self.link is not None
        if self.link.publish(self.status_topic, self._status("online", datetime.now(UTC)), retain=True) is not None:
            self._online_sent.set()
            self.denied, self.denied_reason = 0, ""  # reported

    def send(self, msg: Reading | Counters | Incident) -> bool:
        """Publish now, or keep it in the buffer for later (marked historical then)."""
        assert self.link is not None
        payload = msg.model_dump_json().encode()
        rtt = self.link.publish(self.telemetry_topic, payload) if self.link.connected.is_set() else None
        if rtt is None:
            self._note_refusal()
            self.buffer.put(msg.kind, payload, offline=True)
            self.buffered += 1
            self._online_sent.clear()  # the next step announces again, with the refusal flag
            return False
        self.sent += 1
        self.collector.link_rtt_ms = round(rtt, 1)
        return True

    def drain(self) -> int:
        """Send what waited in the buffer, oldest first; stops at the first failure."""
        assert self.link is not None
        n = 0
        while self.link.connected.is_set():
            batch = self.buffer.oldest(self.options.drain_batch)
            if not batch:
                break
            done: list[int] = []
            for item in batch:
                payload = _historical(item.payload) if item.offline else item.payload
                if self.link.publish(self.telemetry_topic, payload) is None:
                    self._note_refusal()
                    self.buffer.remove(done)
                    return n + len(done)
                done.append(item.id)
            self.buffer.remove(done)
            n += len(done)
        return n

    def _note_refusal(self) -> None:
        """An ACL denial (wrong device id / certificate, or a broker ACL error): the message stays buffered,
        the next `online` status carries the count, and the log says what to check."""
        assert self.link is not None
        reason = getattr(self.link, "refused", None)
        if reason is None:
            return
        self.denied += 1
        self.denied_reason = str(reason)[:200]
        log.error(
            "the broker refused telemetry on %s (%s): check the device id %r against the certificate's CN"
            " and the broker's ACL",
            self.telemetry_topic,
            reason,
            self.settings.device_id,
        )

    def _maybe_counters(self, now: datetime) -> None:
        today = counters_mod.local_day(now)
        due = time.monotonic() - self._counters_at >= self.options.counters_every_s or self._counters_day != today
        if not due:
            return
        days = [today]
        if self._counters_day is not None and self._counters_day != today:
            # a result signed today changes the day its dossier was received (appliance.indicators): once a
            # day, the recent days' figures are sent again, oldest first
            days = [today - timedelta(days=n) for n in range(RESEND_DAYS, 0, -1)] + days
        for day in days:
            try:
                self.send(counters_mod.counters(self.settings, day, now))
            except Exception as err:  # noqa: BLE001 - counters never stop the health loop
                log.warning("cannot count day %s: %s", day, err)
        self._counters_day = today
        self._counters_at = time.monotonic()


def _historical(payload: bytes) -> bytes:
    data = json.loads(payload)
    data["historical"] = True
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def run_service(pub: Publisher, stop: threading.Event) -> None:
    """`appliance telemetry run` under systemd: READY=1, then feed the watchdog while the loop keeps turning
    and the buffer database takes its write lock (a no-op watchdog outside systemd)."""
    from appliance import health_notify as hn

    beat = hn.Heartbeat("telemetry loop", max_age=max(120.0, 3 * pub.options.interval_s))
    pub.on_turn = beat.beat
    checks: list[Callable[[], bool]] = [hn.database_writable(pub.buffer.path), beat.fresh]
    watchdog = hn.start_watchdog(checks, status="telemetry running")
    try:
        pub.run(stop)
    finally:
        hn.stopping()
        if watchdog is not None:
            watchdog.stop()


def report_incident(settings: Settings, *, reporter: str, text: str, snapshot: Reading | None = None) -> Incident:
    """'Báo sự cố' from the web UI or the CLI: queued in the telemetry buffer, the publisher sends it."""
    import uuid

    incident = Incident(
        device_id=settings.device_id,
        commune_code=settings.commune_code,
        incident_id=str(uuid.uuid4()),
        at=datetime.now(UTC),
        reporter=reporter,
        text=text.strip()[:2000],
        snapshot=snapshot,
    )
    buf = buffer_for(settings)
    try:
        buf.put("incident", incident.model_dump_json().encode(), offline=False)
    finally:
        buf.close()
    return incident


def dump(model: BaseModel) -> str:
    return model.model_dump_json()
