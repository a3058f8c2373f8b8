"""Decision 766 counters for one local day, sent to the province: :mod:`appliance.indicators` per day
(the same definition as the officers' statistics page, so a month there is the sum of its days here)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy.orm import Session

from appliance import db, indicators
from appliance.settings import Settings
from appliance.telemetry.schema import Counters

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


def counters(settings: Settings, day: date, now: datetime | None = None) -> Counters:
    engine = db.make_engine(settings.db_url)
    try:
        db.upgrade(engine)
        with Session(engine) as s:
            values = count_day(s, day)
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
    )
