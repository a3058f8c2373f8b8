"""One function per reading. Each may block or fail; the collector runs each under its own deadline."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import math
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from appliance.settings import Settings
from appliance.telemetry.schema import (
    Camera,
    Certificate,
    Clock,
    Disk,
    FleetRun,
    Link,
    Memory,
    Outbox,
    RosterEntry,
    Scanner,
    Token,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

T = TypeVar("T")

FLEET_RUN_FILE = Path("/var/lib/appliance/fleet-last-run.json")
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")


def software_version() -> str:
    try:
        return metadata.version("appliance")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def boot_id(path: Path = BOOT_ID_FILE) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return "unknown"


def uptime_s(path: Path = Path("/proc/uptime")) -> float:
    return float(path.read_text().split()[0])


def scanner(settings: Settings) -> Scanner:
    from appliance.capture.sane import SaneScanner

    found = SaneScanner(lock_timeout_s=5).devices()
    return Scanner(present=bool(found), devices=[f"{d.vendor} {d.model} ({d.name})" for d in found])


def camera(settings: Settings) -> Camera:
    kind = settings.camera.kind
    if kind == "none":
        return Camera(configured=kind, present=None)
    if kind == "uvc":
        src = settings.camera.uvc_source
        path = Path(f"/dev/video{src}") if src.isdigit() else Path(src)
        if "://" in src:
            return Camera(configured=kind, present=None)
        return Camera(configured=kind, present=path.exists())
    # picamera: libcamera lists the sensors; without the tool we cannot tell
    tool = shutil.which("rpicam-hello") or shutil.which("libcamera-hello")
    if tool is None:
        return Camera(configured=kind, present=None)
    done = subprocess.run([tool, "--list-cameras"], capture_output=True, text=True, timeout=10, check=False)
    return Camera(configured=kind, present="Available cameras" in done.stdout and ": " in done.stdout)


def tokens(settings: Settings, timeout_s: float) -> list[Token]:
    """Every token present: PIN state and each certificate (no login, in the signing worker process)."""
    from appliance.sign.batch import token_status

    found = token_status(settings.sign.pkcs11_module, settings.sign.token_serial, timeout_s=timeout_s)
    return [
        Token(
            serial=t.serial,
            label=t.label,
            model=t.model,
            pin_state=str(t.pin_state),
            certificates=[
                Certificate(
                    owner=c.common_name,
                    role="organisation" if c.role == "organisation" else "officer",
                    serial=c.serial,
                    not_after=c.not_after,
                    days_to_expiry=c.days_to_expiry,
                    usable_for_signing=c.non_repudiation and not c.is_ca,
                )
                for c in t.certificates
                if not c.is_ca
            ],
        )
        for t in found
    ]


def block_device(path: Path, sys_root: Path = Path("/sys")) -> tuple[str, Path] | None:
    """The block device (name, its stat file) holding `path`, or None (overlay, tmpfs, container)."""
    st = path.stat()
    node = sys_root / "dev" / "block" / f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    stat = node / "stat"
    if not stat.exists():
        return None
    return node.resolve().name, stat


def written_bytes(stat_file: Path) -> int:
    """Sectors written (field 7 of /sys/block/*/stat) x 512 bytes, since boot."""
    fields = stat_file.read_text().split()
    return int(fields[6]) * 512


def disk(path: Path) -> Disk:
    path.mkdir(parents=True, exist_ok=True)
    usage = shutil.disk_usage(path)
    dev = block_device(path)
    return Disk(
        path=str(path),
        total_bytes=usage.total,
        free_bytes=usage.free,
        used_pct=round(100.0 * (usage.total - usage.free) / usage.total, 1) if usage.total else 0.0,
        written_bytes=written_bytes(dev[1]) if dev else None,
        device=dev[0] if dev else None,
    )


def memory(meminfo: Path = Path("/proc/meminfo")) -> Memory:
    values: dict[str, int] = {}
    for line in meminfo.read_text().splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            values[name] = int(parts[0]) * 1024
    total = values["MemTotal"]
    avail = values.get("MemAvailable", values.get("MemFree", 0))
    return Memory(total_bytes=total, available_bytes=avail, used_pct=round(100.0 * (total - avail) / total, 1))


# --- clock --------------------------------------------------------------------------------------
class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    """struct timex (linux/timex.h); read with modes = 0, it changes nothing."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_pad", ctypes.c_int * 11),
    ]


TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised
STA_NANO = 0x2000


def parse_timedatectl(text: str) -> bool | None:
    """`timedatectl show -p NTPSynchronized` output -> True / False / None."""
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "NTPSynchronized":
            return {"yes": True, "no": False}.get(value.strip())
    return None


def clock() -> Clock:
    tool = shutil.which("timedatectl")
    if tool is not None:
        done = subprocess.run(
            [tool, "show", "-p", "NTPSynchronized"], capture_output=True, text=True, timeout=5, check=False
        )
        synced = parse_timedatectl(done.stdout) if done.returncode == 0 else None
        if synced is not None:
            return Clock(synchronized=synced, source="timedatectl")
    name = ctypes.util.find_library("c")
    if name is not None:
        libc = ctypes.CDLL(name, use_errno=True)
        tx = _Timex()
        state = libc.adjtimex(ctypes.byref(tx))
        if state >= 0:
            scale = 1e6 if tx.status & STA_NANO else 1e3
            return Clock(synchronized=state != TIME_ERROR, source="adjtimex", offset_ms=tx.offset / scale)
    return Clock(synchronized=None, source="unknown")


# --- the box's database --------------------------------------------------------------------------
def _read_box_db(settings: Settings, query: Callable[[Session], T]) -> T | None:
    """`query` run in one session on the box's database, the engine disposed after; None when the database
    is a SQLite file that does not exist yet (a box never started): a reading never creates it."""
    from sqlalchemy.orm import Session

    from appliance import db

    url = settings.db_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None
    engine = db.make_engine(url)
    try:
        with Session(engine) as s:
            return query(s)
    finally:
        engine.dispose()


# --- outbox -------------------------------------------------------------------------------------
def outbox(settings: Settings, now: datetime, link_rtt_ms: float | None = None) -> Outbox:
    from sqlalchemy import func, select

    from appliance.outbox import store, traffic

    sent = traffic.read(traffic.path_for(settings.data_dir))  # written by the sender (another process)
    counted = Outbox(depth=None, oldest_age_s=None, last_receipt_at=None, receipted_bytes_24h=None)
    if sent is not None:
        try:
            since = datetime.fromisoformat(sent.since) if sent.since else None
        except ValueError:
            since = None
        counted = counted.model_copy(
            update={
                "payload_bytes": sent.payload_bytes,
                "wire_bytes": sent.wire_bytes,
                "resent_bytes": sent.resent_bytes,
                "bytes_since": since if since is not None and since.tzinfo is not None else None,
            }
        )

    def read(s: Session) -> tuple[int, datetime | None, datetime | None, int | None]:
        depth, oldest = store.depth(s)
        day = s.scalar(
            select(func.coalesce(func.sum(store.OutboxItem.size), 0)).where(
                store.OutboxItem.receipted_at >= now - timedelta(days=1)
            )
        )
        return depth, oldest, _receipted_last(s), day

    found = _read_box_db(settings, read)
    if found is None:
        return counted
    depth, oldest, last, day = found
    return counted.model_copy(
        update={
            "depth": depth,
            "oldest_age_s": round((now - oldest).total_seconds(), 1) if oldest else None,
            "last_receipt_at": last,
            "receipted_bytes_24h": int(day or 0),
            "link_rtt_ms": link_rtt_ms,
        }
    )


def _last_receipt(settings: Settings) -> datetime | None:
    """When the warehouse last receipted a package of this box (None: never, or no database yet)."""
    return _read_box_db(settings, _receipted_last)


def _receipted_last(s: Session) -> datetime | None:
    from sqlalchemy import func, select

    from appliance.outbox import store

    return store.aware(s.scalar(select(func.max(store.OutboxItem.receipted_at))))


def _reach(host: str, port: int, tls: ssl.SSLContext | None, deadline_s: float) -> dict[str, object]:
    """One TCP connect (and TLS handshake) to the broker: no MQTT CONNECT, so no session of the device's
    client id is ever taken over. Errors are one line for the log and the province."""
    t0 = time.monotonic()
    try:
        sock = socket.create_connection((host, port), timeout=deadline_s)
    except OSError as err:
        reason = "timeout" if isinstance(err, TimeoutError) else (err.strerror or type(err).__name__)
        return {"reachable": False, "error": f"TCP {host}:{port}: {reason}"[:300]}
    connect_ms = round((time.monotonic() - t0) * 1000, 1)
    try:
        if tls is None:
            return {"reachable": True, "connect_ms": connect_ms}
        sock.settimeout(max(0.1, deadline_s - (time.monotonic() - t0)))
        try:
            with tls.wrap_socket(sock, server_hostname=host):
                pass
        except (ssl.SSLError, ssl.CertificateError) as err:
            reason = getattr(err, "reason", None) or str(err)
            return {"reachable": False, "connect_ms": connect_ms, "error": f"TLS {host}:{port}: {reason}"[:300]}
        except OSError as err:
            reason = "timeout" if isinstance(err, TimeoutError) else (err.strerror or type(err).__name__)
            return {"reachable": False, "connect_ms": connect_ms, "error": f"TLS {host}:{port}: {reason}"[:300]}
        return {
            "reachable": True,
            "connect_ms": connect_ms,
            "handshake_ms": round((time.monotonic() - t0) * 1000, 1),
        }
    finally:
        sock.close()


def link(settings: Settings, deadline_s: float = 5.0) -> Link:
    """Broadband to the province: the outbox's broker reachable (TCP, and TLS with the device certificate
    when configured) within `deadline_s`, the last transfer the sender completed, the last receipt."""
    from appliance.outbox import traffic

    o = settings.outbox
    tls: ssl.SSLContext | None = None
    if o.ca_file is not None:
        tls = ssl.create_default_context(cafile=str(o.ca_file))
        if o.cert_file is not None:
            tls.load_cert_chain(str(o.cert_file), str(o.key_file) if o.key_file else None)
    reached: dict[str, object] = (
        _reach(o.host, o.port, tls, deadline_s)
        if o.host
        else {"reachable": None, "error": "no broker configured (outbox.host)"}
    )
    carried: dict[str, object] = {}
    sent = traffic.read(traffic.path_for(settings.data_dir))
    if sent is not None and sent.last_at and sent.last_bytes > 0 and 0 < sent.last_seconds < math.inf:
        try:
            at = datetime.fromisoformat(sent.last_at)
        except ValueError:
            at = None
        if at is not None and at.tzinfo is not None:
            carried = {
                "last_transfer_bytes": sent.last_bytes,
                "last_transfer_s": sent.last_seconds,
                "last_transfer_at": at,
                "throughput_bps": round(sent.last_bytes * 8 / sent.last_seconds, 1),
            }
    return Link.model_validate(
        {
            "host": o.host,
            "port": o.port,
            "tls": tls is not None,
            **reached,
            **carried,
            "last_delivery_at": _last_receipt(settings),
        }
    )


def roster(settings: Settings, now: datetime) -> list[RosterEntry] | None:
    """Every active officer account's certificate verdict and the organisation's, from the box's database
    (appliance.roster); None when the database does not exist yet (a box never started)."""
    from appliance import roster as officers

    lines = _read_box_db(settings, lambda s: officers.of_active_accounts(s, now=now))
    if lines is None:
        return None
    organisation = [line for line in lines if line.username == officers.ORGANISATION]
    kept = [line for line in lines if line.username != officers.ORGANISATION][: 500 - len(organisation)]
    return [RosterEntry.model_validate(row) for row in officers.as_telemetry([*kept, *organisation])]


def fleet_run(path: Path = FLEET_RUN_FILE) -> FleetRun | None:
    """The file the Ansible role writes after each run (format in docs/telemetry.md); None when absent."""
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    finished = data.get("finished_at")
    return FleetRun(
        finished_at=datetime.fromisoformat(finished).astimezone(UTC) if finished else None,
        result=data.get("result"),
        playbook=data.get("playbook"),
        version=data.get("version"),
    )
