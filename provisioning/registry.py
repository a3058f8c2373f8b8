"""The provincial device registry: one SQLite file that is the source of the Ansible inventory and of
the certificate state (issued, expiring, revoked), so Ansible, the CA and the dashboard agree.

Receiver certificates (clientAuth, CN = receiver name) and the boxes' web server certificates (serverAuth)
are recorded in ``service_certificates``: they are revoked and listed in the CRL like device certificates,
but never count as a device's current certificate.

A device id is ``{commune code}-{box number:02d}`` (e.g. ``19999-01``); it is the certificate CN and the
MQTT username. Commune codes are the 5-digit administrative-unit codes in force since 1 July 2025, kept as
strings (leading zeros); the commune's pre-2025 code(s) may be kept for old documents.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEVICE_ID = re.compile(r"^(?P<commune>\d{5})-(?P<box>\d{2})$")
COMMUNE_CODE = re.compile(r"^\d{5}$")
PROVINCE_CODE = re.compile(r"^\d{2}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id      TEXT PRIMARY KEY,
    commune_code   TEXT NOT NULL,
    commune_name   TEXT NOT NULL,
    province_code  TEXT NOT NULL,
    old_unit_codes TEXT NOT NULL DEFAULT '',
    host           TEXT,
    box_no         INTEGER NOT NULL,
    added_at       TEXT NOT NULL,
    retired_at     TEXT
);
CREATE TABLE IF NOT EXISTS certificates (
    serial      TEXT PRIMARY KEY,
    device_id   TEXT NOT NULL REFERENCES devices(device_id),
    not_before  TEXT NOT NULL,
    not_after   TEXT NOT NULL,
    issued_at   TEXT NOT NULL,
    revoked_at  TEXT,
    reason      TEXT
);
CREATE INDEX IF NOT EXISTS certificates_device ON certificates(device_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS service_certificates (
    serial      TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,          -- receiver | web
    name        TEXT NOT NULL,          -- receiver CN, or the device id of a box's web certificate
    hosts       TEXT NOT NULL DEFAULT '',
    not_after   TEXT NOT NULL,
    issued_at   TEXT NOT NULL,
    revoked_at  TEXT,
    reason      TEXT
);
CREATE INDEX IF NOT EXISTS service_certificates_name ON service_certificates(kind, name);
"""


class RegistryError(ValueError):
    """A registry entry that cannot be accepted (bad code, unknown device, duplicate)."""


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    commune_code: str
    commune_name: str
    province_code: str
    box_no: int
    host: str | None = None
    old_unit_codes: str = ""
    cert_serial: str | None = None  # the newest certificate that is not revoked
    cert_not_after: str | None = None
    retired: bool = False


@dataclass(frozen=True, slots=True)
class CertRecord:
    serial: str  # upper-case hex, no separators (as openssl prints it)
    device_id: str
    not_before: str
    not_after: str
    revoked_at: str | None
    reason: str | None


def device_id_for(commune_code: str, box_no: int) -> str:
    if not COMMUNE_CODE.match(commune_code):
        raise RegistryError(f"commune code must be 5 digits (2025 unit code), got {commune_code!r}")
    if not 1 <= box_no <= 99:
        raise RegistryError(f"box number must be 1..99, got {box_no}")
    return f"{commune_code}-{box_no:02d}"


def check_device_id(device_id: str) -> str:
    if not DEVICE_ID.match(device_id):
        raise RegistryError(f"device id must look like 19999-01 (commune code - box number), got {device_id!r}")
    return device_id


def serial_hex(serial: int) -> str:
    return f"{serial:X}"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@contextmanager
def open_registry(path: Path) -> Iterator[sqlite3.Connection]:
    """The registry database (created on first use); commits on success, rolls back on error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.row_factory = sqlite3.Row
    try:
        con.execute("PRAGMA foreign_keys = ON")
        con.executescript(SCHEMA)
        yield con
        con.commit()
    except BaseException:
        con.rollback()
        raise
    finally:
        con.close()


def add_device(
    con: sqlite3.Connection,
    *,
    commune_code: str,
    commune_name: str,
    province_code: str,
    box_no: int = 1,
    host: str | None = None,
    old_unit_codes: str = "",
) -> Device:
    if not PROVINCE_CODE.match(province_code):
        raise RegistryError(f"province code must be 2 digits, got {province_code!r}")
    device_id = device_id_for(commune_code, box_no)
    if con.execute("SELECT 1 FROM devices WHERE device_id = ?", (device_id,)).fetchone():
        raise RegistryError(f"device {device_id} is already registered")
    con.execute(
        "INSERT INTO devices (device_id, commune_code, commune_name, province_code, old_unit_codes, host, box_no,"
        " added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (device_id, commune_code, commune_name, province_code, old_unit_codes, host, box_no, _now()),
    )
    return get_device(con, device_id)


def set_host(con: sqlite3.Connection, device_id: str, host: str | None) -> None:
    if con.execute("UPDATE devices SET host = ? WHERE device_id = ?", (host, device_id)).rowcount != 1:
        raise RegistryError(f"unknown device {device_id}")


def retire_device(con: sqlite3.Connection, device_id: str) -> None:
    if con.execute("UPDATE devices SET retired_at = ? WHERE device_id = ?", (_now(), device_id)).rowcount != 1:
        raise RegistryError(f"unknown device {device_id}")


def _device(con: sqlite3.Connection, row: sqlite3.Row) -> Device:
    cert = con.execute(
        "SELECT serial, not_after FROM certificates WHERE device_id = ? AND revoked_at IS NULL"
        " ORDER BY not_after DESC, issued_at DESC LIMIT 1",
        (row["device_id"],),
    ).fetchone()
    return Device(
        device_id=row["device_id"],
        commune_code=row["commune_code"],
        commune_name=row["commune_name"],
        province_code=row["province_code"],
        box_no=row["box_no"],
        host=row["host"],
        old_unit_codes=row["old_unit_codes"],
        cert_serial=cert["serial"] if cert else None,
        cert_not_after=cert["not_after"] if cert else None,
        retired=row["retired_at"] is not None,
    )


def get_device(con: sqlite3.Connection, device_id: str) -> Device:
    row = con.execute("SELECT * FROM devices WHERE device_id = ?", (device_id,)).fetchone()
    if row is None:
        raise RegistryError(f"unknown device {device_id}")
    return _device(con, row)


def list_devices(con: sqlite3.Connection, *, include_retired: bool = False) -> list[Device]:
    rows = con.execute("SELECT * FROM devices ORDER BY province_code, commune_code, box_no").fetchall()
    devices = [_device(con, r) for r in rows]
    return [d for d in devices if include_retired or not d.retired]


def record_certificate(
    con: sqlite3.Connection, device_id: str, serial: int, not_before: dt.datetime, not_after: dt.datetime
) -> CertRecord:
    get_device(con, device_id)
    con.execute(
        "INSERT INTO certificates (serial, device_id, not_before, not_after, issued_at) VALUES (?, ?, ?, ?, ?)",
        (serial_hex(serial), device_id, not_before.isoformat(), not_after.isoformat(), _now()),
    )
    return certificate(con, serial_hex(serial))


def certificate(con: sqlite3.Connection, serial: str) -> CertRecord:
    row = con.execute("SELECT * FROM certificates WHERE serial = ?", (serial.upper().replace(":", ""),)).fetchone()
    if row is None:
        raise RegistryError(f"no certificate with serial {serial}")
    return CertRecord(
        row["serial"], row["device_id"], row["not_before"], row["not_after"], row["revoked_at"], row["reason"]
    )


def certificates(con: sqlite3.Connection, device_id: str | None = None) -> list[CertRecord]:
    sql = "SELECT serial FROM certificates" + (" WHERE device_id = ?" if device_id else "") + " ORDER BY issued_at"
    return [certificate(con, r["serial"]) for r in con.execute(sql, (device_id,) if device_id else ())]


@dataclass(frozen=True, slots=True)
class ServiceCert:
    serial: str
    kind: str  # receiver | web
    name: str
    hosts: str  # space-separated SANs (web certificates)
    not_after: str
    revoked_at: str | None
    reason: str | None


def record_service_certificate(
    con: sqlite3.Connection, *, kind: str, name: str, serial: int, not_after: dt.datetime, hosts: tuple[str, ...] = ()
) -> ServiceCert:
    con.execute(
        "INSERT INTO service_certificates (serial, kind, name, hosts, not_after, issued_at) VALUES (?, ?, ?, ?, ?, ?)",
        (serial_hex(serial), kind, name, " ".join(hosts), not_after.isoformat(), _now()),
    )
    found = service_certificate(con, serial_hex(serial))
    assert found is not None
    return found


def _service(row: sqlite3.Row) -> ServiceCert:
    return ServiceCert(
        row["serial"], row["kind"], row["name"], row["hosts"], row["not_after"], row["revoked_at"], row["reason"]
    )


def service_certificate(con: sqlite3.Connection, serial: str) -> ServiceCert | None:
    key = serial.upper().replace(":", "")
    row = con.execute("SELECT * FROM service_certificates WHERE serial = ?", (key,)).fetchone()
    return _service(row) if row is not None else None


def service_certificates(
    con: sqlite3.Connection, *, kind: str | None = None, name: str | None = None
) -> list[ServiceCert]:
    sql = "SELECT * FROM service_certificates WHERE (? IS NULL OR kind = ?) AND (? IS NULL OR name = ?)"
    return [_service(r) for r in con.execute(sql + " ORDER BY issued_at", (kind, kind, name, name))]


def mark_service_revoked(con: sqlite3.Connection, serial: str, reason: str) -> ServiceCert:
    rec = service_certificate(con, serial)
    if rec is None:
        raise RegistryError(f"no certificate with serial {serial}")
    if rec.revoked_at is None:
        con.execute(
            "UPDATE service_certificates SET revoked_at = ?, reason = ? WHERE serial = ?", (_now(), reason, rec.serial)
        )
    found = service_certificate(con, rec.serial)
    assert found is not None
    return found


def mark_revoked(con: sqlite3.Connection, serial: str, reason: str) -> CertRecord:
    rec = certificate(con, serial)
    if rec.revoked_at is None:
        con.execute("UPDATE certificates SET revoked_at = ?, reason = ? WHERE serial = ?", (_now(), reason, rec.serial))
    return certificate(con, rec.serial)


def next_crl_number(con: sqlite3.Connection) -> int:
    row = con.execute("SELECT value FROM meta WHERE key = 'crl_number'").fetchone()
    number = int(row["value"]) + 1 if row else 1
    con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('crl_number', ?)", (str(number),))
    return number


def expiring(con: sqlite3.Connection, within_days: int, *, now: dt.datetime | None = None) -> list[Device]:
    """Active devices whose current certificate ends within `within_days` (or that have none)."""
    limit = (now or dt.datetime.now(dt.UTC)) + dt.timedelta(days=within_days)
    out = []
    for d in list_devices(con):
        if d.cert_not_after is None or dt.datetime.fromisoformat(d.cert_not_after) <= limit:
            out.append(d)
    return out


def group_name(kind: str, code: str) -> str:
    """Ansible group names must be identifiers: province_44, commune_19999."""
    return f"{kind}_{code}"


def inventory(devices: list[Device], *, province_names: dict[str, str] | None = None) -> dict[str, Any]:
    """An Ansible YAML inventory: all -> province_{code} -> commune_{code} -> hosts (device ids), with the
    registry facts as host variables. Broker endpoint, bandwidth windows and TSA are group_vars (by hand);
    the PKCS#11 module and token serial are host_vars."""
    provinces: dict[str, dict[str, Any]] = {}
    for d in devices:
        if d.retired:
            continue
        prov = provinces.setdefault(
            group_name("province", d.province_code),
            {"vars": {"province_code": d.province_code}, "children": {}},
        )
        if province_names and d.province_code in province_names:
            prov["vars"]["province_name"] = province_names[d.province_code]
        commune = prov["children"].setdefault(
            group_name("commune", d.commune_code),
            {"vars": {"commune_code": d.commune_code, "commune_name": d.commune_name}, "hosts": {}},
        )
        host: dict[str, Any] = {"device_id": d.device_id, "box_no": d.box_no}
        if d.host:
            host["ansible_host"] = d.host
        if d.old_unit_codes:
            host["old_unit_codes"] = d.old_unit_codes
        if d.cert_serial:
            host["device_cert_serial"] = d.cert_serial
            host["device_cert_not_after"] = d.cert_not_after
        commune["hosts"][d.device_id] = host
    return {"all": {"children": {"appliances": {"children": provinces}}}}
