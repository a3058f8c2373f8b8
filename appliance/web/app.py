"""The officers' web UI: FastAPI + server-rendered Jinja2 + htmx (vendored in static/).

``create_app(settings, scanner=...)`` builds everything at startup (database, job runner,
templates); nothing reads settings at import time. The routes parse, call the core (dossiers,
documents, signing, delivery, indicators, pipeline) and render; the scanner and the camera are
reached only through the protocols passed in here. At start-up interrupted work is resumed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from appliance import diskspace, pipeline, workflow
from appliance.capture import Camera, Scanner
from appliance.settings import Settings
from appliance.web import formatting
from appliance.web.assets import StaticAssets
from appliance.web.auth import LoginThrottle, lookup_session
from appliance.web.context import SESSION_COOKIE, BadCsrf, Ctx, Forbidden, NeedLogin, NeedPasswordChange
from appliance.web.jobs import Jobs
from appliance.web.routes import signing as remote_batches

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent


class BodyLimit:
    """Refuses request bodies larger than ``limit`` bytes (declared or streamed) with a 413 page."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(scope, send, self.limit)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await _too_large(scope, send, self.limit)


class _TooLarge(Exception):
    pass


async def _too_large(scope: Scope, send: Send, limit: int) -> None:
    mb = limit / (1024 * 1024)
    body = (
        "<!doctype html><html lang='vi'><meta charset='utf-8'><title>Tệp quá lớn</title>"
        "<link rel='stylesheet' href='/static/app.css'><main class='narrow'><h1>Tệp quá lớn</h1>"
        f"<p role='alert' class='error'>Tệp gửi lên vượt quá {mb:.0f} MB. Hãy chia nhỏ hoặc quét lại "
        "ở độ phân giải thấp hơn. Các trang đã quét trước đó vẫn được giữ nguyên.</p>"
        "<p><a href='javascript:history.back()'>Quay lại</a></p></main></html>"
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"text/html; charset=utf-8"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})


SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


_SECURITY_RAW = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in SECURITY_HEADERS.items()]
# over TLS only (a browser ignores it over plain HTTP): the officers' browsers go on using https for a year,
# so a PIN page is never fetched in clear after the first visit
HSTS = ("Strict-Transport-Security", "max-age=31536000")
_HSTS_RAW = (HSTS[0].lower().encode("latin-1"), HSTS[1].encode("latin-1"))


class SignedInBeforeBody:
    """Multipart bodies (uploads, up to ``upload_max_bytes``) are read only for a signed-in session: without
    a valid session cookie the request is answered with the sign-in redirect before its body is read."""

    def __init__(self, app: ASGIApp, ctx: Ctx) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") == "POST" and scope.get("path") != "/login":
            headers = dict(scope.get("headers") or [])
            if headers.get(b"content-type", b"").startswith(b"multipart/"):
                token = _cookie(headers.get(b"cookie", b"").decode("latin-1"), SESSION_COOKIE)
                if not token or not await run_in_threadpool(self._valid, token):
                    await _redirect_to_login(send, htmx=b"hx-request" in headers)
                    return
        await self.app(scope, receive, send)

    def _valid(self, token: str) -> bool:
        with self.ctx.tx() as session:
            return lookup_session(session, token=token, idle=self.ctx.idle) is not None


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _eq, value = part.strip().partition("=")
        if key == name:
            return value or None
    return None


async def _redirect_to_login(send: Send, *, htmx: bool) -> None:
    headers = [(b"hx-redirect", b"/login")] if htmx else [(b"location", b"/login")]
    await send(
        {
            "type": "http.response.start",
            "status": 200 if htmx else 303,
            "headers": [*headers, (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": b""})


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response that lacks them (a route may set its own Cache-Control),
    and HSTS to every response served over TLS.

    Plain ASGI: no extra task or body streaming per request, unlike ``@app.middleware("http")``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        extra = [*_SECURITY_RAW, _HSTS_RAW] if scope.get("scheme") == "https" else _SECURITY_RAW

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _value in headers}
                headers.extend((name, value) for name, value in extra if name not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class DiskGuard:
    """Before each request, one statvfs: a nearly full disk gets the spare file's room back
    (appliance.diskspace), so sign-in, reading and signing still have space for their few writes."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            diskspace.keep_writable(self.settings)
        await self.app(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    scanner: Scanner | None = None,
    camera: Camera | None = None,
    options: pipeline.PipelineOptions | None = None,
    separator_prefixes: Sequence[str] = pipeline.SEPARATOR_PREFIXES,
    resume: bool = True,
) -> FastAPI:
    """The web application. ``scanner`` is the shared device (None: upload only); ``camera`` a document
    camera (None: no camera button). A scanned page whose QR text starts with one of
    ``separator_prefixes`` (compared without diacritics) separates two documents of a batch. At start-up
    (``resume``) interrupted uploads and documents are finished in the background."""
    import appliance.web.models  # noqa: F401 - tables registered on the shared metadata
    from appliance.web import routes

    store = pipeline.storage(settings)
    factory = store.factory
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals["kind_labels"] = routes.KIND_LABELS_STR
    templates.env.filters["vn_state"] = workflow.label
    formatting.register(templates.env)  # vn_date, vn_datetime, vn_number, vn_percent
    static = StaticAssets(HERE / "static", prefix="/static")
    templates.env.globals["static_url"] = static.url
    jobs = Jobs(store, options or pipeline.options_from(settings), separator_prefixes=separator_prefixes)
    cache_dir = settings.data_dir / "web-cache"
    for folder in (cache_dir, settings.documents_dir, settings.originals_dir):
        folder.mkdir(parents=True, exist_ok=True)
    diskspace.ensure_reserve(settings)
    ctx = Ctx(
        settings=settings,
        factory=factory,
        templates=templates,
        jobs=jobs,
        throttle=LoginThrottle(
            factory,
            max_failures=settings.web.login_max_failures,
            lockout_s=settings.web.login_lockout_min * 60.0,
        ),
        scanner=scanner,
        camera=camera,
        secure_cookies=bool(settings.web.https_cert and settings.web.https_key),
        idle=timedelta(minutes=settings.web.idle_timeout_min),
        cache_dir=cache_dir,
        store=store,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if resume:  # finish what a crash or power cut interrupted, without anyone running a command
            jobs.resume()
            remote_batches.resume(factory, settings)  # batches waiting for approval on the phone
        yield
        jobs.shutdown()

    app = FastAPI(
        title="Số hóa hồ sơ — Trung tâm Phục vụ hành chính công",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
        redirect_slashes=False,  # its redirect is built from the Host header: never echo a client's host
    )
    app.state.ctx = ctx
    app.mount("/static", static, name="static")
    for router in routes.routers():
        app.include_router(router)

    @app.exception_handler(NeedLogin)
    async def need_login(request: Request, exc: NeedLogin) -> Response:
        target = "/login?expired=1" if exc.expired else "/login"
        if request.headers.get("hx-request"):
            return Response(status_code=200, headers={"HX-Redirect": target})
        response = RedirectResponse(target, status_code=303)
        if exc.expired:
            response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.exception_handler(NeedPasswordChange)
    async def need_password(request: Request, exc: NeedPasswordChange) -> Response:
        target = "/account/password"
        if request.headers.get("hx-request"):
            return Response(status_code=200, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        return routes.message_page(request, "Không có quyền", "Trang này chỉ dành cho lãnh đạo (người phụ trách).", 403)

    @app.exception_handler(BadCsrf)
    async def bad_csrf(request: Request, exc: BadCsrf) -> Response:
        log.warning("form refused: missing or wrong CSRF token path=%s", request.url.path)
        return routes.message_page(
            request,
            "Biểu mẫu đã hết hạn",
            "Biểu mẫu này đã cũ hoặc không hợp lệ. Hãy tải lại trang rồi thao tác lại.",
            403,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if isinstance(exc.__cause__, _TooLarge):
            mb = settings.web.upload_max_bytes / (1024 * 1024)
            return routes.message_page(
                request, "Tệp quá lớn", f"Tệp gửi lên vượt quá {mb:.0f} MB. Hãy chia nhỏ tệp.", 413
            )
        if exc.status_code == 404:
            return routes.message_page(request, "Không tìm thấy", "Không tìm thấy trang hoặc tài liệu này.", 404)
        if exc.status_code == 405:
            return routes.message_page(request, "Không hợp lệ", "Thao tác không hợp lệ.", 405)
        return routes.message_page(request, "Lỗi", "Yêu cầu không hợp lệ.", exc.status_code)

    from fastapi.exceptions import RequestValidationError

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        return routes.message_page(
            request, "Thiếu thông tin", "Biểu mẫu thiếu thông tin hoặc có giá trị không hợp lệ.", 422
        )

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Response:
        if diskspace.is_disk_full(exc):
            log.error("page failed for a full disk path=%s: %s", request.url.path, exc)
            diskspace.release_reserve(settings)
            return routes.message_page(
                request,
                "Bộ nhớ đầy",
                "Bộ nhớ của thiết bị đã đầy nên chưa ghi được thao tác này; hãy thử lại sau ít phút và báo cán bộ "
                "CNTT giải phóng dung lượng.",
                507,
            )
        log.exception("page failed path=%s", request.url.path)
        return routes.message_page(
            request,
            "Có lỗi",
            "Có lỗi không mong muốn. Công việc đã làm vẫn được giữ. Hãy thử lại; nếu vẫn lỗi, báo cán bộ kỹ thuật.",
            500,
        )

    app.add_middleware(SecurityHeaders)
    app.add_middleware(DiskGuard, settings=settings)
    app.add_middleware(SignedInBeforeBody, ctx=ctx)
    app.add_middleware(BodyLimit, limit=settings.web.upload_max_bytes)
    return app


__all__ = ["SESSION_COOKIE", "Ctx", "create_app"]
