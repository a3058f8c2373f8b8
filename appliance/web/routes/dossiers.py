"""The counter's start: today's dossiers, open one (typed or from the receipt's QR), its page, capture into it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from appliance import audit, dossiers, units
from appliance.errors import ApplianceError, FormInvalid, NotFound
from appliance.web.context import Ctx
from appliance.web.routes.capture import (
    capture_page,
    file_error,
    load_first,
    save_uploads,
    start_camera,
    start_scan,
    start_upload,
)
from appliance.web.routes.common import Checked, Officer, ctx_of, render, see_other

router = APIRouter()


def _home(
    request: Request, ctx: Ctx, *, form: dict[str, str], errors: dict[str, str], status_code: int = 200, **more: object
) -> HTMLResponse:
    with ctx.tx() as session:
        recent = dossiers.recent(session)
        agencies = [(u.code, units.label(u)) for u in units.current_units(session)]
    return render(
        request,
        "home.html",
        status_code=status_code,
        dossiers=recent,
        form=form,
        errors=errors,
        agencies=agencies,
        home_unit=ctx.settings.commune_code,
        **more,
    )


@router.get("/", response_class=HTMLResponse)
def home(request: Request, who: Officer) -> HTMLResponse:
    return _home(request, ctx_of(request), form={}, errors={})


@router.post("/dossiers", response_model=None)
def open_dossier(
    request: Request,
    who: Checked,
    code: str = Form(default="", max_length=100),
    tthc_code: str = Form(default="", max_length=100),
    owner_id: str = Form(default="", max_length=40),
    owner_name: str = Form(default="", max_length=200),
    title: str = Form(default="", max_length=500),
    appointment: str = Form(default="", max_length=40),
    deciding_agency: str = Form(default="", max_length=64),
) -> Response:
    ctx = ctx_of(request)
    form = {
        "code": code,
        "tthc_code": tthc_code,
        "owner_id": owner_id,
        "owner_name": owner_name,
        "title": title,
        "appointment": appointment,
        "deciding_agency": deciding_agency,
    }
    try:
        with ctx.tx() as session:
            dossier = dossiers.open_dossier(
                session,
                actor=who.actor,
                form=form,
                receiving_unit=ctx.settings.commune_code,
                patterns=ctx.settings.dossier_code_patterns,
            )
            opened = dossier.code
    except FormInvalid as err:
        return _home(request, ctx, form=form, errors=err.errors, status_code=400)
    return see_other(f"/dossiers/{opened}")


RECEIPT_PAGES = 3  # a receipt's QR is on its first pages: the rest of a long file is never decoded


def _receipt_form(ctx: Ctx, saved: list[tuple[str, Path]]) -> dict[str, str]:
    return dossiers.receipt_form(load_first(ctx, saved, RECEIPT_PAGES), max_pages=RECEIPT_PAGES)


@router.post("/dossiers/receipt", response_model=None)
async def read_receipt(request: Request, who: Checked, receipt: Annotated[UploadFile, File()]) -> Response:
    """A photo or scan of the one-stop receipt: its QR code fills the open-dossier form (decoded and read
    off the event loop, first pages only)."""
    ctx = ctx_of(request)
    folder, saved, error = await save_uploads(ctx, [receipt], capture=False)
    form: dict[str, str] = {}
    try:
        if error is None:
            try:
                form = await run_in_threadpool(_receipt_form, ctx, saved)
            except ApplianceError as err:
                error = file_error(err)
            else:
                if not form:
                    error = "Không đọc được mã QR trên giấy tiếp nhận. Hãy chụp rõ hơn hoặc nhập mã hồ sơ."
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    errors = dossiers.check_form(form, patterns=ctx.settings.dossier_code_patterns)[1] if form.get("code") else {}
    if error:
        errors["receipt"] = error
    return _home(request, ctx, form=form, errors=errors, status_code=400 if error else 200, from_receipt=not error)


def _dossier_code(ctx: Ctx, code: str) -> str:
    with ctx.tx() as session:
        try:
            return dossiers.get(session, code).code
        except NotFound:
            raise HTTPException(404) from None


@router.get("/dossiers/{code}", response_class=HTMLResponse)
def dossier_page(request: Request, who: Officer, code: str) -> HTMLResponse:
    ctx = ctx_of(request)
    return capture_page(request, ctx, _dossier_code(ctx, code))


@router.get("/dossiers/{code}/documents", response_class=HTMLResponse)
def dossier_documents(request: Request, who: Officer, code: str) -> HTMLResponse:
    """The document list alone: the dossier page reloads it (htmx) when a job finishes."""
    ctx = ctx_of(request)
    with ctx.tx() as session:
        listed = dossiers.documents(session, dossier_code=_dossier_code(ctx, code))
    return render(request, "_documents.html", documents=listed)


@router.get("/dossiers/{code}/audit.csv")
def dossier_audit(request: Request, who: Officer, code: str) -> Response:
    ctx = ctx_of(request)
    found = _dossier_code(ctx, code)
    with ctx.tx() as session:
        entries = audit.for_dossier(session, dossier_code=found)
    return Response(
        audit.to_csv(entries),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="nhat-ky-{found}.csv"'},
    )


@router.post("/dossiers/{code}/scan", response_model=None)
def scan(
    request: Request,
    who: Checked,
    code: str,
    preset: str = Form(max_length=40),
    nonce: str = Form(default="", max_length=40),
) -> Response:
    ctx = ctx_of(request)
    return start_scan(request, ctx, who, code=_dossier_code(ctx, code), preset=preset, nonce=nonce, backlog=False)


@router.post("/dossiers/{code}/upload", response_model=None)
async def upload(
    request: Request,
    who: Checked,
    files: Annotated[list[UploadFile], File()],
    code: str,
    nonce: str = Form(default="", max_length=40),
) -> Response:
    ctx = ctx_of(request)
    found = _dossier_code(ctx, code)
    return await start_upload(request, ctx, who, code=found, files=files, nonce=nonce, backlog=False)


@router.post("/dossiers/{code}/camera", response_model=None)
def camera_photo(
    request: Request,
    who: Checked,
    code: str,
    nonce: str = Form(default="", max_length=40),
) -> Response:
    ctx = ctx_of(request)
    return start_camera(request, ctx, who, code=_dossier_code(ctx, code), nonce=nonce, backlog=False)
