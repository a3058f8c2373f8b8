"""Sign a batch with one PIN entry (the core signs, packages and queues); then track each package to the
warehouse. The signing list shows who reviewed each document and pre-selects only the officer's own."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from appliance import delivery, signing
from appliance.errors import ApplianceError, CertificateMismatch, OutboxError, TokenNotFound
from appliance.messages_vi import message_for
from appliance.outbox import store
from appliance.sign.token import CertInfo
from appliance.web.auth import SignedIn
from appliance.web.context import Ctx
from appliance.web.routes.common import Checked, Officer, RowId, ctx_of, render, see_other

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


def _tokens(ctx: Ctx) -> tuple[list[Any], str | None]:
    """The tokens present (read without a login), or the sentence saying why none can be used."""
    from appliance.sign.batch import token_status

    try:
        tokens = token_status(ctx.settings.sign.pkcs11_module, ctx.settings.sign.token_serial, timeout_s=20)
    except ApplianceError as err:
        return [], message_for(err)
    if not tokens:
        return [], message_for(TokenNotFound("no token present"))
    return tokens, None


def _certificates(tokens: list[Any]) -> list[CertInfo]:
    return [c for t in tokens for c in t.certificates]


def _sign_page(
    request: Request,
    ctx: Ctx,
    who: SignedIn,
    *,
    tokens: tuple[list[Any], str | None] | None = None,
    error: str | None = None,
    chosen: list[str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    found, token_error = tokens if tokens is not None else _tokens(ctx)
    with ctx.tx() as session:
        ready = signing.ready(session, actor=who.actor)
    picked = set(chosen) if chosen is not None else {r.id for r in ready if r.mine and r.ready}
    return render(
        request,
        "sign.html",
        status_code=status_code,
        ready=ready,
        picked=picked,
        tokens=found,
        token_error=token_error,
        cert=signing.check_certificate(_certificates(found), who.actor),
        pin_states=PIN_STATES,
        error=error,
    )


@router.get("/sign", response_class=HTMLResponse)
def sign_form(request: Request, who: Officer) -> HTMLResponse:
    return _sign_page(request, ctx_of(request), who)


@router.post("/sign", response_model=None)
async def sign(request: Request, who: Checked) -> Response:
    """Sign the chosen documents with one PIN entry, one package per dossier and kind, queued for sending."""
    ctx = ctx_of(request)
    form = await request.form()
    chosen = [str(v) for v in form.getlist("doc")][: signing.MAX_BATCH]
    pin = str(form.get("pin", "") or "")
    confirm = form.get("confirm_certificate") == "1"
    tokens = _tokens(ctx) if chosen and pin else ([], None)
    try:
        done = await run_in_threadpool(
            signing.sign,
            ctx.factory,
            ctx.settings,
            actor=who.actor,
            doc_ids=chosen,
            pin=pin,
            certificates=_certificates(tokens[0]),
            confirm_certificate=confirm,
        )
    except CertificateMismatch as err:
        return _sign_page(request, ctx, who, tokens=tokens, error=message_for(err), chosen=chosen, status_code=409)
    except ApplianceError as err:
        log.warning("signing batch refused code=%s", err.code)
        status = 409 if err.code == "not_ready_to_sign" else 400
        return _sign_page(request, ctx, who, error=message_for(err), chosen=chosen, status_code=status)
    finally:
        del pin
    log.info("signed %d document(s) into %d package(s)", len(done.documents), len(done.packages))
    return see_other("/track?ok=signed")


@router.get("/track", response_class=HTMLResponse)
def track(request: Request, who: Officer) -> HTMLResponse:
    return _track_page(request, ctx_of(request))


def _track_page(request: Request, ctx: Ctx, *, error: str | None = None, status_code: int = 200) -> HTMLResponse:
    with ctx.tx() as session:
        items = delivery.tracking(session, limit=200)
        count, oldest = store.depth(session)
    return render(
        request, "track.html", status_code=status_code, tracked=items, depth=count, oldest=oldest, error=error
    )


@router.get("/track/rows", response_class=HTMLResponse)
def track_rows(request: Request, who: Officer) -> HTMLResponse:
    """The package table alone: the tracking page refreshes it every few seconds (htmx)."""
    ctx = ctx_of(request)
    with ctx.tx() as session:
        items = delivery.tracking(session, limit=200)
    return render(request, "_track_rows.html", tracked=items)


@router.post("/track/{item_id}/retry", response_model=None)
def retry(request: Request, who: Checked, item_id: RowId) -> Response:
    ctx = ctx_of(request)
    try:
        with ctx.tx() as session:
            delivery.resend(session, actor=who.actor, item_id=item_id)
    except OutboxError as err:
        with ctx.tx() as session:
            known = any(i.id == item_id for i in store.list_items(session, limit=200))
        if not known:
            raise HTTPException(404) from err
        return _track_page(request, ctx, error=message_for(err), status_code=409)
    return see_other("/track?ok=retry")
