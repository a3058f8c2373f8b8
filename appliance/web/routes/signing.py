"""Sign a batch with one PIN entry (the core signs, packages and queues); then track each package to the
warehouse. The signing list shows who reviewed each document and pre-selects only the officer's own."""

from __future__ import annotations

import logging
import threading
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from appliance import accounts, delivery, remote_signing, roster, signing
from appliance.errors import ApplianceError, CertificateMismatch, FormInvalid, OutboxError, TokenNotFound
from appliance.messages_vi import MESSAGES_VI, message_for
from appliance.outbox import store
from appliance.settings import Settings
from appliance.sign.token import CertInfo
from appliance.web.auth import SignedIn
from appliance.web.context import Ctx
from appliance.web.routes.common import Checked, Officer, RowId, Supervisor, ctx_of, render, see_other

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


def _remember_tokens(ctx: Ctx, who: SignedIn, tokens: list[Any]) -> None:
    """The token's certificates, seen on the signing page, go to the roster: the personal one under the
    officer who is signed in, the organisation's under the organisation."""
    certs = [c for c in _certificates(tokens) if not c.is_ca]
    if not certs:
        return
    with ctx.tx() as session:
        for cert in certs:
            officer = cert.role == "officer"
            roster.record_seen(
                session,
                username=who.username if officer else roster.ORGANISATION,
                cert=cert,
                source="token",
                name_matches=signing.names_officer(cert, who.actor) if officer else True,
            )


def resume(factory: sessionmaker[Session], settings: Settings) -> None:
    """At start-up: batches that waited for approval when the box stopped are continued in the background."""
    threading.Thread(
        target=signing.resume_remote, args=(factory, settings), name="remote-signing-resume", daemon=True
    ).start()


def _continue_in_background(ctx: Ctx, txn_id: str) -> None:
    def work() -> None:
        try:
            signing.continue_remote(ctx.factory, ctx.settings, txn_id)
        except ApplianceError as err:  # recorded on the batch; the waiting page shows the sentence
            log.warning("remote batch %s ended code=%s", txn_id[:8], err.code)
        except Exception:  # noqa: BLE001 - a background thread must not die silently
            log.exception("remote batch %s failed", txn_id[:8])

    threading.Thread(target=work, name=f"remote-{txn_id[:8]}", daemon=True).start()


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
    with ctx.tx() as session:
        ready = signing.ready(session, actor=who.actor)
        profile = signing.remote_profile(session, ctx.settings, actor=who.actor)
        saved = remote_signing.profile(session, username=who.username)
        waiting = remote_signing.pending(session, username=who.username)
    if tokens is None:
        tokens = ([], None) if profile is not None else _tokens(ctx)
    found, token_error = tokens
    _remember_tokens(ctx, who, found)
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
        remote=profile,
        saved_profile=saved,
        waiting=waiting[0] if waiting else None,
        providers={name: p.label or name for name, p in ctx.settings.remote.providers.items()},
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
    if form.get("via") == "remote":
        return await _sign_remote(request, ctx, who, chosen, confirm=form.get("confirm_certificate") == "1")
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


async def _sign_remote(request: Request, ctx: Ctx, who: SignedIn, chosen: list[str], *, confirm: bool) -> Response:
    """Hash the batch for the officer's remote credential, then wait for the approval on the phone."""
    try:
        pending = await run_in_threadpool(
            signing.start_remote,
            ctx.factory,
            ctx.settings,
            actor=who.actor,
            doc_ids=chosen,
            confirm_certificate=confirm,
        )
    except ApplianceError as err:
        log.warning("remote signing batch refused code=%s", err.code)
        status = 409 if err.code in {"not_ready_to_sign", "certificate_mismatch", "remote_signing_busy"} else 400
        return _sign_page(
            request, ctx, who, tokens=([], None), error=message_for(err), chosen=chosen, status_code=status
        )
    _continue_in_background(ctx, pending.id)
    return see_other(f"/sign/remote/{pending.id}")


@router.get("/sign/remote/{txn_id}", response_class=HTMLResponse)
def remote_wait(request: Request, who: Officer, txn_id: str) -> HTMLResponse:
    """ "Chờ xác nhận trên điện thoại" with the time left; the page refreshes itself until the batch ends."""
    ctx = ctx_of(request)
    with ctx.tx() as session:
        state = signing.remote_state(session, txn_id=txn_id[:36], username=who.username)
    if state is None:
        raise HTTPException(404)
    provider = ctx.settings.remote.providers.get(state.provider)
    error = MESSAGES_VI.get(state.error_code or "", MESSAGES_VI["unknown"]) if state.state == "failed" else None
    return render(
        request,
        "remote_wait.html",
        batch=state,
        provider=(provider.label if provider else "") or state.provider,
        error=error,
    )


@router.post("/sign/remote-profile", response_model=None)
async def remote_profile(request: Request, who: Checked) -> Response:
    """The officer's remote signing service (provider, credential, user id); a supervisor may set anyone's."""
    ctx = ctx_of(request)
    form = await request.form()
    username = str(form.get("username") or who.username)[:64]
    if username != who.username and not who.supervisor:
        raise HTTPException(403)
    try:
        with ctx.tx() as session:
            if username != who.username and accounts.find(session, username=username) is None:
                raise HTTPException(404)
            remote_signing.set_profile(
                session,
                username=username,
                provider=str(form.get("provider") or ""),
                credential_id=str(form.get("credential_id") or ""),
                user_id=str(form.get("user_id") or ""),
                known_providers=set(ctx.settings.remote.providers),
                by=who.username,
            )
    except FormInvalid as err:
        return _sign_page(request, ctx, who, error=next(iter(err.errors.values()), message_for(err)), status_code=400)
    return see_other("/certificates?ok=saved" if username != who.username else "/sign?ok=saved")


@router.get("/certificates", response_class=HTMLResponse)
def certificates(request: Request, who: Supervisor) -> HTMLResponse:
    """ "Chứng thư số cán bộ": every officer's certificate with a verdict, and the organisation's."""
    ctx = ctx_of(request)
    with ctx.tx() as session:
        lines = roster.of_active_accounts(session)
        profiles = {p.username: p for p in session.scalars(select(remote_signing.SigningProfile))}
    return render(
        request,
        "certificates.html",
        lines=lines,
        profiles=profiles,
        providers={name: p.label or name for name, p in ctx.settings.remote.providers.items()},
    )


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
