"""The Decision 766 indicators: one definition, used by the statistics page, its CSV and telemetry.

Everything about received dossiers is counted in the cohort of the day the dossier was opened at the
counter, so a month is exactly the sum of its days and the commune's page and the province's dashboard
(which adds up the daily counters) agree:

- received: dossiers opened at the counter (backlog work excluded);
- components_digitized: of those, dossiers with at least one digitized component (a document of kind
  component, or not yet classified, that is digitized or later);
- results_electronic: of those, distinct result codes of results signed and sent (queued or delivered;
  a correction keeps its predecessor's code, so it is not counted twice);
- reused: of those, dossiers that reused an already digitized document instead of scanning it again;
- backlog_digitized: old results digitized under the backlog plan, counted on the day they were captured
  (corrections excluded).

A result signed today for a dossier opened last week changes last week's figures; telemetry therefore
resends the recent days' counters daily.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from appliance import workflow
from appliance.db import Document
from appliance.domain import VN_TZ
from appliance.records import DocumentInfo, Dossier, Kind, Reuse

LOCAL = VN_TZ


@dataclass(frozen=True, slots=True)
class Indicators:
    received: int
    components_digitized: int
    results_electronic: int
    reused: int
    backlog_digitized: int

    @property
    def digitized_rate(self) -> float | None:
        return rate(self.components_digitized, self.received)

    @property
    def results_rate(self) -> float | None:
        return rate(self.results_electronic, self.received)


def rate(part: int, received: int) -> float | None:
    """`part` as a percentage of the dossiers received, to one decimal; None when none were received."""
    return round(100.0 * part / received, 1) if received else None


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), LOCAL).astimezone(UTC)
    return start, start + timedelta(days=1)


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """'2026-05' -> [first local midnight of May, first of June)."""
    year, mon = (int(x) for x in month.split("-"))
    start = datetime(year, mon, 1, tzinfo=LOCAL)
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=LOCAL)
    return start.astimezone(UTC), end.astimezone(UTC)


def local_day(when: datetime) -> date:
    return when.astimezone(LOCAL).date()


def count(session: Session, start: datetime, end: datetime, *, where: Sequence[ColumnElement[bool]] = ()) -> Indicators:
    """The indicators for dossiers (and backlog documents) created in [start, end); `where` narrows the
    dossiers (one receiving centre, one deciding agency), and then backlog work, which has no dossier, is 0."""
    cohort = (Dossier.backlog.is_(False), Dossier.created_at >= start, Dossier.created_at < end, *where)
    received = session.scalar(select(func.count()).select_from(Dossier).where(*cohort))
    digitized = session.scalar(
        select(func.count(func.distinct(Dossier.code)))
        .select_from(Dossier)
        .join(Document, Document.dossier_code == Dossier.code)
        .outerjoin(DocumentInfo, DocumentInfo.document_id == Document.id)
        .where(
            *cohort,
            Document.state.in_(list(workflow.DIGITIZED_OR_LATER)),
            DocumentInfo.kind.is_(None) | (DocumentInfo.kind == Kind.COMPONENT),
        )
    )
    results = session.scalar(
        select(func.count(func.distinct(DocumentInfo.result_code)))
        .select_from(Dossier)
        .join(Document, Document.dossier_code == Dossier.code)
        .join(DocumentInfo, DocumentInfo.document_id == Document.id)
        .where(
            *cohort,
            DocumentInfo.kind == Kind.RESULT,
            DocumentInfo.result_code.is_not(None),
            Document.state.in_(list(workflow.SENT_OR_LATER)),
        )
    )
    reused = session.scalar(
        select(func.count(func.distinct(Dossier.code)))
        .select_from(Dossier)
        .join(Reuse, Reuse.dossier_code == Dossier.code)
        .where(*cohort)
    )
    backlog = session.scalar(
        select(func.count())
        .select_from(DocumentInfo)
        .join(Document, Document.id == DocumentInfo.document_id)
        .where(
            DocumentInfo.backlog.is_(True),
            Document.state.in_(list(workflow.DIGITIZED_OR_LATER)),
            Document.supersedes_id.is_(None),
            Document.created_at >= start,
            Document.created_at < end,
        )
    )
    if where:
        backlog = 0
    return Indicators(int(received or 0), int(digitized or 0), int(results or 0), int(reused or 0), int(backlog or 0))


GROUPS = ("receiving_unit", "deciding_agency")


def group_key(by: str, *, home: str) -> ColumnElement[str]:
    """The unit a dossier counts for: where it was received (Decree 118/2025: any centre of the province),
    or the agency that decides it; dossiers opened before both were recorded count for `home` (this box's
    commune)."""
    if by == "receiving_unit":
        return func.coalesce(Dossier.receiving_unit, home)
    if by == "deciding_agency":
        return func.coalesce(Dossier.deciding_agency, Dossier.receiving_unit, home)
    raise ValueError(f"group by {by!r}: one of {GROUPS}")


def count_by(session: Session, start: datetime, end: datetime, *, by: str, home: str) -> dict[str, Indicators]:
    """The indicators of [start, end) per receiving centre or per deciding agency (the codes that have
    dossiers in the period); their `received` add up to the whole's."""
    key = group_key(by, home=home)
    codes = session.scalars(
        select(key)
        .where(Dossier.backlog.is_(False), Dossier.created_at >= start, Dossier.created_at < end)
        .group_by(key)
    ).all()
    return {str(code): count(session, start, end, where=(key == code,)) for code in sorted(codes)}


def for_day(session: Session, day: date) -> Indicators:
    return count(session, *day_bounds(day))


def months(session: Session, *, now: datetime | None = None, last: int = 24) -> list[tuple[str, Indicators]]:
    """The last ``last`` months that have any activity, and the current one; newest first."""
    current = local_day(now or datetime.now(UTC))
    stamps: Sequence[datetime] = [
        *session.scalars(select(Dossier.created_at).where(Dossier.backlog.is_(False))),
        *session.scalars(
            select(Document.created_at)
            .join(DocumentInfo, DocumentInfo.document_id == Document.id)
            .where(DocumentInfo.backlog.is_(True))
        ),
    ]
    seen = {f"{local_day(_aware(s)):%Y-%m}" for s in stamps} | {f"{current:%Y-%m}"}
    chosen = sorted(seen, reverse=True)[:last]
    return [(m, count(session, *month_bounds(m))) for m in chosen]


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
