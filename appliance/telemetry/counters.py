"""Decision 766 counters for one local day, sent to the province: :mod:`appliance.indicators` per day
(the same definition as the officers' statistics page, so a month there is the sum of its days here), the
whole day and the day per deciding agency (`indicators.count_by`, Decree 118/2025). The receiving centre is
the box's own unit, so the province has the per-centre figures from the whole day's counters."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy.orm import Session

from appliance import db, indicators
from appliance.settings import Settings
from appliance.telemetry.schema import MAX_AGENCIES, OTHER_AGENCIES, AgencyCounts, Counters

LOCAL = indicators.LOCAL
day_bounds = indicators.day_bounds
local_day = indicators.local_day


def count_day(session: Session, day: date) -> dict[str, int]:
    figures = indicators.for_day(session, day)
    return {
        "dossiers_received": figures.received,
        "components_digitized": figures.components_digitized,
        "results_electronic": figures.results_electronic,
        "reused": figures.reused,
        "backlog_digitized": figures.backlog_digitized,
    }


def count_day_by_agency(session: Session, day: date, *, home: str) -> list[AgencyCounts]:
    """The day's dossiers per deciding agency, largest first; beyond MAX_AGENCIES the smallest are added up
    under OTHER_AGENCIES (the groups share no dossier, so their sums stay exact)."""
    groups = indicators.count_by(session, *day_bounds(day), by="deciding_agency", home=home)
    ranked = sorted(groups.items(), key=lambda kv: (-kv[1].received, kv[0]))
    rows = [
        AgencyCounts(
            agency=(code or OTHER_AGENCIES)[:64],
            dossiers_received=f.received,
            components_digitized=f.components_digitized,
            results_electronic=f.results_electronic,
            reused=f.reused,
        )
        for code, f in ranked
    ]
    if len(rows) <= MAX_AGENCIES:
        return rows
    kept, rest = rows[: MAX_AGENCIES - 1], rows[MAX_AGENCIES - 1 :]
    other = AgencyCounts(
        agency=OTHER_AGENCIES,
        dossiers_received=sum(r.dossiers_received for r in rest),
        components_digitized=sum(r.components_digitized for r in rest),
        results_electronic=sum(r.results_electronic for r in rest),
        reused=sum(r.reused for r in rest),
    )
    return [*kept, other]


def counters(settings: Settings, day: date, now: datetime | None = None) -> Counters:
    engine = db.make_engine(settings.db_url)
    try:
        db.upgrade(engine)
        with Session(engine) as s:
            values = count_day(s, day)
            split = count_day_by_agency(s, day, home=settings.commune_code)
    finally:
        engine.dispose()
    return Counters(
        device_id=settings.device_id,
        commune_code=settings.commune_code,
        day=day.isoformat(),
        at=now or datetime.now(UTC),
        dossiers_received=values["dossiers_received"],
        components_digitized=values["components_digitized"],
        results_electronic=values["results_electronic"],
        reused=values["reused"],
        backlog_digitized=values["backlog_digitized"],
        by_deciding_agency=split,
    )
