"""Decision 766 counters for one local day, from the appliance database (documents + web tables).

Same definitions as the officers' statistics page (appliance.web.routes.archive.monthly), per day:
dossiers received at the counter, of those the ones with a digitized component, results issued
electronically (a result with a result code, signed and queued or sent), old results digitized under the
backlog plan, and reuse: dossiers received that day that reused an already digitized document
(web_reuses) instead of scanning it again.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from appliance import db
from appliance.settings import Settings
from appliance.telemetry.schema import Counters

LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")
DONE = (db.DocState.ASSEMBLED, db.DocState.SIGNED, db.DocState.QUEUED, db.DocState.SENT, db.DocState.ACKED)
SENT = (db.DocState.QUEUED, db.DocState.SENT, db.DocState.ACKED)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), LOCAL).astimezone(UTC)
    return start, start + timedelta(days=1)


def count_day(session: Session, day: date) -> dict[str, int]:
    from appliance.web.models import DocumentInfo, Dossier, Kind, Reuse

    start, end = day_bounds(day)
    received = (
        Dossier.backlog.is_(False),
        Dossier.created_at >= start,
        Dossier.created_at < end,
    )
    n_received = session.scalar(select(func.count()).select_from(Dossier).where(*received)) or 0
    digitized = session.scalar(
        select(func.count(func.distinct(Dossier.code)))
        .select_from(Dossier)
        .join(db.Document, db.Document.dossier_code == Dossier.code)
        .outerjoin(DocumentInfo, DocumentInfo.document_id == db.Document.id)
        .where(
            *received,
            db.Document.state.in_(list(DONE)),
            (DocumentInfo.kind.is_(None)) | (DocumentInfo.kind == Kind.COMPONENT),
        )
    )
    results = session.scalar(
        select(func.count())
        .select_from(DocumentInfo)
        .join(db.Document, db.Document.id == DocumentInfo.document_id)
        .where(
            DocumentInfo.kind == Kind.RESULT,
            DocumentInfo.result_code.is_not(None),
            db.Document.state.in_(list(SENT)),
            and_(DocumentInfo.signed_at >= start, DocumentInfo.signed_at < end),
        )
    )
    backlog = session.scalar(
        select(func.count())
        .select_from(DocumentInfo)
        .join(db.Document, db.Document.id == DocumentInfo.document_id)
        .where(
            DocumentInfo.backlog.is_(True),
            db.Document.state.in_(list(DONE)),
            db.Document.created_at >= start,
            db.Document.created_at < end,
        )
    )
    reused = session.scalar(
        select(func.count(func.distinct(Dossier.code)))
        .select_from(Dossier)
        .join(Reuse, Reuse.dossier_code == Dossier.code)
        .where(*received)
    )
    return {
        "dossiers_received": int(n_received),
        "components_digitized": int(digitized or 0),
        "results_electronic": int(results or 0),
        "reused": int(reused or 0),
        "backlog_digitized": int(backlog or 0),
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


def local_day(when: datetime) -> date:
    return when.astimezone(LOCAL).date()
