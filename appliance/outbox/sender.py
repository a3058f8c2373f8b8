"""The box's sender: takes packages from the outbox and moves them to the province (docs/protocol.md).

One package is transferred at a time (a higher-priority one pre-empts it between segments); any number
wait for their receipts. Every state change is committed before the action it describes; what the
receiver holds is asked again (init -> offset) after every reconnect or restart, so a transfer resumes
from the receiver's last stored byte and a resent segment is harmless.

Receivers announce themselves on their retained state topic. When one goes offline and every receiver is
offline, the transfer waits without counting a failed attempt; when one announces "online" (a live
publish: it has just (re)connected, after its own restart or the broker's), the sender asks again at once
(init) instead of waiting out `response_timeout_s` for answers that a dead receiver will never give.

The bytes published (segments = payload, everything = wire, segments sent again = resent) are logged
and kept in `outbox-traffic.json` for the health publisher (appliance.outbox.traffic), with the last
completed transfer's bytes and duration (the link's recent throughput).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from appliance import db
from appliance.errors import OutboxError
from appliance.outbox import protocol, store, traffic
from appliance.outbox.mqtt import Event, Link, LinkConfig
from appliance.outbox.protocol import Receipt, Topics
from appliance.outbox.shaping import TokenBucket, backoff, in_window, parse_windows
from appliance.outbox.store import PackageState
from appliance.settings import Settings

log = logging.getLogger(__name__)

MAX_CORRUPT_RESENDS = 3
SETTLE_S = 0.5  # after connecting, before starting a package
TRAFFIC_EVERY_S = 15.0  # how often the byte counters are written for the health publisher
Tamper = Callable[[int, bytes], bytes]  # fault injection for tests: (offset, bytes) -> bytes on the wire


@dataclass
class Transfer:
    item_id: int
    package_id: str
    path: Path
    size: int
    sha256: str
    priority: int
    dossier_code: str | None
    file: BinaryIO
    phase: str = "init"  # init | segments | yield | fin | wait
    acked: int = 0  # leading bytes the receiver holds
    next_offset: int = 0
    inflight: dict[int, int] = field(default_factory=dict)  # offset -> length, awaiting the receiver
    done: dict[int, int] = field(default_factory=dict)  # answered segments beyond `acked`
    corrupt: dict[int, int] = field(default_factory=dict)
    last_progress: float = 0.0
    committed_at: float = 0.0
    started: float = field(default_factory=time.monotonic)  # this run of the transfer (a resume starts anew)
    carried: int = 0  # segment bytes published in this run of the transfer, resent ones included


@dataclass
class Stats:
    payload_bytes: int = 0  # segment bytes published
    wire_bytes: int = 0  # topic + payload of every publish (approximate MQTT overhead excluded)
    segments: int = 0
    resent_bytes: int = 0  # segment bytes published a second time or more
    inits: int = 0
    denials: int = 0
    held: int = 0  # times a due package was held back by a pause (window, receiver offline)


class Sender:
    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[Session],
        *,
        tamper: Tamper | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        o = settings.outbox
        self.o = o
        self.factory = factory
        self.topics = Topics(settings.device_id, o.topic_mode)
        self.link = Link(
            LinkConfig(
                host=o.host,
                port=o.port,
                client_id=settings.device_id,
                ca_file=o.ca_file,
                cert_file=o.cert_file,
                key_file=o.key_file,
                keepalive_s=o.keepalive_s,
                inflight=o.inflight + 4,
                subscriptions=(self.topics.response, self.topics.receipts, protocol.RECEIVER_STATE_FILTER),
            )
        )
        self.bucket = TokenBucket(o.rate_kbit, o.segment_size, time.monotonic())
        self.windows = parse_windows(o.windows)
        self.receivers: dict[str, str] = {}
        self.transfer: Transfer | None = None
        self.tamper = tamper
        self.rng = rng or random.Random()
        self.clock = clock or (lambda: dt.datetime.now().astimezone())  # local time, for the windows
        self.stats = Stats()
        self.sent_offsets: dict[str, set[int]] = {}
        self.last_error: str | None = None
        self.on_turn: Callable[[], None] | None = None  # called on every loop turn (watchdog heartbeat)
        self._last_sweep = 0.0
        self._last_preempt_check = 0.0
        self._connected_at = 0.0
        self.traffic_file = traffic.path_for(settings.data_dir)
        self._traffic_base: traffic.Traffic | None = None
        self._traffic_saved: tuple[int, int, int, tuple[int, float, dt.datetime] | None] = (0, 0, 0, None)
        self._traffic_at = 0.0
        self._last_transfer: tuple[int, float, dt.datetime] | None = None  # bytes, seconds, when it completed

    # --- main loop ---
    def run(self, stop: threading.Event | None = None, *, until_empty: bool = False) -> None:
        stop = stop or threading.Event()
        self._traffic_base = traffic.start(self.traffic_file)
        self.link.start()
        try:
            while not stop.is_set():
                if self.on_turn is not None:
                    self.on_turn()
                timeout = self._step()
                ev = self.link.next_event(max(0.001, min(timeout, 1.0)))
                while ev is not None:
                    self._handle(ev)
                    ev = self.link.next_event(0)
                if until_empty and self.transfer is None:
                    with db.transaction(self.factory) as s:
                        if store.depth(s)[0] == 0:
                            return
        finally:
            if self.transfer is not None:
                self.transfer.file.close()
            self.link.stop()
            self._save_traffic(force=True)
            st = self.stats
            log.info(
                "outbox sender stopping: payload %d bytes, wire %d bytes, resent %d bytes (%d segments, %d inits)",
                st.payload_bytes, st.wire_bytes, st.resent_bytes, st.segments, st.inits,
            )  # fmt: skip

    def _save_traffic(self, *, force: bool = False) -> None:
        """Write the running totals (base + this run) when they changed, at most every TRAFFIC_EVERY_S."""
        st = self.stats
        now_counts = (st.payload_bytes, st.wire_bytes, st.resent_bytes, self._last_transfer)
        if self._traffic_base is None or now_counts == self._traffic_saved:
            return
        if not force and time.monotonic() - self._traffic_at < TRAFFIC_EVERY_S:
            return
        self._traffic_at = time.monotonic()
        totals = self._traffic_base.plus(st.payload_bytes, st.wire_bytes, st.resent_bytes)
        if self._last_transfer is not None:
            totals = totals.completed(*self._last_transfer)
        try:
            traffic.write(self.traffic_file, totals)
            self._traffic_saved = now_counts
        except OSError as err:
            log.warning("cannot write %s: %s", self.traffic_file, err)

    def paused(self) -> str | None:
        """Why packages may not go now (None = they may)."""
        if self.receivers and all(v != "online" for v in self.receivers.values()):
            return "receiver offline"
        if not in_window(self.windows, self.clock()):
            return "outside the sending window"
        return None

    def _step(self) -> float:
        self._save_traffic()
        if not self.link.connected.is_set():
            return 1.0
        now = time.monotonic()
        if now - self._last_sweep > 5.0:
            self._last_sweep = now
            self._sweep()
        t = self.transfer
        if t is None:
            return self._begin_next()
        pause = self.paused() if t.priority >= store.PRIORITY_PACKAGE else None
        if pause == "receiver offline" and t.phase != "yield":
            if t.phase != "wait":  # nobody will answer: wait for a receiver's "online", no attempt counted
                log.info("package %s waits: every receiver is offline", t.package_id[:12])
                t.phase = "wait"
                t.inflight.clear()
            return 1.0
        if t.phase == "wait":
            return 1.0
        if t.inflight and now - t.last_progress > self.o.response_timeout_s:
            self._fail(t, f"no answer from the receiver within {self.o.response_timeout_s:g} s", "outbox_failed")
            return 0.0
        if t.phase in ("init", "fin") and now - t.last_progress > self.o.response_timeout_s:
            self._fail(t, f"no answer to {t.phase} within {self.o.response_timeout_s:g} s", "outbox_failed")
            return 0.0
        if t.phase == "segments" and pause is not None and not t.inflight:
            log.info("pausing %s: %s", t.package_id[:12], pause)
            self._drop(t)
            return 1.0
        if t.phase == "segments" and now - self._last_preempt_check > 2.0 and t.priority > 0:
            self._last_preempt_check = now
            with db.transaction(self.factory) as s:
                better = store.next_due(s, now=db.utcnow(), max_priority=t.priority - 1)
            if better is not None:
                log.info("package %s yields to higher-priority %s", t.package_id[:12], better.package_id[:12])
                t.phase = "yield"
        if t.phase == "yield" and not t.inflight:
            self._drop(t)
            return 0.0
        if t.phase == "segments" and pause is None:
            while len(t.inflight) < self.o.inflight and t.next_offset < t.size:
                wait = self.bucket.wait(time.monotonic())
                if wait > 0:
                    return wait
                self._send_segment(t, t.next_offset)
                t.next_offset += t.inflight[t.next_offset]
            if t.acked >= t.size and not t.inflight:
                t.phase = "fin"
                t.last_progress = time.monotonic()
                self._publish(self.topics.fin(t.package_id, t.size, t.sha256), b"")
        return 0.5

    def _sweep(self) -> None:
        now = db.utcnow()
        with db.transaction(self.factory) as s:
            for item in store.awaiting_receipt(s, older_than=now - dt.timedelta(seconds=self.o.receipt_timeout_s)):
                log.info("no receipt for %s yet: asking the receiver again", item.package_id[:12])
                item.state = PackageState.SENDING
                item.next_try_at = None
            removed = store.purge_archive(s, now=now, retention_days=self.o.retention_days)
        for path in removed:
            log.info("removed %s from the local archive (retention %d days)", path, self.o.retention_days)

    def _begin_next(self) -> float:
        if time.monotonic() - self._connected_at < SETTLE_S:
            return SETTLE_S  # let the retained receiver states arrive before deciding
        pause = self.paused()
        with db.transaction(self.factory) as s:
            item = store.next_due(
                s, now=db.utcnow(), max_priority=store.PRIORITY_RECEIPT if pause is not None else None
            )
            if item is None:
                if pause is not None and store.next_due(s, now=db.utcnow()) is not None:
                    self.stats.held += 1
                return 1.0
            try:
                fh = Path(item.path).open("rb")  # noqa: SIM115 - held for the whole transfer
            except OSError as err:
                item.state = PackageState.REJECTED
                item.reason = f"package file unreadable on the box: {err.strerror}"
                log.error("outbox item %s: %s", item.id, item.reason)
                return 0.0
            item.state = PackageState.SENDING  # committed before the init goes out
            t = Transfer(
                item_id=item.id,
                package_id=item.package_id,
                path=Path(item.path),
                size=item.size,
                sha256=item.sha256,
                priority=item.priority,
                dossier_code=item.dossier_code,
                file=fh,
                acked=item.bytes_acked,
            )
        self.transfer = t
        self._send_init(t)
        return 0.0

    def _send_init(self, t: Transfer) -> None:
        t.phase = "init"
        t.inflight.clear()
        t.done.clear()
        t.last_progress = time.monotonic()
        self.stats.inits += 1
        payload = protocol.init_payload(
            name=f"{t.package_id}.asice",
            size=t.size,
            checksum=t.sha256,
            user_data={"package_id": t.package_id, "dossier_code": t.dossier_code, "device_id": self.topics.device_id},
        )
        self._publish(self.topics.init(t.package_id), payload)

    def _send_segment(self, t: Transfer, offset: int) -> None:
        t.file.seek(offset)
        data = t.file.read(min(self.o.segment_size, t.size - offset))
        checksum = protocol.sha256_hex(data)
        wire = self.tamper(offset, data) if self.tamper is not None else data
        sent = self.sent_offsets.setdefault(t.package_id, set())
        if offset in sent:
            self.stats.resent_bytes += len(data)
        sent.add(offset)
        t.inflight[offset] = len(data)
        t.last_progress = time.monotonic() if len(t.inflight) == 1 else t.last_progress
        self.stats.payload_bytes += len(data)
        self.stats.segments += 1
        t.carried += len(data)
        self._publish(self.topics.segment(t.package_id, offset, checksum), wire)

    def _publish(self, topic: str, payload: bytes) -> None:
        self.stats.wire_bytes += len(topic) + len(payload)
        self.bucket.spend(len(topic) + len(payload), time.monotonic())
        self.link.publish(topic, payload)

    # --- events ---
    def _handle(self, ev: Event) -> None:
        t = self.transfer
        if ev.kind == "connected":
            self._connected_at = time.monotonic()
            log.info("connected to %s:%s", self.o.host, self.o.port)
            if t is not None:
                self._send_init(t)  # ask where to resume
        elif ev.kind == "disconnected":
            log.warning("disconnected from the broker: %s", ev.reason)
            if t is not None:
                t.phase = "wait"
                t.inflight.clear()
        elif ev.kind == "refused":
            self.last_error = f"broker refused the connection: {ev.reason}"
            log.error("%s", self.last_error)
        elif ev.kind == "puback":
            if ev.reason_code >= 0x80:
                self.stats.denials += 1
                msg = f"broker rejected a publish on {ev.topic}: {ev.reason} (0x{ev.reason_code:02x})"
                self.last_error = msg
                log.error("%s", msg)
                if t is not None and f"/{t.package_id}/" in ev.topic:
                    self._fail(t, msg, "broker_denied")
        elif ev.kind == "message":
            self._on_message(ev.topic, ev.payload, retained=ev.retain)

    def _receiver_back(self, name: str) -> None:
        """A receiver has just connected (after its restart, or the broker's): what was in flight to a
        receiver that died is lost, and a transfer waiting on it would sit out the response timeout. Ask
        again now; a package in back-off after such a wait is due again."""
        t = self.transfer
        if t is not None:
            log.info("receiver %s is online: asking where %s resumes", name, t.package_id[:12])
            self._send_init(t)
            return
        with db.transaction(self.factory) as s:
            due = store.due_again(s, now=db.utcnow())
        if due:
            log.info("receiver %s is online: %d package(s) in back-off are due again", name, due)

    def _on_message(self, topic: str, payload: bytes, *, retained: bool = False) -> None:
        if topic == self.topics.receipts:
            try:
                receipt = protocol.parse_receipt(json.loads(payload))
            except ValueError:
                receipt = None
            if receipt is not None:
                self._apply_receipt(receipt)
            return
        if topic.startswith("province/receivers/"):
            name = topic.split("/")[2]
            try:
                self.receivers[name] = str(json.loads(payload).get("state"))
            except (ValueError, AttributeError):
                self.receivers.pop(name, None)
                return
            if self.receivers[name] == "online" and not retained:
                self._receiver_back(name)
            return
        if topic != self.topics.response:
            return
        resp = protocol.parse_response(payload)
        t = self.transfer
        if resp is None:
            return
        if resp.receipt is not None:
            receipt = protocol.parse_receipt(resp.receipt)
            if receipt is not None:
                self._apply_receipt(receipt)
                return
        prefix = f"{self.topics.base}/"
        if t is None or not resp.topic.startswith(f"{prefix}{t.package_id}/"):
            return  # an answer to an earlier attempt
        rest = resp.topic[len(prefix) + len(t.package_id) + 1 :].split("/")
        t.last_progress = time.monotonic()
        if rest == ["init"]:
            if t.phase != "init":
                return
            if not resp.ok:
                self._fail(t, f"receiver refused init: {resp.reason_description}", "outbox_failed")
                return
            t.acked = resp.offset if resp.offset is not None else t.acked
            t.next_offset = t.acked
            t.phase = "segments"
            self._commit_acked(t)
        elif rest[0] == "fin":
            if t.phase != "fin":
                return
            if resp.ok:
                with db.transaction(self.factory) as s:
                    item = store.get_item(s, item_id=t.item_id)
                    if item.state == PackageState.SENDING:
                        item.state = PackageState.TRANSFERRED
                        item.bytes_acked = t.size
                        item.next_try_at = None
                t.file.close()
                self.transfer = None
                self._completed(t)
                st = self.stats
                log.info(
                    "package %s transferred (%d bytes); waiting for the receipt. This run: payload %d bytes, "
                    "wire %d bytes, resent %d bytes",
                    t.package_id[:12], t.size, st.payload_bytes, st.wire_bytes, st.resent_bytes,
                )  # fmt: skip
                self._save_traffic(force=True)
            else:
                t.acked = 0
                self._fail(t, f"receiver could not assemble the package: {resp.reason_description}", "outbox_failed")
        else:
            try:
                offset = int(rest[0])
            except ValueError:
                return
            length = t.inflight.pop(offset, None)
            if length is None:
                return
            if resp.ok:
                t.done[offset] = length
                while t.acked in t.done:
                    t.acked += t.done.pop(t.acked)
                if time.monotonic() - t.committed_at > 1.0 or t.acked >= t.size:
                    self._commit_acked(t)  # a hint only: after a restart the receiver says where to resume
            elif resp.reason_code == protocol.PAYLOAD_INVALID:
                t.corrupt[offset] = t.corrupt.get(offset, 0) + 1
                log.warning("segment %s@%d arrived corrupted; sending it again", t.package_id[:12], offset)
                if t.corrupt[offset] > MAX_CORRUPT_RESENDS:
                    self._fail(t, f"segment at {offset} keeps arriving corrupted", "outbox_failed")
                else:
                    self._send_segment(t, offset)
            else:
                reason = (
                    "receiver disk full"
                    if resp.reason_code == protocol.QUOTA_EXCEEDED
                    else f"receiver refused a segment: {resp.reason_description}"
                )
                self._fail(t, reason, "outbox_failed")

    def _commit_acked(self, t: Transfer) -> None:
        t.committed_at = time.monotonic()
        with db.transaction(self.factory) as s:
            store.get_item(s, item_id=t.item_id).bytes_acked = t.acked

    def _apply_receipt(self, r: Receipt) -> None:
        # the documents' side of the receipt (delivered / rejected, with the audit trail); imported here, at
        # the first receipt, so the workflow's tables stay out of the sender while it streams segments
        from appliance import delivery

        with db.transaction(self.factory) as s:
            try:
                item = store.get_item(s, package_id=r.package_id)
            except Exception:  # noqa: BLE001 - a receipt for a package this box no longer knows
                return
            if item.state in (PackageState.RECEIPTED, PackageState.REJECTED):
                pass
            elif r.sha256 and r.sha256 != item.sha256:
                # a late copy of the verdict on an earlier version of this package (before `outbox retry`)
                log.info("ignoring a receipt for an earlier version of %s", r.package_id[:12])
            elif r.status == "accepted":
                item.state = PackageState.RECEIPTED
                item.warehouse_id = r.warehouse_id
                item.receipted_at = db.utcnow()
                item.reason = None
                item.bytes_acked = item.size
                item.next_try_at = None
                delivery.receipt(s, package_id=r.package_id, accepted=True, warehouse_id=r.warehouse_id)
                log.info("package %s receipted by the warehouse as %s", r.package_id[:12], r.warehouse_id)
            else:
                item.state = PackageState.REJECTED
                item.reason = (r.reason or "rejected")[:500]
                item.next_try_at = None
                delivery.receipt(s, package_id=r.package_id, accepted=False, reason=item.reason)
                log.warning("package %s rejected by the warehouse: %s", r.package_id[:12], item.reason)
        t = self.transfer
        if t is not None and t.package_id == r.package_id:
            t.file.close()
            self.transfer = None
            self._completed(t)
            self._save_traffic(force=True)

    def _completed(self, t: Transfer) -> None:
        """The receiver holds the whole package: what this run of the transfer carried, and how fast."""
        if t.carried:  # a resume that found every byte at the receiver says nothing about the link
            self._last_transfer = (t.carried, time.monotonic() - t.started, dt.datetime.now(dt.UTC))

    def _drop(self, t: Transfer) -> None:
        """Stop working on `t` for now; it stays `sending` and resumes from what the receiver holds."""
        self._commit_acked(t)
        t.file.close()
        self.transfer = None

    def _fail(self, t: Transfer, reason: str, code: str) -> None:
        with db.transaction(self.factory) as s:
            item = store.get_item(s, item_id=t.item_id)
            item.attempts += 1
            delay = backoff(item.attempts, base=self.o.backoff_base_s, cap=self.o.backoff_max_s, rng=self.rng)
            item.next_try_at = db.utcnow() + dt.timedelta(seconds=delay)
            item.reason = f"{code}: {reason}"[:500]
            item.bytes_acked = t.acked
        log.warning("package %s: %s (attempt %d, next try in %.0f s)", t.package_id[:12], reason, item.attempts, delay)
        self.last_error = reason
        t.file.close()
        self.transfer = None


def open_factory(settings: Settings) -> sessionmaker[Session]:
    engine = db.make_engine(settings.db_url)
    db.upgrade(engine)
    return db.session_factory(engine)


_REVISION = re.compile(r"^(down_revision|depends_on|revision)\s*(?::[^=]*)?=\s*(.+)$", re.MULTILINE)


def migration_heads(versions: Path = db.MIGRATIONS / "versions") -> set[str]:
    """The head revisions of the migration scripts, read from their text (no alembic import). A revision
    another one revises or depends on is not a head (alembic keeps only the dependant in alembic_version)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in versions.glob("*.py"):
        for name, value in _REVISION.findall(script.read_text(encoding="utf-8")):
            ids = set(re.findall(r"[\"']([^\"']+)[\"']", value))
            (revisions if name == "revision" else parents).update(ids)
    return revisions - parents


def schema_is_current(engine: Engine) -> bool:
    """True when the database's alembic_version rows are exactly the heads of the migration scripts."""
    heads = migration_heads()
    if not heads:
        return False
    try:
        with engine.connect() as conn:
            current = {str(r[0]) for r in conn.execute(text("SELECT version_num FROM alembic_version"))}
    except SQLAlchemyError:
        return False
    return current == heads


def open_sender_factory(settings: Settings) -> sessionmaker[Session]:
    """Like `open_factory`, but alembic (≈13 MB resident) never enters the long-running sender: the schema
    is checked against the migration scripts' heads and, only when behind, upgraded in a child process."""
    engine = db.make_engine(settings.db_url)
    if not schema_is_current(engine):
        log.info("database schema behind the migrations: upgrading in a child process")
        code = "import sys; from appliance import db; db.upgrade(db.make_engine(sys.argv[1]))"
        done = subprocess.run([sys.executable, "-c", code, settings.db_url], capture_output=True, text=True)
        if done.returncode != 0:
            raise OutboxError(f"database upgrade failed: {done.stderr.strip()[-300:]}")
    return db.session_factory(engine)


def run_sender(settings: Settings, *, until_empty: bool = False, stop: threading.Event | None = None) -> Stats:
    from appliance import health_notify as hn

    sender = Sender(settings, open_sender_factory(settings))
    beat = hn.Heartbeat("outbox sender loop", max_age=120.0)
    sender.on_turn = beat.beat
    checks: list[Callable[[], bool]] = [beat.fresh]
    db_file = hn.sqlite_file(settings.db_url)
    if db_file is not None:
        checks.insert(0, hn.database_writable(db_file))
    hn.start_watchdog(checks, status="outbox sender running")
    log.info("outbox sender for %s starting (pid %d)", settings.device_id, os.getpid())
    from appliance.memory import give_back

    give_back()  # what start-up built and dropped goes back before the long run
    sender.run(stop, until_empty=until_empty)
    return sender.stats
