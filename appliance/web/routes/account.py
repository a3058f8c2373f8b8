"""Sign in / out, and the supervisor's account list."""

from __future__ import annotations

import logging
import secrets

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from appliance import domain
from appliance.web.auth import (
    authenticate,
    create_user,
    end_session,
    find_user,
    same_token,
    start_session,
    valid_username,
)
from appliance.web.context import PRELOGIN_COOKIE, SESSION_COOKIE
from appliance.web.models import Role, User
from appliance.web.routes.common import Checked, CheckedSupervisor, Supervisor, ctx_of, render, see_other

log = logging.getLogger(__name__)
router = APIRouter()


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
            "hoặc nhờ lãnh đạo đặt lại mật khẩu.",
            429,
        )
    with ctx.tx() as session:
        user = authenticate(session, username=name, password=password)
        if user is None:
            ctx.throttle.failed(name, client)
            return _login_page(request, "Tên đăng nhập hoặc mật khẩu không đúng.", 401)
        ctx.throttle.succeeded(name, reservation)
        token = start_session(session, user=user, replaces=request.cookies.get(SESSION_COOKIE))
    response = see_other("/")
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


@router.get("/admin/users", response_class=HTMLResponse)
def users(request: Request, who: Supervisor) -> HTMLResponse:
    ctx = ctx_of(request)
    with ctx.tx() as session:
        rows = list(session.scalars(select(User).order_by(User.username)))
    return render(request, "users.html", users=rows, error=None)


@router.post("/admin/users", response_model=None)
def add_user(
    request: Request,
    who: CheckedSupervisor,
    username: str = Form(max_length=64),
    full_name: str = Form(max_length=200),
    role: str = Form(default="officer"),
    password: str = Form(max_length=256),
    id_number: str = Form(default="", max_length=40),
) -> Response:
    ctx = ctx_of(request)
    name = username.strip().lower()
    error = None
    pid = domain.check_personal_id(id_number) if id_number.strip() else None
    if pid is not None and not pid.ok:
        error = "Số định danh cá nhân (CCCD) phải gồm đúng 12 chữ số."
    elif not valid_username(name):
        error = "Tên đăng nhập chỉ gồm chữ không dấu, số, dấu chấm, gạch (2–64 ký tự)."
    elif len(password) < 10:
        error = "Mật khẩu phải có ít nhất 10 ký tự."
    elif role not in {r.value for r in Role}:
        error = "Vai trò không hợp lệ."
    elif not full_name.strip():
        error = "Hãy nhập họ và tên."
    with ctx.tx() as session:
        if error is None and find_user(session, username=name) is not None:
            error = "Tên đăng nhập này đã có."
        if error is None:
            create_user(
                session,
                username=name,
                full_name=full_name.strip(),
                role=Role(role),
                password=password,
                id_number=pid.value if pid is not None else None,
            )
            log.info("account created by a supervisor role=%s", role)
        rows = list(session.scalars(select(User).order_by(User.username)))
    if error:
        return render(request, "users.html", status_code=400, users=rows, error=error)
    return see_other("/admin/users?ok=user")
