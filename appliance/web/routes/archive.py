"""Search of the local archive, backlog campaigns and the commune's monthly statistics (CSV too)."""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, select

from appliance import db
from appliance.web.app import Ctx
from appliance.web.models import Campaign, DocumentInfo, Dossier, Kind, Reuse
from appliance.web.routes.common import Checked, CheckedSupervisor, Officer, ctx_of, render, see_other
from appliance.web.search import search as run_search

router = APIRouter()
DONE_STATES = (db.DocState.ASSEMBLED, db.DocState.SIGNED, db.DocState.QUEUED, db.DocState.SENT, db.DocState.ACKED)
SENT_STATES = (db.DocState.QUEUED, db.DocState.SENT, db.DocState.ACKED)


@router.get("/search", response_class=HTMLResponse)
def search(request: Request, who: Officer, q: str = "", dossier: str = "") -> HTMLResponse:
    """Search the archive; with ``dossier``, each digitized hit can be reused in that dossier."""
    from appliance import domain

    ctx = ctx_of(request)
    query = q.strip()[:200]
    hits = []
    target = None
    with ctx.tx() as session:
        if dossier:
            check = domain.check_dossier_code(dossier[:100])
            target = session.get(Dossier, check.value) if check.ok else None
        if query:
            hits = run_search(session, query=query)
    reusable = {s.value for s in DONE_STATES}
    return render(request, "search.html", q=query, hits=hits, target=target, reusable=reusable)


# --- backlog -----------------------------------------------------------------------------------
def _year() -> int:
    return datetime.now(UTC).year


def backlog_page(request: Request, ctx: Ctx, *, error: str | None = None, status_code: int = 200) -> HTMLResponse:
    from appliance.web.routes.work import _documents, scanner_info

    year = _year()
    start = datetime(year, 1, 1, tzinfo=UTC)
    with ctx.tx() as session:
        campaign = session.get(Campaign, year)
        done = session.scalar(
            select(func.count())
            .select_from(DocumentInfo)
            .join(db.Document, db.Document.id == DocumentInfo.document_id)
            .where(DocumentInfo.backlog.is_(True), db.Document.created_at >= start)
        )
    presets, scanner_problem = scanner_info(request).get(ctx)
    target = campaign.target if campaign else 0
    return render(
        request,
        "backlog.html",
        status_code=status_code,
        year=year,
        campaign=campaign,
        done=done or 0,
        percent=round(100.0 * (done or 0) / target, 1) if target else None,
        documents=_documents(ctx, None, backlog=True)[:50],
        jobs=sorted(ctx.jobs.for_dossier(None), key=lambda j: j.started, reverse=True),
        presets=presets,
        scanner_problem=scanner_problem,
        camera=ctx.camera is not None,
        capture_url="/backlog",
        error=error,
    )


@router.get("/backlog", response_class=HTMLResponse)
def backlog(request: Request, who: Officer) -> HTMLResponse:
    return backlog_page(request, ctx_of(request))


@router.post("/backlog/plan", response_model=None)
def set_plan(
    request: Request,
    who: CheckedSupervisor,
    target: int = Form(ge=0, le=1_000_000),
    note: str = Form(default="", max_length=500),
) -> Response:
    ctx = ctx_of(request)
    year = _year()
    with ctx.tx() as session:
        campaign = session.get(Campaign, year)
        if campaign is None:
            session.add(Campaign(year=year, target=target, note=note.strip(), updated_by=who.username))
        else:
            campaign.target, campaign.note, campaign.updated_by = target, note.strip(), who.username
    return see_other("/backlog?ok=target")


@router.post("/backlog/scan", response_model=None)
def backlog_scan(
    request: Request,
    who: Checked,
    preset: str = Form(max_length=40),
    nonce: str = Form(default="", max_length=40),
) -> Response:
    from appliance.web.routes.work import start_scan

    return start_scan(request, ctx_of(request), who, code=None, preset=preset, nonce=nonce, backlog=True)


@router.post("/backlog/camera", response_model=None)
def backlog_camera(request: Request, who: Checked, nonce: str = Form(default="", max_length=40)) -> Response:
    from appliance.web.routes.work import start_camera

    return start_camera(request, ctx_of(request), who, code=None, nonce=nonce, backlog=True)


@router.post("/backlog/upload", response_model=None)
async def backlog_upload(
    request: Request,
    who: Checked,
    files: Annotated[list[UploadFile], File()],
    nonce: str = Form(default="", max_length=40),
) -> Response:
    from appliance.web.routes.work import start_upload

    return await start_upload(request, ctx_of(request), who, code=None, files=files, nonce=nonce, backlog=True)


# --- statistics (Decision 766 rates, for this commune, per month) ---------------------------------
@dataclass(frozen=True, slots=True)
class Month:
    month: str  # YYYY-MM
    received: int  # dossiers opened at the counter
    digitized: int  # of those, dossiers with at least one digitized component
    results_e: int  # results issued electronically (signed, with a result code, queued or sent)
    backlog: int  # old results digitized under the backlog plan
    reused: int  # dossiers that reused already digitized documents instead of scanning them again

    @property
    def digitized_rate(self) -> float | None:
        return round(100.0 * self.digitized / self.received, 1) if self.received else None

    @property
    def results_rate(self) -> float | None:
        return round(100.0 * self.results_e / self.received, 1) if self.received else None


def monthly(ctx: Ctx) -> list[Month]:
    with ctx.tx() as session:
        dossiers = session.execute(select(Dossier.code, Dossier.created_at).where(Dossier.backlog.is_(False))).all()
        docs = session.execute(
            select(db.Document.dossier_code, db.Document.state, db.Document.created_at, DocumentInfo).outerjoin(
                DocumentInfo, DocumentInfo.document_id == db.Document.id
            )
        ).all()
        reusing = set(session.scalars(select(Reuse.dossier_code).distinct()))
    month_of: dict[str, str] = {code: f"{created:%Y-%m}" for code, created in dossiers}
    received = Counter(month_of.values())
    digitized_codes: set[str] = set()
    results: Counter[str] = Counter()
    backlog: Counter[str] = Counter()
    for code, state, created, info in docs:
        if info is not None and info.backlog and state in DONE_STATES:
            backlog[f"{created:%Y-%m}"] += 1
        if code in month_of and state in DONE_STATES and (info is None or info.kind in (None, Kind.COMPONENT)):
            digitized_codes.add(code)
        if (
            code in month_of
            and info is not None
            and info.kind == Kind.RESULT
            and info.result_code
            and state in SENT_STATES
        ):
            results[month_of[code]] += 1
    digitized = Counter(month_of[c] for c in digitized_codes)
    reused = Counter(month_of[c] for c in reusing if c in month_of)
    months = sorted(set(received) | set(backlog) | {f"{datetime.now(UTC):%Y-%m}"}, reverse=True)[:24]
    return [Month(m, received[m], digitized[m], results[m], backlog[m], reused[m]) for m in months]


@router.get("/stats", response_class=HTMLResponse)
def stats(request: Request, who: Officer) -> HTMLResponse:
    return render(request, "stats.html", months=monthly(ctx_of(request)))


CSV_HEADER = (
    "thang",
    "ho_so_tiep_nhan",
    "ho_so_da_so_hoa",
    "ty_le_so_hoa_pct",
    "ket_qua_dien_tu",
    "ty_le_ket_qua_dien_tu_pct",
    "tai_su_dung",
    "ton_dong_da_so_hoa",
)


@router.get("/stats.csv")
def stats_csv(request: Request, who: Officer) -> Response:
    ctx = ctx_of(request)
    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow(CSV_HEADER)
    for m in monthly(ctx):
        row: list[Any] = [
            m.month,
            m.received,
            m.digitized,
            "" if m.digitized_rate is None else m.digitized_rate,
            m.results_e,
            "" if m.results_rate is None else m.results_rate,
            m.reused,
            m.backlog,
        ]
        out.writerow(row)
    name = f"thong-ke-so-hoa-{ctx.settings.commune_code}.csv"
    return Response(
        "\ufeff" + buf.getvalue(),  # BOM: Excel on Windows opens UTF-8 correctly
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
