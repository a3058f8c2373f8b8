"""Search of the local archive, backlog campaigns and the commune's monthly statistics (CSV too).

The statistics are :mod:`appliance.indicators` (the same definition telemetry sends to the province)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from appliance import domain, dossiers, indicators, units, workflow
from appliance.records import Dossier
from appliance.web.routes.capture import capture_page, start_camera, start_scan, start_upload
from appliance.web.routes.common import Checked, CheckedSupervisor, Officer, ctx_of, render, see_other
from appliance.web.search import search as run_search

router = APIRouter()


@router.get("/search", response_class=HTMLResponse)
def search(request: Request, who: Officer, q: str = "", dossier: str = "") -> HTMLResponse:
    """Search the archive; with ``dossier``, each digitized hit can be reused in that dossier."""
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
    reusable = {s.value for s in workflow.DIGITIZED_OR_LATER}
    return render(request, "search.html", q=query, hits=hits, target=target, reusable=reusable)


# --- backlog -----------------------------------------------------------------------------------
@router.get("/backlog", response_class=HTMLResponse)
def backlog(request: Request, who: Officer) -> HTMLResponse:
    return capture_page(request, ctx_of(request), None)


@router.post("/backlog/plan", response_model=None)
def set_plan(
    request: Request,
    who: CheckedSupervisor,
    target: int = Form(ge=0, le=1_000_000),
    note: str = Form(default="", max_length=500),
) -> Response:
    ctx = ctx_of(request)
    with ctx.tx() as session:
        dossiers.set_plan(session, actor=who.actor, year=datetime.now(UTC).year, target=target, note=note)
    return see_other("/backlog?ok=target")


@router.post("/backlog/scan", response_model=None)
def backlog_scan(
    request: Request,
    who: Checked,
    preset: str = Form(max_length=40),
    nonce: str = Form(default="", max_length=40),
) -> Response:
    return start_scan(request, ctx_of(request), who, code=None, preset=preset, nonce=nonce, backlog=True)


@router.post("/backlog/camera", response_model=None)
def backlog_camera(request: Request, who: Checked, nonce: str = Form(default="", max_length=40)) -> Response:
    return start_camera(request, ctx_of(request), who, code=None, nonce=nonce, backlog=True)


@router.post("/backlog/upload", response_model=None)
async def backlog_upload(
    request: Request,
    who: Checked,
    files: Annotated[list[UploadFile], File()],
    nonce: str = Form(default="", max_length=40),
) -> Response:
    return await start_upload(request, ctx_of(request), who, code=None, files=files, nonce=nonce, backlog=True)


# --- statistics (Decision 766 rates, for this commune, per month) ---------------------------------
@dataclass(frozen=True, slots=True)
class Month:
    """One row of the statistics page: a month's indicators."""

    month: str  # YYYY-MM
    figures: indicators.Indicators

    @property
    def received(self) -> int:
        return self.figures.received

    @property
    def digitized(self) -> int:
        return self.figures.components_digitized

    @property
    def results_e(self) -> int:
        return self.figures.results_electronic

    @property
    def reused(self) -> int:
        return self.figures.reused

    @property
    def backlog(self) -> int:
        return self.figures.backlog_digitized

    @property
    def digitized_rate(self) -> float | None:
        return self.figures.digitized_rate

    @property
    def results_rate(self) -> float | None:
        return self.figures.results_rate


def monthly(request: Request) -> list[Month]:
    with ctx_of(request).tx() as session:
        return [Month(m, figures) for m, figures in indicators.months(session)]


@dataclass(frozen=True, slots=True)
class Group:
    """One row of a month's figures per receiving centre or per deciding agency (Decree 118/2025)."""

    code: str
    name: str
    figures: indicators.Indicators


def by_unit(request: Request, month: str) -> dict[str, list[Group]]:
    """This month's indicators per receiving centre and per deciding agency, with today's unit names."""
    ctx = ctx_of(request)
    start, end = indicators.month_bounds(month)
    with ctx.tx() as session:
        grouped = {
            by: indicators.count_by(session, start, end, by=by, home=ctx.settings.commune_code)
            for by in indicators.GROUPS
        }
        known = units.names(session, {code for figures in grouped.values() for code in figures})
    return {
        by: [Group(code, known.get(code, code), f) for code, f in figures.items()] for by, figures in grouped.items()
    }


@router.get("/stats", response_class=HTMLResponse)
def stats(request: Request, who: Officer) -> HTMLResponse:
    months = monthly(request)
    month = months[0].month if months else f"{indicators.local_day(datetime.now(UTC)):%Y-%m}"
    return render(request, "stats.html", months=months, month=month, groups=by_unit(request, month))


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
    for m in monthly(request):
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
