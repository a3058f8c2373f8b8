"""What every page uses: the context, the signed-in officer, CSRF checks, rendering, labels."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session, sessionmaker

from appliance import db, pipeline
from appliance.db import DocState
from appliance.messages_vi import MESSAGES_VI
from appliance.web.app import SESSION_COOKIE, BadCsrf, Ctx, Forbidden, NeedLogin
from appliance.web.auth import SignedIn, lookup_session, same_token
from appliance.web.jobs import Job
from appliance.web.models import KIND_LABELS, DocumentInfo, Dossier
from appliance.web.search import index_text

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
KIND_LABELS_STR = {str(k): v for k, v in KIND_LABELS.items()}

DOC_STATES = {
    DocState.CAPTURED: "Đã quét, chờ xử lý",
    DocState.OCR_DONE: "Đang xử lý",
    DocState.ASSEMBLED: "Đã số hóa, chờ ký",
    DocState.SIGNED: "Đã ký số",
    DocState.QUEUED: "Đã đưa vào hàng chờ gửi",
    DocState.SENT: "Đã gửi",
    DocState.ACKED: "Kho đã tiếp nhận",
    DocState.FAILED: "Lỗi khi xử lý",
}
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
}


def doc_state_label(state: str) -> str:
    return DOC_STATES.get(DocState(state), state) if state in DocState._value2member_map_ else state


def flag_label(flag: str) -> str:
    return FLAG_LABELS.get(flag, flag)


def ctx_of(request: Request) -> Ctx:
    ctx: Ctx = request.app.state.ctx
    return ctx


def officer(request: Request) -> SignedIn:
    """The signed-in officer, or a redirect to the sign-in page."""
    ctx = ctx_of(request)
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise NeedLogin()
    with ctx.tx() as session:
        who = lookup_session(session, token=token, idle=ctx.idle)
    if who is None:
        raise NeedLogin(expired=True)
    request.state.who = who
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


def after_digitize(factory: sessionmaker[Session]) -> Callable[[str, pipeline.Digitized, Job], None]:
    """After a document is digitized: keep its text for search and prefill the review fields."""

    def record(doc_id: str, result: pipeline.Digitized, job: Job) -> None:
        best: dict[str, tuple[float, str]] = {}
        for f in result.fields:
            if f.name not in best or f.confidence > best[f.name][0]:
                best[f.name] = (f.confidence, f.value)
        with db.transaction(factory) as session:
            doc = session.get(db.Document, doc_id)
            if doc is None:
                return
            info = session.get(DocumentInfo, doc_id)
            if info is None:
                info = DocumentInfo(document_id=doc_id, fields={}, backlog=job.backlog, text="", text_folded="")
                session.add(info)
            if job.backlog:
                info.backlog = True
                info.kind = info.kind or "result"
            if not info.reviewed_at:
                info.fields = {name: value for name, (_c, value) in best.items()}
            info.text = result.text
            reindex(session, info, doc)

    return record


def reindex(session: Session, info: DocumentInfo, doc: db.Document) -> None:
    """The folded search text: dossier code, owner, reviewed fields and the OCR text."""
    dossier = session.get(Dossier, doc.dossier_code) if doc.dossier_code else None
    _text, info.text_folded = index_text(
        doc.dossier_code,
        dossier.owner_name if dossier else None,
        dossier.owner_id if dossier else None,
        " ".join(str(v) for v in info.fields.values() if v),
        info.text,
    )


Officer = Annotated[SignedIn, Depends(officer)]
Supervisor = Annotated[SignedIn, Depends(supervisor)]
Checked = Annotated[SignedIn, Depends(checked)]
CheckedSupervisor = Annotated[SignedIn, Depends(checked_supervisor)]
