"""Sign in / out, the officer's own password, and the supervisor's account page.

Each change of an account is one function of :mod:`appliance.accounts` (audited there); these routes parse
the form, call it and render.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import timedelta

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from appliance import accounts, audit
from appliance.db import utcnow
from appliance.errors import ApplianceError
from appliance.messages_vi import message_for
from appliance.web.auth import SignedIn, authenticate, end_session, same_token, start_session, token_hash
from appliance.web.context import PRELOGIN_COOKIE, SESSION_COOKIE
from appliance.web.routes.common import (
    Checked,
    CheckedSupervisor,
    Officer,
    Supervisor,
    ctx_of,
    render,
    see_other,
)

log = logging.getLogger(__name__)
router = APIRouter()

PASSWORD_PAGE = "/account/password"


def _login_page(request: Request, error: str | None = None, status_code: int = 200) -> HTMLResponse:
    ctx = ctx_of(request)
    token = secrets.token_urlsafe(24)
    expired = request.query_params.get("expired") == "1"
    response = render(request, "login.html", status_code=status_code, error=error, login_csrf=token, expired=expired)
    response.set_cookie(
        PRELOGIN_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=ctx.secure_cookies,
        path="/login",
        max_age=3600,
    )
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    return _login_page(request)


@router.post("/login")
def login(
    request: Request,
    username: str = Form(default="", max_length=64),
    password: str = Form(default="", max_length=256),
    csrf: str = Form(default="", max_length=100),
) -> Response:
    ctx = ctx_of(request)
    if not same_token(csrf, request.cookies.get(PRELOGIN_COOKIE, "")):
        return _login_page(request, "Biểu mẫu đăng nhập đã hết hạn. Hãy nhập lại.", 403)
    name = username.strip().lower()
    client = request.client.host if request.client else "?"
    reservation = ctx.throttle.attempt(name, client)
    if reservation is None:
        minutes = ctx.settings.web.login_lockout_min
        return _login_page(
            request,
            f"Tài khoản tạm khóa do nhập sai mật khẩu nhiều lần. Hãy thử lại sau {minutes} phút "
            "hoặc nhờ lãnh đạo mở khóa tài khoản.",
            429,
        )
    with ctx.tx() as session:
        user = authenticate(session, username=name, password=password)
        if user is None:
            ctx.throttle.failed(name, client)
            return _login_page(request, "Tên đăng nhập hoặc mật khẩu không đúng.", 401)
        ctx.throttle.succeeded(name, reservation)
        token = start_session(session, user=user, replaces=request.cookies.get(SESSION_COOKIE))
        must_change = user.must_change
    response = see_other(PASSWORD_PAGE if must_change else "/")
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", secure=ctx.secure_cookies, path="/")
    response.delete_cookie(PRELOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, who: Checked) -> Response:
    ctx = ctx_of(request)
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        with ctx.tx() as session:
            end_session(session, token=token)
    response = see_other("/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- the officer's own password -----------------------------------------------------------------
def _password_page(request: Request, who: SignedIn, error: str | None = None, status_code: int = 200) -> HTMLResponse:
    return render(
        request,
        "password.html",
        status_code=status_code,
        error=error,
        forced=who.must_change,
        min_password=accounts.MIN_PASSWORD,
    )


@router.get(PASSWORD_PAGE, response_class=HTMLResponse)
def password_form(request: Request, who: Officer) -> HTMLResponse:
    return _password_page(request, who)


@router.post(PASSWORD_PAGE, response_model=None)
def change_password(
    request: Request,
    who: Checked,
    old: str = Form(default="", max_length=256),
    new: str = Form(default="", max_length=256),
    again: str = Form(default="", max_length=256),
) -> Response:
    ctx = ctx_of(request)
    if new != again:
        return _password_page(request, who, "Hai lần nhập mật khẩu mới không giống nhau. Hãy nhập lại.", 400)
    token = request.cookies.get(SESSION_COOKIE, "")
    try:
        with ctx.tx() as session:
            accounts.change_password(
                session, username=who.username, old=old, new=new, keep_session=token_hash(token) if token else None
            )
    except ApplianceError as err:
        return _password_page(request, who, message_for(err), 400)
    return see_other("/?ok=password")


# --- the supervisor's account page ------------------------------------------------------------------
def _users_page(
    request: Request,
    status_code: int = 200,
    *,
    error: str | None = None,
    temporary: tuple[str, str] | None = None,
) -> HTMLResponse:
    ctx = ctx_of(request)
    since = utcnow() - timedelta(seconds=ctx.throttle.lockout_s)
    with ctx.tx() as session:
        rows = accounts.listing(session, max_failures=ctx.throttle.max_failures, since=since)
        trail = audit.for_actions(session, actions=accounts.ACTIONS, limit=50)
    response = render(
        request,
        "users.html",
        status_code=status_code,
        users=rows,
        trail=trail,
        error=error,
        temporary=temporary,
        min_password=accounts.MIN_PASSWORD,
    )
    if temporary is not None:
        response.headers["Cache-Control"] = "no-store"  # the temporary password is shown once
    return response


@router.get("/admin/users", response_class=HTMLResponse)
def users(request: Request, who: Supervisor) -> HTMLResponse:
    return _users_page(request)


@router.post("/admin/users", response_model=None)
def add_user(
    request: Request,
    who: CheckedSupervisor,
    username: str = Form(max_length=64),
    full_name: str = Form(max_length=200),
    role: str = Form(default="officer", max_length=16),
    password: str = Form(max_length=256),
    id_number: str = Form(default="", max_length=40),
) -> Response:
    ctx = ctx_of(request)
    try:
        with ctx.tx() as session:
            accounts.create(
                session,
                actor=who.actor,
                username=username,
                full_name=full_name,
                role=role,
                password=password,
                id_number=id_number,
                must_change=True,  # the supervisor chose it: the officer chooses their own at first sign-in
            )
    except ApplianceError as err:
        return _users_page(request, 400, error=message_for(err))
    log.info("account created by a supervisor role=%s", role)
    return see_other("/admin/users?ok=user")


def _change(request: Request, who: SignedIn, change: Callable[[Session], object], notice: str) -> Response:
    try:
        with ctx_of(request).tx() as session:
            change(session)
    except ApplianceError as err:
        return _users_page(request, 400, error=message_for(err))
    return see_other(f"/admin/users?ok={notice}")


@router.post("/admin/users/reset-password", response_model=None)
def reset_password(request: Request, who: CheckedSupervisor, username: str = Form(max_length=64)) -> Response:
    try:
        with ctx_of(request).tx() as session:
            temporary = accounts.reset_password(session, actor=who.actor, username=username)
    except ApplianceError as err:
        return _users_page(request, 400, error=message_for(err))
    return _users_page(request, temporary=(accounts.normal_username(username), temporary))


@router.post("/admin/users/deactivate", response_model=None)
def deactivate(request: Request, who: CheckedSupervisor, username: str = Form(max_length=64)) -> Response:
    response = _change(
        request, who, lambda s: accounts.deactivate(s, actor=who.actor, username=username), "deactivated"
    )
    if response.status_code == 303 and accounts.normal_username(username) == who.username:
        return see_other("/login")  # their own account: its sessions ended with it
    return response


@router.post("/admin/users/activate", response_model=None)
def activate(request: Request, who: CheckedSupervisor, username: str = Form(max_length=64)) -> Response:
    return _change(request, who, lambda s: accounts.reactivate(s, actor=who.actor, username=username), "activated")


@router.post("/admin/users/unlock", response_model=None)
def unlock(request: Request, who: CheckedSupervisor, username: str = Form(max_length=64)) -> Response:
    return _change(request, who, lambda s: accounts.unlock(s, actor=who.actor, username=username), "unlocked")


@router.post("/admin/users/role", response_model=None)
def change_role(
    request: Request,
    who: CheckedSupervisor,
    username: str = Form(max_length=64),
    role: str = Form(max_length=16),
) -> Response:
    response = _change(
        request, who, lambda s: accounts.change_role(s, actor=who.actor, username=username, role=role), "role"
    )
    if response.status_code == 303 and accounts.normal_username(username) == who.username and role != "supervisor":
        return see_other("/?ok=role")  # no longer a supervisor: the account page is not theirs any more
    return response


@router.post("/admin/users/id-number", response_model=None)
def set_id_number(
    request: Request,
    who: CheckedSupervisor,
    username: str = Form(max_length=64),
    id_number: str = Form(default="", max_length=40),
) -> Response:
    return _change(
        request,
        who,
        lambda s: accounts.set_id_number(s, actor=who.actor, username=username, id_number=id_number),
        "id_number",
    )
