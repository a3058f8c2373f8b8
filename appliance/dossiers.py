"""Dossiers (hồ sơ): opened at the counter from a typed form or a one-stop receipt's QR code, and the
lists the counter works from. :func:`open_dossier` is the only writer of a dossier row."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from appliance import audit, domain, qr
from appliance.db import Document, Page
from appliance.errors import FormInvalid, NotFound
from appliance.messages_vi import MESSAGES_VI
from appliance.model import RawPage
from appliance.records import Campaign, DocumentInfo, Dossier
from appliance.workflow import Actor

FORM_FIELDS = ("code", "tthc_code", "owner_id", "owner_name", "title", "appointment", "deciding_agency")
_AGENCY = re.compile(r"^[0-9A-Za-z.\-]{1,64}$")


def check_form(form: Mapping[str, str], *, patterns: Sequence[str] = ()) -> tuple[dict[str, str], dict[str, str]]:
    """(cleaned values, errors per field) for the open-dossier form; never raises. `patterns`: the
    province's extra dossier-code forms (Settings.dossier_code_patterns)."""
    errors: dict[str, str] = {}
    clean = {k: str(form.get(k, "") or "").strip() for k in FORM_FIELDS}
    check = domain.check_dossier_code(clean["code"], patterns=patterns)
    if not clean["code"]:
        errors["code"] = "Hãy nhập mã hồ sơ (ví dụ 000.00.19.H12-230412-0007 hoặc H44.123.45-260301-120001)."
    elif not check.ok:
        errors["code"] = " ".join(x for x in (MESSAGES_VI[check.problem or "invalid_dossier_code"], check.reason) if x)
    clean["code"] = check.value if check.ok else clean["code"]
    if clean["deciding_agency"] and not _AGENCY.match(clean["deciding_agency"]):
        errors["deciding_agency"] = (
            "Mã cơ quan giải quyết chỉ gồm chữ số, chữ cái, dấu chấm và dấu gạch ngang (mã xã, phường hoặc mã cơ quan)."
        )
    if clean["tthc_code"]:
        tthc = domain.check_tthc_code(clean["tthc_code"])
        if tthc.ok:
            clean["tthc_code"] = tthc.value
        else:
            errors["tthc_code"] = MESSAGES_VI[tthc.problem or "invalid_tthc_code"]
    if clean["owner_id"]:
        pid = domain.check_personal_id(clean["owner_id"])
        ent = domain.check_enterprise_code(clean["owner_id"])
        if pid.ok:
            clean["owner_id"] = pid.value
        elif ent.ok:
            clean["owner_id"] = ent.value
        else:
            errors["owner_id"] = MESSAGES_VI[pid.problem or "invalid_personal_id"]
    if clean["appointment"] and not domain.check_date(clean["appointment"]).ok:
        errors["appointment"] = MESSAGES_VI["invalid_date"]
    return clean, errors


def open_dossier(
    session: Session,
    *,
    actor: Actor,
    form: Mapping[str, str],
    receiving_unit: str | None = None,
    patterns: Sequence[str] = (),
) -> Dossier:
    """Open (or, when it exists, simply return) the dossier; FormInvalid with per-field sentences.

    `receiving_unit`: this centre (the box's commune code); the form's `deciding_agency` names the agency or
    commune that decides and whose warehouse stores the result (Decree 118/2025), by default the receiving one."""
    clean, errors = check_form(form, patterns=patterns)
    if errors:
        raise FormInvalid(errors)
    existing = session.get(Dossier, clean["code"])
    if existing is not None:  # opening twice just opens it
        return existing
    dossier = Dossier(
        code=clean["code"],
        tthc_code=clean["tthc_code"] or None,
        owner_id=clean["owner_id"] or None,
        owner_name=clean["owner_name"] or None,
        title=clean["title"] or None,
        appointment=clean["appointment"] or None,
        backlog=False,
        created_by=actor.username,
        receiving_unit=receiving_unit or None,
        deciding_agency=clean["deciding_agency"] or receiving_unit or None,
    )
    session.add(dossier)
    session.flush()
    audit.record(
        session,
        actor=actor.username,
        action="open_dossier",
        dossier_code=dossier.code,
        detail={k: v for k, v in clean.items() if v and k != "code"},
    )
    return dossier


def deciding_agency(dossier: Dossier, *, home: str) -> str:
    """Whose warehouse stores this dossier's results: the recorded deciding agency, else where it was
    received, else this box's commune `home` (dossiers opened before the two fields existed)."""
    return dossier.deciding_agency or dossier.receiving_unit or home


def set_deciding_agency(session: Session, *, actor: Actor, code: str, agency: str) -> Dossier:
    """Change the deciding agency of an open dossier (results already packaged keep theirs)."""
    dossier = get(session, code)
    value = agency.strip()
    if not _AGENCY.match(value):
        raise FormInvalid({"deciding_agency": "Mã cơ quan giải quyết không hợp lệ."})
    old = dossier.deciding_agency
    if old != value:
        dossier.deciding_agency = value
        audit.record(
            session,
            actor=actor.username,
            action="deciding_agency",
            dossier_code=dossier.code,
            detail={"old": old, "new": value},
        )
    return dossier


def get(session: Session, code: str) -> Dossier:
    value = domain.check_dossier_code(code).value  # normalised even when not a built-in form (custom patterns)
    dossier = session.get(Dossier, value) if value else None
    if dossier is None:
        raise NotFound(f"dossier {code!r} not found")
    return dossier


def _date_text(value: str) -> str:
    m = re.match(r"^(\d{4})-(\d{2})-(\d{2})", value)
    return f"{m.group(3)}/{m.group(2)}/{m.group(1)}" if m else value


def receipt_form(pages: list[RawPage], *, max_pages: int = 3) -> dict[str, str]:
    """The open-dossier form filled from the one-stop receipt's QR code ({} when no receipt QR is found)."""
    found: dict[str, str] = {}
    for page in pages[:max_pages]:
        for code in qr.find_qr(page.image):
            for key, value in qr.parse_receipt(code.text).items():
                found.setdefault(key, value)
    if not found:
        return {}
    return {
        "code": found.get("ma_ho_so", ""),
        "tthc_code": found.get("ma_tthc", ""),
        "owner_id": found.get("so_dinh_danh", ""),
        "owner_name": found.get("chu_ho_so", found.get("ho_ten", "")),
        "title": found.get("ten_giay_to", ""),
        "appointment": _date_text(found.get("ngay_hen_tra", "")),
        "deciding_agency": found.get("co_quan_giai_quyet", ""),
    }


# --- lists -------------------------------------------------------------------------------------------
_TODAY = (
    select(Dossier.code, Dossier.owner_name, Dossier.tthc_code, Dossier.appointment)
    .where(Dossier.created_at >= bindparam("since"), Dossier.backlog.is_(False))
    .order_by(Dossier.created_at.desc())
    .limit(100)
)


def recent(session: Session, *, hours: int = 24) -> list[Any]:
    """The last day's dossiers: only the shown columns (rows with .code, .owner_name, ...)."""
    return list(session.execute(_TODAY, {"since": datetime.now(UTC) - timedelta(hours=hours)}).all())


@dataclass(frozen=True, slots=True)
class ListedPage:
    index: int
    flags: list[str]


@dataclass(frozen=True, slots=True)
class ListedDocument:
    """What a dossier's (or the backlog's) document list shows of one document."""

    id: str
    created_at: datetime
    page_count: int
    state: str
    pages: list[ListedPage]
    version: int = 1
    superseded_by: str | None = None
    kind: str | None = None
    fields: dict[str, Any] | None = None
    reviewed_by: str | None = None


def documents(
    session: Session, *, dossier_code: str | None, backlog: bool = False, limit: int = 200
) -> list[ListedDocument]:
    """Newest first: two queries (documents, then all their pages), only the shown columns."""
    stmt = select(
        Document.id,
        Document.created_at,
        Document.page_count,
        Document.state,
        Document.version,
        Document.superseded_by,
        DocumentInfo.kind,
        DocumentInfo.fields,
        DocumentInfo.reviewed_by,
    ).outerjoin(DocumentInfo, DocumentInfo.document_id == Document.id)
    wanted = (
        DocumentInfo.backlog.is_(True) if backlog or dossier_code is None else Document.dossier_code == dossier_code
    )
    rows = session.execute(stmt.where(wanted).order_by(Document.created_at.desc()).limit(limit)).all()
    pages: dict[str, list[ListedPage]] = {row[0]: [] for row in rows}
    if pages:
        for doc_id, index, flags in session.execute(
            select(Page.document_id, Page.index, Page.flags)
            .where(Page.document_id.in_(list(pages)))
            .order_by(Page.document_id, Page.index)
        ):
            pages[doc_id].append(ListedPage(index, list(flags or [])))
    return [
        ListedDocument(
            doc_id,
            created_at,
            count,
            state,
            pages[doc_id],
            version or 1,
            superseded,
            kind,
            dict(fields or {}),
            reviewer,
        )
        for doc_id, created_at, count, state, version, superseded, kind, fields, reviewer in rows
    ]


# --- backlog plans -------------------------------------------------------------------------------
def backlog_progress(session: Session, *, year: int) -> tuple[Campaign | None, int]:
    """This year's plan and how many old results were digitized under it."""
    start = datetime(year, 1, 1, tzinfo=UTC)
    done = session.scalar(
        select(func.count())
        .select_from(DocumentInfo)
        .join(Document, Document.id == DocumentInfo.document_id)
        .where(DocumentInfo.backlog.is_(True), Document.created_at >= start, Document.superseded_by.is_(None))
    )
    return session.get(Campaign, year), int(done or 0)


def set_plan(session: Session, *, actor: Actor, year: int, target: int, note: str) -> Campaign:
    campaign = session.get(Campaign, year)
    if campaign is None:
        campaign = Campaign(year=year, target=target, note=note.strip(), updated_by=actor.username)
        session.add(campaign)
    else:
        campaign.target, campaign.note, campaign.updated_by = target, note.strip(), actor.username
    return campaign
