"""`province serve`: the receiver. An MQTT 5 shared-subscription consumer, so N of them run side by side.

For each package: reassemble the segments by file id, check size and SHA-256, verify it with the same
code as `appliance verify`, store it content-addressed, commit the catalogue row, and only then answer
`fin` and publish the receipt. A package already catalogued is answered with its stored receipt.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from appliance.db import utcnow
from appliance.outbox import protocol
from appliance.outbox.mqtt import Event, Link, LinkConfig
from appliance.outbox.protocol import Command, Receipt, Response
from province import catalogue
from province.spool import Spool

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReceiverConfig:
    host: str
    port: int
    name: str = "receiver-1"  # MQTT client id; CN of its certificate
    group: str = "province"  # shared-subscription group
    data_dir: Path = Path("var/province")
    db_url: str | None = None  # default: sqlite in data_dir
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    trust_roots: tuple[Path, ...] = ()
    verify: bool = True  # False only for transport benchmarks: packages are then stored unverified
    fsync_segments: bool = True

    @property
    def catalogue_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / 'catalogue.db'}"


@dataclass
class ReceiverStats:
    segments: int = 0
    bytes: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    corrupt: int = 0
    disk_full: int = 0
    first_at: float = 0.0
    last_at: float = 0.0
    errors: list[str] = field(default_factory=list)


def _is_disk_full(err: OSError) -> bool:
    return err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class Receiver:
    def __init__(self, cfg: ReceiverConfig) -> None:
        self.cfg = cfg
        self.on_turn: Callable[[], None] | None = None  # called on every loop turn (watchdog heartbeat)
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self.spool = Spool(cfg.data_dir / "spool", sync=cfg.fsync_segments)
        self.store_dir = cfg.data_dir / "store"
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.factory: sessionmaker[Session] = catalogue.open_catalogue(cfg.catalogue_url)
        self.state_topic = protocol.RECEIVER_STATE.format(name=cfg.name)
        self.link = Link(
            LinkConfig(
                host=cfg.host,
                port=cfg.port,
                client_id=cfg.name,
                ca_file=cfg.ca_file,
                cert_file=cfg.cert_file,
                key_file=cfg.key_file,
                session_expiry_s=0,
                inflight=100,
                subscriptions=(f"$share/{cfg.group}/devices/+/file-async/#",),
                will_topic=self.state_topic,
                will_payload=protocol.receiver_state_payload("offline", cfg.name),
            )
        )
        self.stats = ReceiverStats()
        self._manifest_facts: dict[str, Any] = {}

    # --- loop ---
    def run(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        self.link.start()
        try:
            while not stop.is_set():
                if self.on_turn is not None:
                    self.on_turn()
                ev = self.link.next_event(0.5)
                if ev is not None:
                    self.handle(ev)
        finally:
            st = self.stats
            log.info(
                "receiver %s stopping: segments=%d bytes=%d accepted=%d rejected=%d duplicates=%d corrupt=%d",
                self.cfg.name, st.segments, st.bytes, st.accepted, st.rejected, st.duplicates, st.corrupt,
            )  # fmt: skip
            if self.link.connected.is_set():  # a clean stop says so; a crash leaves it to the will
                self.link.publish(
                    self.state_topic, protocol.receiver_state_payload("offline", self.cfg.name), retain=True
                )
            self.link.stop()

    def handle(self, ev: Event) -> None:
        if ev.kind == "connected":
            self.link.publish(self.state_topic, protocol.receiver_state_payload("online", self.cfg.name), retain=True)
            log.info("receiver %s online", self.cfg.name)
        elif ev.kind in ("disconnected", "refused"):
            log.warning("receiver %s %s: %s", self.cfg.name, ev.kind, ev.reason)
        elif ev.kind == "puback" and ev.reason_code >= 0x80:
            log.error("broker rejected our publish on %s: %s", ev.topic, ev.reason)
            self.stats.errors.append(f"puback {ev.reason_code} on {ev.topic}")
        elif ev.kind == "message":
            cmd = protocol.parse_topic(ev.topic)
            if cmd is None:
                return
            try:
                self._dispatch(cmd, ev.topic, ev.payload)
            except Exception as err:  # noqa: BLE001 - one bad message must not stop the receiver
                log.exception("cannot handle %s", ev.topic)
                self.stats.errors.append(f"{ev.topic}: {err}")
                self._answer(cmd, ev.topic, protocol.IMPLEMENTATION_ERROR, f"receiver error: {type(err).__name__}")

    def _dispatch(self, cmd: Command, topic: str, payload: bytes) -> None:
        now = time.monotonic()
        self.stats.first_at = self.stats.first_at or now
        self.stats.last_at = now
        if cmd.kind == "init":
            self._init(cmd, topic, payload)
        elif cmd.kind == "segment":
            self._segment(cmd, topic, payload)
        else:
            self._fin(cmd, topic)

    # --- replies ---
    def _answer(
        self,
        cmd: Command,
        topic: str,
        code: int,
        description: str = "success",
        *,
        offset: int | None = None,
        receipt: dict[str, Any] | None = None,
    ) -> None:
        resp = Response(topic=topic, reason_code=code, reason_description=description, offset=offset, receipt=receipt)
        self.link.publish(f"devices/{cmd.device_id}/file-response", protocol.response_payload(resp))

    def _send_receipt(self, device: str, receipt: dict[str, Any]) -> None:
        self.link.publish(f"devices/{device}/receipts", json.dumps(receipt, ensure_ascii=False).encode())

    # --- commands ---
    def _init(self, cmd: Command, topic: str, payload: bytes) -> None:
        with self.factory() as s:
            known = catalogue.find(s, cmd.file_id)
        if known is not None:
            self.stats.duplicates += 1
            log.info("package %s already stored as %s: same receipt again", cmd.file_id[:12], known.warehouse_id)
            self._answer(cmd, topic, protocol.OK, offset=known.size, receipt=known.receipt)
            self._send_receipt(cmd.device_id, known.receipt)
            return
        try:
            meta = json.loads(payload)
            size, checksum = int(meta["size"]), str(meta["checksum"])
        except (ValueError, KeyError, TypeError):
            self._answer(cmd, topic, protocol.PAYLOAD_INVALID, "init payload is not valid JSON with size and checksum")
            return
        try:
            old = self.spool.read_init(cmd.device_id, cmd.file_id)
            if old is not None and (old.get("size"), old.get("checksum")) != (size, checksum):
                self.spool.drop(cmd.device_id, cmd.file_id)  # a different file under the same id: start over
            self.spool.write_init(cmd.device_id, cmd.file_id, {"size": size, "checksum": checksum, "meta": meta})
        except OSError as err:
            if _is_disk_full(err):
                self.stats.disk_full += 1
                self._answer(cmd, topic, protocol.QUOTA_EXCEEDED, "receiver disk full")
                return
            raise
        self._answer(cmd, topic, protocol.OK, offset=self.spool.held(cmd.device_id, cmd.file_id))

    def _segment(self, cmd: Command, topic: str, payload: bytes) -> None:
        meta = self.spool.read_init(cmd.device_id, cmd.file_id)
        if meta is None:
            self._answer(cmd, topic, protocol.UNSPECIFIED, "unknown transfer: send init first")
            return
        if cmd.checksum is not None and protocol.sha256_hex(payload) != cmd.checksum:
            self.stats.corrupt += 1
            log.warning("segment %s@%d: checksum mismatch", cmd.file_id[:12], cmd.offset)
            self._answer(cmd, topic, protocol.PAYLOAD_INVALID, "segment checksum mismatch")
            return
        if cmd.offset < 0 or cmd.offset + len(payload) > int(meta["size"]) or len(payload) > protocol.MAX_SEGMENT:
            self._answer(cmd, topic, protocol.PAYLOAD_INVALID, "segment outside the announced size")
            return
        try:
            self.spool.put_segment(cmd.device_id, cmd.file_id, cmd.offset, payload)
        except OSError as err:
            if _is_disk_full(err):
                self.stats.disk_full += 1
                log.error("disk full while storing a segment of %s", cmd.file_id[:12])
                self._answer(cmd, topic, protocol.QUOTA_EXCEEDED, "receiver disk full")
                return
            raise
        self.stats.segments += 1
        self.stats.bytes += len(payload)
        self._answer(cmd, topic, protocol.OK)

    def _fin(self, cmd: Command, topic: str) -> None:
        with self.factory() as s:
            known = catalogue.find(s, cmd.file_id)
        if known is not None:
            self.stats.duplicates += 1
            self._answer(cmd, topic, protocol.OK, receipt=known.receipt)
            self._send_receipt(cmd.device_id, known.receipt)
            return
        meta = self.spool.read_init(cmd.device_id, cmd.file_id)
        if meta is None:
            self._answer(cmd, topic, protocol.UNSPECIFIED, "unknown transfer: send init first")
            return
        checksum = cmd.checksum or str(meta["checksum"])
        tmp = self.store_dir / f".{cmd.file_id}.{os.getpid()}.part"
        try:
            size, sha = self.spool.assemble(cmd.device_id, cmd.file_id, tmp)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            if _is_disk_full(err):
                self.stats.disk_full += 1
                log.error("disk full while assembling %s", cmd.file_id[:12])
                self._answer(cmd, topic, protocol.QUOTA_EXCEEDED, "receiver disk full")
                return
            raise
        if size != cmd.size or size != int(meta["size"]) or sha != checksum:
            tmp.unlink(missing_ok=True)
            self.spool.drop(cmd.device_id, cmd.file_id)
            self.stats.corrupt += 1
            log.warning("package %s: size/SHA-256 mismatch after assembly; transfer starts over", cmd.file_id[:12])
            self._answer(cmd, topic, protocol.PAYLOAD_INVALID, f"size or SHA-256 mismatch ({size} bytes, {sha[:12]})")
            return
        verdict = self._verify(cmd, tmp, sha)
        if verdict.status == "rejected":
            tmp.unlink(missing_ok=True)
            catalogue.record_rejection(
                self.factory, package_id=cmd.file_id, device_id=cmd.device_id, reason=verdict.reason or ""
            )
            self.spool.drop(cmd.device_id, cmd.file_id)
            self.stats.rejected += 1
            log.warning("package %s from %s rejected: %s", cmd.file_id[:12], cmd.device_id, verdict.reason)
            body = verdict.to_json()
            self._answer(cmd, topic, protocol.OK, receipt=body)
            self._send_receipt(cmd.device_id, body)
            return
        manifest = self._manifest_facts
        deciding = deciding_agency(manifest)
        # filed under the deciding agency (Decree 118/2025: whose warehouse stores it), content-addressed inside
        final = self.store_dir / deciding / sha[:2] / f"{sha}.asice"
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp.replace(final)  # the same bytes land on the same name
        row = catalogue.record(
            self.factory,
            catalogue.StoredPackage(
                package_id=cmd.file_id,
                device_id=cmd.device_id,
                commune_code=str(manifest.get("commune_code") or ""),
                dossier_code=manifest.get("dossier_code"),
                deciding_agency=deciding,
                category=manifest.get("category"),
                sha256=sha,
                size=size,
                path=str(final),
                signer=manifest.get("signer"),
                warehouse_id=verdict.warehouse_id or "",
                receipt=verdict.to_json(),
            ),
        )  # committed: only now the receipt goes out
        self.spool.drop(cmd.device_id, cmd.file_id)
        self.stats.accepted += 1
        log.info("package %s from %s stored as %s", cmd.file_id[:12], cmd.device_id, row.warehouse_id)
        self._answer(cmd, topic, protocol.OK, receipt=row.receipt)
        self._send_receipt(cmd.device_id, row.receipt)

    def _verify(self, cmd: Command, path: Path, sha: str) -> Receipt:
        now = utcnow().isoformat(timespec="seconds")
        self._manifest_facts = {}
        if not self.cfg.verify:
            return Receipt(cmd.file_id, "accepted", sha, warehouse_id=f"WH-{cmd.file_id[:16]}", at=now)
        from appliance.sign.package import verify_package  # the same code as `appliance verify`

        report = verify_package(path.read_bytes(), list(self.cfg.trust_roots), name=f"{cmd.file_id}.asice")
        problems = [f"{p.code}: {p.detail}" for p in report.all_problems]
        if report.package_id != cmd.file_id:
            problems.append(f"package_id_mismatch: the manifest says {report.package_id}, the transfer {cmd.file_id}")
        if problems:
            return Receipt(
                cmd.file_id,
                "rejected",
                sha,
                reason="; ".join(problems)[:480],
                problems=tuple(p.split(":", 1)[0] for p in problems),
                at=now,
            )
        facts = _manifest(path)
        facts["signer"] = report.signer
        self._manifest_facts = facts
        return Receipt(
            cmd.file_id, "accepted", sha, warehouse_id=f"WH-{deciding_agency(facts)}-{cmd.file_id[:16]}", at=now
        )


_SAFE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.\-]{0,63}$")


def deciding_agency(manifest: dict[str, Any]) -> str:
    """Whose warehouse stores the package: the manifest's deciding agency (packages made before it existed:
    the commune that sent it), as a safe file-name part ("00000" when neither is usable)."""
    for key in ("deciding_agency", "commune_code"):
        value = str(manifest.get(key) or "")
        if _SAFE.match(value) and ".." not in value:
            return value
    return "00000"


def _manifest(path: Path) -> dict[str, Any]:
    import zipfile

    with zipfile.ZipFile(path) as z:
        facts: dict[str, Any] = json.loads(z.read("manifest.json"))
    return facts


def serve(cfg: ReceiverConfig, stop: threading.Event | None = None) -> None:
    from appliance import health_notify as hn

    log.info("receiver %s on %s:%d, data in %s", cfg.name, cfg.host, cfg.port, cfg.data_dir)
    receiver = Receiver(cfg)
    beat = hn.Heartbeat("receiver loop", max_age=120.0)
    receiver.on_turn = beat.beat
    hn.start_watchdog([beat.fresh], status="receiver running")
    receiver.run(stop)
