"""Administrative units as data: two levels since 01/07/2025 (province -> xã / phường / đặc khu, Decision
19/2025/QĐ-TTg codes), plus the provincial agencies that decide procedures. No district level exists here:
a pre-2025 district survives only as history, in the ``old_parent`` column of the old -> new mapping.

Provincial IT keeps the tables in CSV files (UTF-8, with or without BOM; see
``appliance/data/units/README.md``) and reloads them whenever a unit changes (Đồng Nai became a
centrally-run city on 30/04/2026): :func:`read_units` / :func:`read_mapping` parse and check a file (pure), and
:func:`load` applies it to the box's tables as a new version. The province's dashboard reads the same files
with the same parser (``province units``).

Units CSV, one row per unit (header names matter, order does not)::

    code,name,kind,province_code,province_name[,valid_from][,valid_to]

``code`` is a string (leading zeros kept); ``kind`` one of :data:`KINDS`. The older dashboard form
``commune_code,name,province_code,province_name[,level,kind]`` is read too; ``level`` = ``district`` is refused.

Mapping CSV, one row per old unit (or per part of a split one)::

    old_code,old_name,old_parent,new_code[,valid_to]
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.csvfile import read_csv
from appliance.records import AdminUnit, DocumentInfo, UnitMapping
from appliance.textindex import fold as _fold

REFORM_DAY = date(2025, 7, 1)  # two-level local government (Resolution 202/2025/QH15, Decision 19/2025)

COMMUNE_KINDS = ("xã", "phường", "đặc khu")
PROVINCE_KINDS = ("tỉnh", "thành phố")  # a province, a centrally-run city
AGENCY_KINDS = ("cơ quan cấp tỉnh", "trung tâm phục vụ hành chính công tỉnh", "cơ quan ngành dọc")
KINDS = COMMUNE_KINDS + PROVINCE_KINDS + AGENCY_KINDS
_KIND_ALIASES = {
    "xa": "xã",
    "phuong": "phường",
    "dac khu": "đặc khu",
    "tinh": "tỉnh",
    "thanh pho": "thành phố",
    "so": "cơ quan cấp tỉnh",
    "sở": "cơ quan cấp tỉnh",
    "co quan cap tinh": "cơ quan cấp tỉnh",
    "province_dept": "cơ quan cấp tỉnh",
}
_CODE = re.compile(r"^[0-9A-Za-z.\-]{1,64}$")


class UnitFileError(ValueError):
    """A units or mapping file that cannot be loaded; the message names the line and the problem."""


@dataclass(frozen=True, slots=True)
class UnitRecord:
    code: str
    name: str
    kind: str
    province_code: str
    province_name: str
    valid_from: date | None = None  # None: the version's day
    valid_to: date | None = None

    @property
    def level(self) -> str:
        """ "commune" (xã, phường, đặc khu) or "province" (the province itself and its agencies)."""
        return "commune" if self.kind in COMMUNE_KINDS else "province"


@dataclass(frozen=True, slots=True)
class MappingRecord:
    old_code: str
    old_name: str
    old_parent: str
    new_code: str
    valid_to: date = REFORM_DAY


def _rows(source: str | Path) -> Iterable[tuple[int, dict[str, str]]]:
    """(line in the file, column -> cell) of each record; comment and blank lines are counted, not read."""
    try:
        table = read_csv(source)
    except UnicodeDecodeError as err:
        raise UnitFileError("the file is not UTF-8 text: save it as CSV UTF-8") from err
    return [(row.line, row.cells) for row in table.rows]


def _day(value: str, where: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as err:
        raise UnitFileError(f"{where}: {value!r} is not a date (YYYY-MM-DD)") from err


def _kind(value: str, where: str) -> str:
    kind = value.strip().lower()
    kind = _KIND_ALIASES.get(kind, kind)
    if kind not in KINDS:
        raise UnitFileError(f"{where}: kind {value!r} is not one of {', '.join(KINDS)}")
    return kind


def read_units(source: str | Path) -> list[UnitRecord]:
    """The units of a CSV file (a path, or its text); UnitFileError on the first bad line."""
    out: list[UnitRecord] = []
    seen: set[str] = set()
    for n, row in _rows(source):
        where = f"line {n}"
        code = row.get("code") or row.get("commune_code") or ""
        if not _CODE.match(code):
            raise UnitFileError(f"{where}: code {code!r} is missing or has characters other than 0-9 A-Z . -")
        if code in seen:
            raise UnitFileError(f"{where}: code {code} appears twice")
        seen.add(code)
        level = row.get("level", "")
        if level in ("district", "huyện", "huyen"):
            raise UnitFileError(
                f"{where}: level {level!r}: there is no district level since 01/07/2025; put old districts and "
                "communes in the mapping file (old_parent) instead"
            )
        kind = _kind(row.get("kind") or ("cơ quan cấp tỉnh" if level == "province_dept" else "xã"), where)
        if not row.get("name") or not row.get("province_code") or not row.get("province_name"):
            raise UnitFileError(f"{where}: name, province_code and province_name are required")
        out.append(
            UnitRecord(
                code=code,
                name=row["name"],
                kind=kind,
                province_code=row["province_code"],
                province_name=row["province_name"],
                valid_from=_day(row.get("valid_from", ""), where),
                valid_to=_day(row.get("valid_to", ""), where),
            )
        )
    return out


def read_mapping(source: str | Path) -> list[MappingRecord]:
    out: list[MappingRecord] = []
    for n, row in _rows(source):
        where = f"line {n}"
        old, new = row.get("old_code", ""), row.get("new_code", "")
        if not _CODE.match(old) or not _CODE.match(new):
            raise UnitFileError(f"{where}: old_code and new_code are required (0-9 A-Z . -)")
        out.append(
            MappingRecord(
                old_code=old,
                old_name=row.get("old_name", ""),
                old_parent=row.get("old_parent", ""),
                new_code=new,
                valid_to=_day(row.get("valid_to", ""), where) or REFORM_DAY,
            )
        )
    return out


# --- the box's tables ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LoadResult:
    added: int  # new units, and units whose name/kind/province changed (a new period)
    closed: int  # units no longer in the file, for the provinces the file covers
    unchanged: int
    mappings: int


def load(
    session: Session,
    units: Sequence[UnitRecord],
    *,
    version: str,
    effective: date,
    mappings: Sequence[MappingRecord] = (),
    source: str = "",
) -> LoadResult:
    """Apply a units file as a new version, effective on `effective` (a row's own valid_from wins): a unit
    that changed gets a new period and its current one is closed; a unit of a province the file covers that
    is not in the file is closed; the same file loaded twice changes nothing. Mappings of the file replace
    the mappings with the same old codes."""
    provinces = {u.province_code for u in units}
    current = {
        row.code: row
        for row in session.scalars(
            select(AdminUnit).where(AdminUnit.valid_to.is_(None), AdminUnit.province_code.in_(provinces))
        )
    }
    added = unchanged = closed = 0
    for unit in units:
        start = (unit.valid_from or effective).isoformat()
        row = current.pop(unit.code, None)
        if row is not None and (row.name, row.kind, row.province_code, row.province_name) == (
            unit.name,
            unit.kind,
            unit.province_code,
            unit.province_name,
        ):
            unchanged += 1
            if unit.valid_to is not None:
                row.valid_to = unit.valid_to.isoformat()
            continue
        if row is not None:
            row.valid_to = max(start, row.valid_from)
        session.add(
            AdminUnit(
                code=unit.code,
                name=unit.name,
                kind=unit.kind,
                province_code=unit.province_code,
                province_name=unit.province_name,
                valid_from=start,
                valid_to=unit.valid_to.isoformat() if unit.valid_to else None,
                version=version,
                source=source[:500],
            )
        )
        added += 1
    for row in current.values():  # gone from the province's list
        row.valid_to = max(effective.isoformat(), row.valid_from)
        closed += 1
    if mappings:
        olds = {m.old_code for m in mappings}
        for old in session.scalars(select(UnitMapping).where(UnitMapping.old_code.in_(olds))):
            session.delete(old)
        session.flush()
        session.add_all(
            UnitMapping(
                old_code=m.old_code,
                old_name=m.old_name,
                old_parent=m.old_parent,
                new_code=m.new_code,
                valid_to=m.valid_to.isoformat(),
                version=version,
            )
            for m in mappings
        )
    session.flush()
    return LoadResult(added, closed, unchanged, len(mappings))


def on(session: Session, code: str, day: date | None = None) -> AdminUnit | None:
    """The unit with `code` as it was on `day` (today when None)."""
    when = (day or date.today()).isoformat()
    return session.scalar(
        select(AdminUnit)
        .where(
            AdminUnit.code == code,
            AdminUnit.valid_from <= when,
            (AdminUnit.valid_to.is_(None)) | (AdminUnit.valid_to > when),
        )
        .order_by(AdminUnit.valid_from.desc())
        .limit(1)
    )


def current_units(session: Session, *, province_code: str | None = None) -> list[AdminUnit]:
    """Today's units, provincial agencies first, then communes by name."""
    today = date.today().isoformat()
    query = select(AdminUnit).where(
        AdminUnit.valid_from <= today, (AdminUnit.valid_to.is_(None)) | (AdminUnit.valid_to > today)
    )
    if province_code:
        query = query.where(AdminUnit.province_code == province_code)
    rows = list(session.scalars(query))
    return sorted(rows, key=lambda u: (u.kind in COMMUNE_KINDS, u.name))


@dataclass(frozen=True, slots=True)
class UnitNow:
    """An old paper's unit, as printed, and the unit(s) it is part of today."""

    printed: str
    today: tuple[AdminUnit, ...]

    @property
    def codes(self) -> str:
        return ",".join(u.code for u in self.today)


def today_for(session: Session, printed: str, *, day: date | None = None) -> UnitNow:
    """Today's unit(s) for a unit printed on an old document, by its old code or its exact old name
    (the mapping's old_name, or "old_name, old_parent"); a unit still valid maps to itself."""
    text = printed.strip()
    current = on(session, text, day)
    if current is not None:
        return UnitNow(text, (current,))
    rows = list(session.scalars(select(UnitMapping).where(UnitMapping.old_code == text)))
    if not rows:
        wanted = _fold(text)
        rows = [
            m
            for m in session.scalars(select(UnitMapping))
            if wanted in (_fold(m.old_name), _fold(f"{m.old_name}, {m.old_parent}"))
        ]
    found: list[AdminUnit] = []
    for m in rows:
        unit = on(session, m.new_code, day)
        if unit is not None and unit not in found:
            found.append(unit)
    return UnitNow(text, tuple(found))


def record_printed_unit(session: Session, *, document_id: str, printed: str) -> UnitNow:
    """Keep the unit printed on an old result beside today's unit (documents' printed_unit/current_unit)."""
    info = session.get(DocumentInfo, document_id) or DocumentInfo(document_id=document_id)
    found = today_for(session, printed)
    info.printed_unit = found.printed[:300]
    info.current_unit = found.codes[:64] or None
    session.add(info)
    return found


def names(session: Session, codes: Iterable[str]) -> Mapping[str, str]:
    """code -> today's name, for the codes known (lists and statistics show names, not codes)."""
    wanted = {c for c in codes if c}
    if not wanted:
        return {}
    today = date.today().isoformat()
    rows = session.execute(
        select(AdminUnit.code, AdminUnit.name, AdminUnit.kind)
        .where(AdminUnit.code.in_(wanted), AdminUnit.valid_from <= today)
        .where((AdminUnit.valid_to.is_(None)) | (AdminUnit.valid_to > today))
    ).all()
    return {code: _label(name, kind) for code, name, kind in rows}


def label(unit: AdminUnit) -> str:
    """ "phường Đồng Hới", "Sở Tư pháp": what a list shows."""
    return _label(unit.name, unit.kind)


def _label(name: str, kind: str) -> str:
    return (
        f"{kind} {name}" if kind in COMMUNE_KINDS + PROVINCE_KINDS and not _fold(name).startswith(_fold(kind)) else name
    )
