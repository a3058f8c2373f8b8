"""What every page uses: the context, the signed-in officer, CSRF checks, rendering, labels."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from appliance import workflow
from appliance.errors import ApplianceError, FormInvalid
from appliance.messages_vi import MESSAGES_VI, message_for
from appliance.records import KIND_LABELS
from appliance.web.auth import SignedIn, lookup_session, same_token
from appliance.web.context import SESSION_COOKIE, BadCsrf, Ctx, Forbidden, NeedLogin, NeedPasswordChange

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
KIND_LABELS_STR = {str(k): v for k, v in KIND_LABELS.items()}

PACKAGE_STATES = {
    "queued": "Chờ gửi",
    "sending": "Đang gửi",
    "transferred": "Đã chuyển",
    "receipted": "Đã tiếp nhận",
    "rejected": "Bị từ chối",
}
FLAG_LABELS = {
    "blank": "Trang trắng",
    "blurred": "Bị mờ",
    "cut_off": "Bị cắt mép",
    "too_dark": "Quá tối",
    "low_confidence": "Chữ khó đọc",
    "no_page_found": "Không thấy mép giấy",
    "glare": "Bị lóa sáng",
    "curled": "Trang bị cong",
}
NOTICES = {
    "saved": "Đã lưu.",
    "signed": "Đã ký số và đưa gói vào hàng chờ gửi.",
    "retry": "Đã đưa gói vào hàng chờ gửi lại.",
    "user": "Đã tạo tài khoản.",
    "target": "Đã lưu kế hoạch số hóa tồn đọng.",
    "redo": "Đã ghi nhận thay đổi; tài liệu đang được xử lý lại.",
    "opened": "Đã mở hồ sơ.",
    "split": "Đã tách thành các tài liệu riêng; từng tài liệu đang được xử lý lại.",
    "reused": "Đã dùng lại giấy tờ đã số hóa cho hồ sơ này (không cần quét lại).",
    "have": "Hồ sơ này đã có giấy tờ đó rồi.",
    "corrected": "Đã tạo bản điều chỉnh. Hãy kiểm tra lại thông tin rồi ký số bản mới.",
    "opened_upload": "Đã nhận tệp; các trang đang được xử lý.",
    "password": "Đã đổi mật khẩu.",
    "deactivated": "Đã ngừng hoạt động tài khoản; các phiên đăng nhập của tài khoản đã kết thúc.",
    "activated": "Tài khoản đã hoạt động lại.",
    "unlocked": "Đã mở khóa đăng nhập cho tài khoản.",
    "role": "Đã đổi vai trò của tài khoản.",
    "id_number": "Đã lưu số CCCD của tài khoản.",
}
# What an officer signed in with a temporary password may open before choosing their own.
PASSWORD_PAGES = frozenset({"/account/password", "/logout"})


def doc_state_label(state: str) -> str:
    return workflow.label(state)


def flag_label(flag: str) -> str:
    return FLAG_LABELS.get(flag, flag)


def ctx_of(request: Request) -> Ctx:
    ctx: Ctx = request.app.state.ctx
    return ctx


def officer(request: Request) -> SignedIn:
    """The signed-in officer, or a redirect to the sign-in page (to the password page while the officer's
    password is a temporary one)."""
    ctx = ctx_of(request)
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise NeedLogin()
    with ctx.tx() as session:
        who = lookup_session(session, token=token, idle=ctx.idle)
    if who is None:
        raise NeedLogin(expired=True)
    request.state.who = who
    if who.must_change and request.url.path not in PASSWORD_PAGES:
        raise NeedPasswordChange()
    return who


def supervisor(who: Annotated[SignedIn, Depends(officer)]) -> SignedIn:
    if not who.supervisor:
        raise Forbidden()
    return who


async def checked(request: Request, who: Annotated[SignedIn, Depends(officer)]) -> SignedIn:
    """The officer, after checking the form's (or htmx header's) CSRF token on unsafe methods."""
    if request.method in SAFE_METHODS:
        return who
    given = request.headers.get("x-csrf-token")
    if not given:
        kind = request.headers.get("content-type", "")
        if kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get("csrf")
            given = value if isinstance(value, str) else None
    if not same_token(given, who.csrf):
        raise BadCsrf()
    return who


def checked_supervisor(who: Annotated[SignedIn, Depends(checked)]) -> SignedIn:
    if not who.supervisor:
        raise Forbidden()
    return who


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    ctx = ctx_of(request)
    who: SignedIn | None = getattr(request.state, "who", None)
    notice = NOTICES.get(request.query_params.get("ok", ""))
    base = {
        "who": who,
        "csrf": who.csrf if who else "",
        "notice": notice,
        "nonce": secrets.token_urlsafe(12),
        "flag_label": flag_label,
        "messages": MESSAGES_VI,
        "package_states": PACKAGE_STATES,
        "path": request.url.path,
    }
    response: HTMLResponse = ctx.templates.TemplateResponse(request, template, base | context, status_code=status_code)
    return response


def message_page(request: Request, title: str, text: str, status_code: int) -> HTMLResponse:
    return render(request, "message.html", status_code=status_code, title=title, text=text)


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def refused_text(err: ApplianceError) -> str:
    """The officer's sentence for a refusal from the core (a form error's first sentence for FormInvalid)."""
    if isinstance(err, FormInvalid) and err.errors:
        return next(iter(err.errors.values()))
    return message_for(err)


# A row id or index in a URL: bounded, so an absurd number is a plain 404/422, never a database overflow.
RowId = Annotated[int, Path(ge=0, le=2**53)]

Officer = Annotated[SignedIn, Depends(officer)]
Supervisor = Annotated[SignedIn, Depends(supervisor)]
Checked = Annotated[SignedIn, Depends(checked)]
CheckedSupervisor = Annotated[SignedIn, Depends(checked_supervisor)]
