"""The officers' certificates at the province: every box's roster (telemetry `Reading.roster`, stored by the
ingest in `tm_roster`), the officers provincial IT expects per unit (`province officers FILE.csv`, table
`tm_expected_officers`), and what the two say together per unit.

A roster line belongs to the unit its box is recorded at (`tm_devices.commune_code`: the registered commune
for a registered box), never to a commune code a box claims. Verdicts are those of the box
(`appliance.roster.VERDICTS`), re-judged against the province's clock for expiry, since a reading may be old;
an expected officer no box of the unit has seen is "chưa thấy ký".

Expected officers CSV (UTF-8, header line; lines starting with # are skipped):
`commune_code,full_name[,username][,position]` — the unit's code (as in the units file), the officer's name
as on the certificate, the officer's account on the box when known (then matched by account, otherwise by
the certificate's CN, diacritics and case ignored) and the job title. Loading a file replaces the lists of
the units it names (all units' lists with `replace_all`); a bad line stops the load with its number, and
nothing of the file is stored.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol, cast

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from appliance.csvfile import read_csv
from appliance.roster import EXPIRED, EXPIRING, EXPIRING_DAYS, MISMATCH, MISSING, REVOKED, VALID, VERDICTS
from appliance.telemetry.schema import RosterEntry
from appliance.textindex import fold
from province.dashboard.units import place_of, places
from province.telemetry_db import Device, ExpectedOfficer, RosterRow, Unit, aware

__all__ = [
    "EXPIRED",
    "EXPIRING",
    "LABELS",
    "MISMATCH",
    "MISSING",
    "NEVER_SEEN",
    "NO_DATA",
    "REVOKED",
    "VALID",
    "Expected",
    "ExpectedFileError",
    "OfficerLine",
    "UnitCertificates",
    "alerts_for",
    "load_expected",
    "read_expected",
    "store_roster",
    "units_view",
]

NEVER_SEEN = "never_seen"  # expected by provincial IT, on no roster of the unit's boxes
NO_DATA = "no_data"  # organisation certificate: no box of the unit has sent a roster yet
LABELS = {**VERDICTS, NEVER_SEEN: "chưa thấy ký", NO_DATA: "chưa có số liệu"}
USABLE = frozenset({VALID, EXPIRING})
OFFICER_VERDICTS = (VALID, EXPIRING, MISSING, EXPIRED, REVOKED, MISMATCH, NEVER_SEEN)
_RANK = {v: i for i, v in enumerate((VALID, EXPIRING, MISMATCH, EXPIRED, REVOKED, MISSING))}
_CN = re.compile(r"(?:^|,)\s*CN=((?:\\.|[^,\\])*)", re.IGNORECASE)


def common_name(subject: str | None) -> str:
    """The CN of an RFC 4514 subject ("CN=Nguyễn Văn A,O=UBND xã ..."), unescaped; "" when it has none."""
    m = _CN.search(subject or "")
    return re.sub(r"\\(.)", r"\1", m.group(1)).strip() if m else ""


def verdict_now(box_verdict: str, not_after: datetime | None, now: datetime) -> str:
    """The box's verdict, with expiry judged again at `now` (the reading may be days old)."""
    if box_verdict in (MISSING, REVOKED) or not_after is None:
        return box_verdict
    if not_after <= now:
        return EXPIRED
    if box_verdict == MISMATCH:
        return MISMATCH
    return EXPIRING if not_after - now <= timedelta(days=EXPIRING_DAYS) else VALID


def days_left(not_after: datetime | None, now: datetime) -> int | None:
    """Whole days left, counted as the box counts them (appliance.roster.RosterLine.days_left)."""
    return None if not_after is None else (not_after - now).days


# --- ingest ---------------------------------------------------------------------------------------
def store_roster(s: Session, device_id: str, entries: Sequence[RosterEntry], at: datetime) -> None:
    """Replace every roster line of one box with those of its newest reading."""
    s.execute(delete(RosterRow).where(RosterRow.device_id == device_id))
    s.add_all(
        RosterRow(
            device_id=device_id,
            username=e.username,
            role=e.role,
            verdict=e.verdict,
            subject=e.subject,
            common_name=common_name(e.subject)[:200],
            serial=e.serial,
            issuer=e.issuer,
            not_after=e.not_after,
            key=e.key,
            pss=e.pss,
            revocation=e.revocation,
            last_seen=e.last_seen,
            reading_at=at,
        )
        for e in entries
    )


# --- per unit -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OfficerLine:
    commune_code: str
    role: str  # officer | organisation
    verdict: str  # a key of LABELS
    username: str = ""
    full_name: str = ""  # from the expected list, else the certificate's CN
    position: str = ""
    expected: bool | None = None  # on the unit's expected list (None: the unit has no list)
    device_id: str | None = None
    common_name: str = ""
    subject: str | None = None
    serial: str | None = None
    issuer: str | None = None
    not_after: datetime | None = None
    days_left: int | None = None
    key: str | None = None
    pss: bool | None = None
    revocation: str | None = None
    last_seen: datetime | None = None

    @property
    def label(self) -> str:
        return LABELS[self.verdict]

    @property
    def usable(self) -> bool:
        return self.verdict in USABLE


@dataclass(slots=True)
class UnitCertificates:
    commune_code: str
    name: str
    province_code: str
    province_name: str
    level: str
    devices: list[str]
    reported: bool  # a box of the unit has sent a roster
    has_list: bool  # provincial IT loaded expected officers for the unit
    officers: list[OfficerLine]
    organisation: OfficerLine | None

    @property
    def lines(self) -> list[OfficerLine]:
        """The officers' lines, then the organisation's (when a box saw one)."""
        return [*self.officers, *([self.organisation] if self.organisation else [])]

    def count(self, *verdicts: str) -> int:
        return sum(1 for o in self.officers if o.verdict in verdicts)

    @property
    def usable(self) -> int:
        return self.count(*USABLE)

    @property
    def without(self) -> int:
        return len(self.officers) - self.usable

    @property
    def org_verdict(self) -> str:
        if self.organisation is not None:
            return self.organisation.verdict
        return MISSING if self.reported else NO_DATA

    @property
    def org_label(self) -> str:
        return LABELS[self.org_verdict]

    @property
    def org_usable(self) -> bool:
        return self.org_verdict in USABLE

    @property
    def attention(self) -> bool:
        """Something for provincial IT to chase: an officer without a usable certificate, one expiring, or
        no usable organisation certificate (once the unit has a box that reports one or an expected list)."""
        has_data = self.reported or self.has_list
        return has_data and (self.without > 0 or self.count(EXPIRING) > 0 or not self.org_usable)


class _Seen(Protocol):
    """A stored roster line as the per-unit view reads it: a plain result row of tm_roster's columns (building
    23,000 ORM objects for 3,300 units took half of the view's time)."""

    @property
    def device_id(self) -> str: ...
    @property
    def username(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def verdict(self) -> str: ...
    @property
    def subject(self) -> str | None: ...
    @property
    def common_name(self) -> str: ...
    @property
    def serial(self) -> str | None: ...
    @property
    def issuer(self) -> str | None: ...
    @property
    def not_after(self) -> datetime | None: ...
    @property
    def key(self) -> str | None: ...
    @property
    def pss(self) -> bool | None: ...
    @property
    def revocation(self) -> str | None: ...
    @property
    def last_seen(self) -> datetime | None: ...


def _line(
    commune: str, row: _Seen, now: datetime, *, full_name: str, position: str = "", expected: bool | None = None
) -> OfficerLine:
    not_after = aware(row.not_after)
    return OfficerLine(
        commune_code=commune,
        role=row.role,
        verdict=verdict_now(row.verdict, not_after, now),
        username=row.username,
        device_id=row.device_id,
        common_name=row.common_name,
        subject=row.subject,
        serial=row.serial,
        issuer=row.issuer,
        not_after=not_after,
        days_left=days_left(not_after, now),
        key=row.key,
        pss=row.pss,
        revocation=row.revocation,
        last_seen=aware(row.last_seen),
        full_name=full_name,
        position=position,
        expected=expected,
    )


def _best(rows: Sequence[_Seen], now: datetime) -> _Seen | None:
    """The line that speaks for an officer seen on several boxes: usable and valid longest first."""
    if len(rows) < 2:
        return rows[0] if rows else None

    def rank(r: _Seen) -> tuple[int, float, float]:
        not_after, seen = aware(r.not_after), aware(r.last_seen)
        return (
            _RANK.get(verdict_now(r.verdict, not_after, now), 9),
            -(not_after.timestamp() if not_after else 0.0),
            -(seen.timestamp() if seen else 0.0),
        )

    return min(rows, key=rank, default=None)


def _officers(
    commune: str, rows: list[_Seen], expected: list[ExpectedOfficer], now: datetime
) -> tuple[list[OfficerLine], OfficerLine | None]:
    by_user: dict[str, list[_Seen]] = {}
    orgs: list[_Seen] = []
    for r in rows:
        if r.role == "organisation":
            orgs.append(r)
        else:
            by_user.setdefault(r.username.casefold(), []).append(r)
    seen = {user: best for user, group in by_user.items() if (best := _best(group, now)) is not None}
    lines: list[OfficerLine] = []
    for e in expected:
        user = e.username.casefold()
        if not user:  # no account given: the first officer not yet matched whose certificate bears the name
            name = fold(e.full_name)
            user = next((u for u, r in seen.items() if r.common_name and fold(r.common_name) == name), "")
        row = seen.pop(user, None) if user else None
        if row is None:
            lines.append(
                OfficerLine(
                    commune,
                    "officer",
                    NEVER_SEEN,
                    username=e.username,
                    full_name=e.full_name,
                    position=e.position,
                    expected=True,
                )
            )
        else:
            lines.append(_line(commune, row, now, full_name=e.full_name, position=e.position, expected=True))
    for row in seen.values():
        lines.append(_line(commune, row, now, full_name=row.common_name, expected=False if expected else None))
    best_org = _best(orgs, now)
    org = None if best_org is None else _line(commune, best_org, now, full_name=best_org.common_name)
    return lines, org


def units_view(
    s: Session, now: datetime, *, province: str = "", communes: Collection[str] | None = None
) -> list[UnitCertificates]:
    """Every unit (the two-level units table, plus units of boxes the table lacks), or those of one province
    or of `communes`, with its officers' lines and its organisation certificate: four bulk queries."""
    units = places(s, province=province, communes=communes)
    dev_q = select(Device.device_id, Device.commune_code, Device.roster_at)
    if communes is not None:
        dev_q = dev_q.where(Device.commune_code.in_(list(communes)))
    devices = [d for d in s.execute(dev_q) if not province or d.commune_code in units]
    codes = set(units) | {str(d.commune_code) for d in devices}
    roster_q = select(*RosterRow.__table__.columns, Device.commune_code.label("unit_code")).join(
        Device, Device.device_id == RosterRow.device_id
    )
    exp_q = select(ExpectedOfficer).order_by(ExpectedOfficer.commune_code, ExpectedOfficer.line, ExpectedOfficer.id)
    if province or communes is not None:
        roster_q = roster_q.where(Device.commune_code.in_(sorted(codes)))
        exp_q = exp_q.where(ExpectedOfficer.commune_code.in_(sorted(codes)))
    rosters: dict[str, list[_Seen]] = {}
    for row in s.execute(roster_q):
        rosters.setdefault(str(row.unit_code), []).append(cast(_Seen, row))
    expected: dict[str, list[ExpectedOfficer]] = {}
    for e in s.scalars(exp_q):
        expected.setdefault(e.commune_code, []).append(e)
    if communes is None and not province:
        codes |= set(expected)
    boxes: dict[str, list[str]] = {}
    reported: set[str] = set()
    for d in devices:
        boxes.setdefault(str(d.commune_code), []).append(str(d.device_id))
        if d.roster_at is not None:
            reported.add(str(d.commune_code))
    out: list[UnitCertificates] = []
    for code in codes:
        officers, org = _officers(code, rosters.get(code, []), expected.get(code, []), now)
        out.append(
            UnitCertificates(
                **place_of(units, code).fields(),
                devices=sorted(boxes.get(code, [])),
                reported=code in reported,
                has_list=code in expected,
                officers=officers,
                organisation=org,
            )
        )
    out.sort(key=lambda x: (x.province_name, x.province_code, x.name, x.commune_code))
    return out


# --- alerts ---------------------------------------------------------------------------------------
ORG_ALERT = "organisation_certificate"


def alerts_for(s: Session, device_ids: Collection[str], cert_days: int, now: datetime) -> dict[str, dict[str, str]]:
    """Roster alerts per box (key -> plain Vietnamese): each usable certificate on its roster that expires
    within `cert_days`, and, on each box that sends a roster, its unit having no usable organisation
    certificate on any of the unit's boxes."""
    if not device_ids:
        return {}
    ids = sorted(device_ids)
    boxes = select(Device.device_id, Device.commune_code, Device.roster_at).where(Device.device_id.in_(ids))
    mine = {str(d): str(c) for d, c, at in s.execute(boxes) if at is not None}
    if not mine:
        return {}
    org_ok: set[str] = set()
    out: dict[str, dict[str, str]] = {d: {} for d in mine}
    query = (
        select(RosterRow, Device.commune_code)
        .join(Device, Device.device_id == RosterRow.device_id)
        .where(Device.commune_code.in_(sorted(set(mine.values()))))
    )
    for row, code in s.execute(query):
        not_after = aware(row.not_after)
        v = verdict_now(row.verdict, not_after, now)
        if row.role == "organisation" and v in USABLE:
            org_ok.add(str(code))
        if row.device_id not in out or v not in USABLE or not_after is None:
            continue
        if not_after - now <= timedelta(days=cert_days):
            who = (
                f"tổ chức ({row.common_name or row.subject or '?'})"
                if row.role == "organisation"
                else f"cán bộ {row.common_name or row.username} ({row.username})"
            )
            key = f"certificate:{row.serial or row.username}"[:40]
            out[row.device_id][key] = f"Chứng thư số của {who} hết hạn sau {days_left(not_after, now)} ngày"
    for device, code in mine.items():
        if code not in org_ok:
            out[device][ORG_ALERT] = (
                "Đơn vị chưa có chứng thư số tổ chức dùng được (không thiết bị nào của đơn vị thấy)"
            )
    return out


# --- the expected officers ------------------------------------------------------------------------
class ExpectedFileError(ValueError):
    """An expected-officers file that cannot be loaded: one Vietnamese sentence naming the line."""


@dataclass(frozen=True, slots=True)
class Expected:
    line: int
    commune_code: str
    full_name: str
    username: str = ""
    position: str = ""


_CODE = re.compile(r"^[0-9A-Z.\-]{1,20}$")
COLUMNS = ("commune_code", "full_name", "username", "position")


def read_expected(source: str | Path) -> list[Expected]:
    """The officers of an expected-officers CSV (a path, or its text); ExpectedFileError on the first bad line."""
    try:
        table = read_csv(source)
    except UnicodeDecodeError as err:
        raise ExpectedFileError("Tệp không phải văn bản UTF-8: hãy lưu lại dạng CSV UTF-8.") from err
    if not table.header_line:
        raise ExpectedFileError("Tệp trống: cần dòng tiêu đề commune_code,full_name[,username][,position].")
    header_no, fields = table.header_line, table.columns
    missing = [c for c in ("commune_code", "full_name") if c not in fields]
    if missing:
        raise ExpectedFileError(f"Dòng {header_no}: dòng tiêu đề thiếu cột {', '.join(missing)}.")
    unknown = [f for f in fields if f not in COLUMNS]
    if unknown:
        raise ExpectedFileError(f"Dòng {header_no}: cột không biết {', '.join(unknown)} (chỉ có {', '.join(COLUMNS)}).")
    out: list[Expected] = []
    accounts: dict[tuple[str, str], int] = {}
    names: dict[tuple[str, str], int] = {}
    for line in table.rows:
        n, row = line.line, line.cells
        if line.width > len(fields):
            raise ExpectedFileError(f"Dòng {n}: có {line.width} cột, tiêu đề chỉ có {len(fields)}.")
        code, name, user = row.get("commune_code", ""), row.get("full_name", ""), row.get("username", "")
        if not _CODE.match(code):
            raise ExpectedFileError(f"Dòng {n}: mã đơn vị {code!r} trống hoặc có ký tự ngoài 0-9 A-Z . -.")
        if not name or len(name) > 200:
            raise ExpectedFileError(f"Dòng {n}: thiếu họ tên cán bộ (cột full_name) hoặc dài quá 200 ký tự.")
        if len(user) > 64 or len(row.get("position", "")) > 200:
            raise ExpectedFileError(f"Dòng {n}: tài khoản dài quá 64 ký tự hoặc chức danh dài quá 200 ký tự.")
        if user:
            first = accounts.setdefault((code, user.casefold()), n)
            if first != n:
                raise ExpectedFileError(f"Dòng {n}: tài khoản {user} của đơn vị {code} đã có ở dòng {first}.")
        else:
            first = names.setdefault((code, fold(name)), n)
            if first != n:
                raise ExpectedFileError(
                    f"Dòng {n}: cán bộ {name} của đơn vị {code} đã có ở dòng {first}; "
                    "nếu là hai người trùng tên, hãy ghi tài khoản (cột username) cho từng người."
                )
        out.append(Expected(n, code, name, user, row.get("position", "")))
    return out


def load_expected(factory: sessionmaker[Session], records: Sequence[Expected], *, replace_all: bool = False) -> int:
    """Make `records` the expected officers of the units they name (of every unit with `replace_all`), in
    one transaction; a unit code the units table does not know (when one is loaded) refuses the whole file."""
    codes = {r.commune_code for r in records}
    with factory() as s, s.begin():
        if s.scalar(select(func.count()).select_from(Unit)):
            known = set(s.scalars(select(Unit.commune_code).where(Unit.commune_code.in_(sorted(codes)))))
            bad = next((r for r in records if r.commune_code not in known), None)
            if bad is not None:
                raise ExpectedFileError(
                    f"Dòng {bad.line}: mã đơn vị {bad.commune_code} không có trong danh mục đơn vị (province units)."
                )
        if replace_all:
            s.execute(delete(ExpectedOfficer))
        elif codes:
            s.execute(delete(ExpectedOfficer).where(ExpectedOfficer.commune_code.in_(sorted(codes))))
        s.add_all(
            ExpectedOfficer(
                commune_code=r.commune_code,
                full_name=r.full_name,
                username=r.username,
                position=r.position,
                line=r.line,
            )
            for r in records
        )
    return len(records)
