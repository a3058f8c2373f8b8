"""Sign a batch with one PIN entry, package it, queue it; then track each package to the warehouse."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from appliance import db
from appliance.errors import ApplianceError, OutboxError
from appliance.messages_vi import message_for
from appliance.web.app import Ctx
from appliance.web.models import DocumentInfo, Dossier, Kind
from appliance.web.routes.common import Checked, Officer, ctx_of, render, see_other

log = logging.getLogger(__name__)
router = APIRouter()

PIN_STATES = {
    "ok": ("ok", "Sẵn sàng ký."),
    "count_low": ("warn", "Đã có lần nhập sai mã PIN: token còn ít lần thử. Hãy nhập cẩn thận."),
    "final_try": ("bad", "Còn 1 lần thử: nhập sai nữa token sẽ bị khóa. Hệ thống không thử để tránh khóa token."),
    "locked": ("bad", "Token đã bị khóa. Hãy liên hệ nơi cấp chứng thư số để mở khóa."),
    "to_be_changed": ("warn", "Token yêu cầu đổi mã PIN trước khi dùng."),
    "not_initialised": ("bad", "Token chưa được khởi tạo mã PIN."),
}
PACKAGE_FIELDS = {
    "so_ky_hieu": "number",
    "ngay_ban_hanh": "date",
    "loai_van_ban": "type",
    "co_quan_ban_hanh": "issuing_body",
    "trich_yeu": "summary",
    "so_dinh_danh": "owner_id",
}


def _ready(ctx: Ctx) -> list[tuple[db.Document, DocumentInfo, list[str]]]:
    """Reviewed, digitized documents waiting for a signature, each with what to look at first."""
    with ctx.tx() as session:
        rows = session.execute(
            select(db.Document, DocumentInfo)
            .join(DocumentInfo, DocumentInfo.document_id == db.Document.id)
            .where(db.Document.state == db.DocState.ASSEMBLED, DocumentInfo.kind.is_not(None))
            .order_by(db.Document.created_at)
        ).all()
        out = []
        for doc, info in rows:
            flags = sorted({str(f) for p in doc.pages for f in (p.flags or [])})
            if info.kind == Kind.RESULT and not info.result_code:
                flags.append("no_result_code")
            out.append((doc, info, flags))
    return out


def _token_state(ctx: Ctx) -> tuple[list[Any], str | None]:
    from appliance.sign.batch import token_status

    try:
        tokens = token_status(ctx.settings.sign.pkcs11_module, ctx.settings.sign.token_serial, timeout_s=20)
    except ApplianceError as err:
        return [], message_for(err)
    if not tokens:
        return [], message_for(_token_missing())
    return tokens, None


def _token_missing() -> ApplianceError:
    from appliance.errors import TokenNotFound

    return TokenNotFound("no token present")


def _sign_page(request: Request, ctx: Ctx, *, error: str | None = None, status_code: int = 200) -> HTMLResponse:
    tokens, token_error = _token_state(ctx)
    return render(
        request,
        "sign.html",
        status_code=status_code,
        ready=_ready(ctx),
        tokens=tokens,
        token_error=token_error,
        pin_states=PIN_STATES,
        error=error,
    )


@router.get("/sign", response_class=HTMLResponse)
def sign_form(request: Request, who: Officer) -> HTMLResponse:
    return _sign_page(request, ctx_of(request))


@router.post("/sign", response_model=None)
async def sign(request: Request, who: Checked) -> Response:
    """Sign the chosen documents with one PIN entry, build one package per dossier and kind, queue them."""
    from appliance.outbox import store
    from appliance.sign.batch import SignJob, sign_batch
    from appliance.sign.package import PackageRequest, build_package

    ctx = ctx_of(request)
    form = await request.form()
    chosen = [str(v) for v in form.getlist("doc")][:200]
    pin = str(form.get("pin", "") or "")
    if not chosen:
        return _sign_page(request, ctx, error="Hãy chọn ít nhất một tài liệu để ký.", status_code=400)
    if not pin:
        return _sign_page(request, ctx, error=message_for(_pin_required()), status_code=400)
    ready = {doc.id: (doc, info) for doc, info, flags in _ready(ctx) if "no_result_code" not in flags}
    picked = [ready[i] for i in chosen if i in ready]
    if len(picked) != len(chosen):
        del pin
        return _sign_page(
            request, ctx, error="Một số tài liệu đã được ký hoặc chưa sẵn sàng. Hãy xem lại danh sách.", status_code=409
        )
    ctx.signed_dir.mkdir(parents=True, exist_ok=True)
    ctx.packages_dir.mkdir(parents=True, exist_ok=True)
    org = ctx.settings.sign.organisation_name
    jobs = []
    for doc, info in picked:
        result = info.kind == Kind.RESULT
        jobs.append(
            SignJob(
                input=Path(doc.pdf_path or ""),
                output=ctx.signed_dir / f"{doc.id}.pdf",
                role="organisation" if result else "officer",
                signer_name=who.full_name,
                organisation=org,
                reason=(
                    f"SAO Y: chuyển đổi từ văn bản giấy; mã kết quả {info.result_code}"
                    if result
                    else "Số hóa thành phần hồ sơ TTHC"
                ),
                location=org,
            )
        )
    module, serial = ctx.settings.sign.pkcs11_module, ctx.settings.sign.token_serial
    try:
        sign_batch(jobs, pin, module=module, serial=serial, tsa_url=ctx.settings.sign.tsa_url)
        groups: dict[tuple[str, str, str], list[tuple[db.Document, DocumentInfo]]] = defaultdict(list)
        for doc, info in picked:
            groups[(doc.dossier_code or "", info.kind or "", info.result_code or "")].append((doc, info))
        built = []
        for (dossier_code, kind, result_code), members in groups.items():
            with ctx.tx() as session:
                dossier = session.get(Dossier, dossier_code) if dossier_code else None
            stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
            name = f"{dossier_code or 'ton-dong'}-{kind}-{stamp}-{members[0][0].id[:8]}.asice"
            request_ = PackageRequest(
                pdfs=tuple(ctx.signed_dir / f"{doc.id}.pdf" for doc, _i in members),
                category=kind,
                dossier_code=dossier_code,
                tthc_code=dossier.tthc_code if dossier else None,
                result_code=result_code or None,
                fields={
                    f"{doc.id}.pdf": {new: info.fields.get(old) or None for old, new in PACKAGE_FIELDS.items()}
                    | {"validity": info.valid_until}
                    for doc, info in members
                },
                role="organisation",
                commune_code=ctx.settings.commune_code,
                agency_code=ctx.settings.sign.agency_code,
            )
            package = build_package(request_, ctx.packages_dir / name, pin, module=module, serial=serial)
            built.append((package, members, dossier_code, kind))
    except ApplianceError as err:
        log.warning("signing batch failed code=%s", err.code)
        return _sign_page(request, ctx, error=message_for(err), status_code=400)
    finally:
        del pin
    now = datetime.now(UTC)
    with ctx.tx() as session:
        for package, members, dossier_code, kind in built:
            store.enqueue(
                session,
                path=package.path,
                package_id=package.package_id,
                dossier_code=dossier_code or None,
                priority=store.PRIORITY_PACKAGE if kind != Kind.RESULT else store.PRIORITY_RECEIPT,
            )
            for doc, _info in members:
                row = session.get(db.Document, doc.id)
                signed = session.get(DocumentInfo, doc.id)
                assert row is not None and signed is not None
                row.state = db.DocState.QUEUED
                signed.signed_path = str(ctx.signed_dir / f"{doc.id}.pdf")
                signed.signed_by = who.username
                signed.signed_at = now
                signed.package_id = package.package_id
    log.info("signed %d document(s) into %d package(s)", len(picked), len(built))
    return see_other("/track?ok=signed")


def _pin_required() -> ApplianceError:
    from appliance.errors import PinRequired

    return PinRequired("no PIN typed")


@router.get("/track", response_class=HTMLResponse)
def track(request: Request, who: Officer) -> HTMLResponse:
    from appliance.outbox import store

    ctx = ctx_of(request)
    with ctx.tx() as session:
        items = store.list_items(session, limit=200)
        count, oldest = store.depth(session)
    return render(request, "track.html", items=items, depth=count, oldest=oldest, error=None)


@router.post("/track/{item_id}/retry", response_model=None)
def retry(request: Request, who: Checked, item_id: int) -> Response:
    from appliance.outbox import store

    ctx = ctx_of(request)
    try:
        with ctx.tx() as session:
            store.retry(session, item_id=item_id)
    except OutboxError as err:
        with ctx.tx() as session:
            items = store.list_items(session, limit=200)
            count, oldest = store.depth(session)
        if not any(i.id == item_id for i in items):
            raise HTTPException(404) from err
        return render(
            request, "track.html", status_code=409, items=items, depth=count, oldest=oldest, error=message_for(err)
        )
    return see_other("/track?ok=retry")
