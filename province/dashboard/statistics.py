"""Decision 766 statistics across all boxes: per receiving centre (each box's daily counters, `tm_counters`)
and per deciding agency (the same days split by the agency that decides the dossier, `tm_agency_counters`,
Decree 118/2025). Only sums of what the boxes counted with `appliance.indicators`: no second definition.

A period is a range of local days ("YYYY-MM-DD" strings compare in order). Days a box sent without the
split (software before it) cannot be given an agency: their dossiers are shown as one "not split" line, so
both tables add up to the same total.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session

from appliance.indicators import rate
from appliance.telemetry.schema import OTHER_AGENCIES
from province.dashboard.units import in_province, places
from province.telemetry_db import AgencyDayCounters, DayCounters

NOT_SPLIT = ""  # the line of dossiers from days sent without the per-agency split
LABELS = {
    OTHER_AGENCIES: "Các cơ quan khác (gộp trên thiết bị)",
    NOT_SPLIT: "Chưa phân theo cơ quan (phần mềm thiết bị cũ)",
}
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclass(frozen=True, slots=True)
class Period:
    first: date
    last: date  # inclusive
    label: str

    @property
    def bounds(self) -> tuple[str, str]:
        return self.first.isoformat(), self.last.isoformat()


def period(month: str, *, today: date, days: int) -> Period:
    """A calendar month ("2026-05"), or the last `days` days up to today when `month` is empty or malformed."""
    m = _MONTH.match(month.strip())
    if m is None:
        first = today - timedelta(days=days)
        return Period(first, today, f"{days} ngày gần nhất")
    year, mon = int(m.group(1)), int(m.group(2))
    first = date(year, mon, 1)
    last = date(year + (mon == 12), mon % 12 + 1, 1) - timedelta(days=1)
    return Period(first, last, f"tháng {mon:02d}/{year}")


@dataclass(frozen=True, slots=True)
class Line:
    code: str
    name: str
    received: int
    digitized: int
    results: int
    reused: int
    boxes: int  # boxes whose dossiers are in the line

    @property
    def digitized_pct(self) -> float | None:
        return rate(self.digitized, self.received)

    @property
    def results_pct(self) -> float | None:
        return rate(self.results, self.received)


def _line(code: str, name: str, sums: Sequence[Any]) -> Line:
    received, digitized, results, reused, boxes = (int(v or 0) for v in sums)
    return Line(code, name, received, digitized, results, reused, boxes)


def _names(s: Session, codes: set[str]) -> dict[str, str]:
    return {code: place.title for code, place in places(s, communes=codes).items()} if codes else {}


def per_centre(s: Session, p: Period, *, province: str = "") -> list[Line]:
    """Each receiving centre's days added up (a centre with several boxes is one line), most dossiers first."""
    first, last = p.bounds
    query = (
        select(
            DayCounters.commune_code,
            func.sum(DayCounters.dossiers_received),
            func.sum(DayCounters.components_digitized),
            func.sum(DayCounters.results_electronic),
            func.sum(DayCounters.reused),
            func.count(func.distinct(DayCounters.device_id)),
        )
        .where(DayCounters.day >= first, DayCounters.day <= last)
        .group_by(DayCounters.commune_code)
    )
    if province:
        query = query.where(DayCounters.commune_code.in_(in_province(province)))
    rows = [(str(c), sums) for c, *sums in s.execute(query)]
    names = _names(s, {c for c, _ in rows})
    lines = [_line(c, names.get(c, c), sums) for c, sums in rows]
    return sorted(lines, key=lambda ln: (-ln.received, ln.name))


def per_agency(s: Session, p: Period, *, province: str = "") -> list[Line]:
    """Each deciding agency's share across all boxes (whatever centre received the dossier), most dossiers
    first; then the dossiers of days sent without the split, as one line."""
    first, last = p.bounds
    in_period = (AgencyDayCounters.day >= first, AgencyDayCounters.day <= last)
    query = (
        select(
            AgencyDayCounters.agency,
            func.sum(AgencyDayCounters.dossiers_received),
            func.sum(AgencyDayCounters.components_digitized),
            func.sum(AgencyDayCounters.results_electronic),
            func.sum(AgencyDayCounters.reused),
            func.count(func.distinct(AgencyDayCounters.device_id)),
        )
        .where(*in_period)
        .group_by(AgencyDayCounters.agency)
    )
    split = exists().where(
        and_(AgencyDayCounters.device_id == DayCounters.device_id, AgencyDayCounters.day == DayCounters.day)
    )
    unsplit = select(
        func.sum(DayCounters.dossiers_received),
        func.sum(DayCounters.components_digitized),
        func.sum(DayCounters.results_electronic),
        func.sum(DayCounters.reused),
        func.count(func.distinct(DayCounters.device_id)),
    ).where(DayCounters.day >= first, DayCounters.day <= last, ~split)
    if province:
        centres = in_province(province)
        query = query.where(AgencyDayCounters.commune_code.in_(centres))
        unsplit = unsplit.where(DayCounters.commune_code.in_(centres))
    rows = [(str(a), sums) for a, *sums in s.execute(query)]
    names = _names(s, {a for a, _ in rows})
    lines = sorted(
        (_line(a, LABELS.get(a) or names.get(a, a), sums) for a, sums in rows),
        key=lambda ln: (ln.code == OTHER_AGENCIES, -ln.received, ln.name),
    )
    rest = s.execute(unsplit).one()
    if int(rest[0] or 0):
        lines.append(_line(NOT_SPLIT, LABELS[NOT_SPLIT], tuple(rest)))
    return lines


def total(lines: list[Line]) -> Line:
    return Line(
        "",
        "Tổng",
        sum(ln.received for ln in lines),
        sum(ln.digitized for ln in lines),
        sum(ln.results for ln in lines),
        sum(ln.reused for ln in lines),
        0,
    )
