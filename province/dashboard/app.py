"""The readiness dashboard web app (FastAPI, Jinja2 rendered on the server, no JavaScript needed).

Routes: `/` communes with verdicts (filter: province, verdict, q; sort), `/device/{id}` one box with
history charts, `/alerts`, `/incidents` (+ mark handled), `/rollout`, `/statistics` (Decision 766 per
deciding agency and per receiving centre, `/statistics.csv`), `/export.csv`, `/certificates` (the
officers' certificates per unit, `/certificates/{code}` one unit, `/certificates.csv`), `/metrics`, and
`/login` / `/logout`. Every page needs a signed-in provincial IT account and every POST the session's CSRF
token (`province.dashboard.auth`); `/metrics` is for Prometheus: a bearer token when one is configured,
otherwise loopback clients only.
"""

from __future__ import annotations

import csv
import io
import logging
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from province import roster
from province.dashboard import auth, readiness, statistics
from province.dashboard.auth import Gate, SignedIn
from province.dashboard.charts import line_chart
from province.dashboard.metrics import metrics_text
from province.dashboard.readiness import LOCAL, DashboardConfig, Row
from province.telemetry_db import DayCounters, Device, History, IncidentRow, aware

log = logging.getLogger(__name__)
TEMPLATES = Path(__file__).resolve().parent / "templates"


def _local(when: datetime | None) -> str:
    return "—" if when is None else f"{when.astimezone(LOCAL):%d/%m/%Y %H:%M}"


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]), auto_reload=False)
    env.filters["local"] = _local
    env.filters["num"] = lambda v, fmt="{:.0f}": "—" if v is None else fmt.format(v)
    return env


CERTIFICATE_LINES = 2000  # officers' lines on one /certificates page (the CSV has them all)


class SignInRequired(Exception):
    """No valid session: a page redirects to the sign-in form, anything else is refused."""


def gate_of(request: Request) -> Gate:
    gate: Gate = request.app.state.gate
    return gate


def signed_in(request: Request) -> SignedIn:
    me = gate_of(request).lookup(request.cookies.get(auth.COOKIE))
    if me is None:
        raise SignInRequired
    return me


Me = Annotated[SignedIn, Depends(signed_in)]


def same_site(request: Request) -> bool:
    """A POST's `Origin` (when the browser sends one) names this very host: no cross-site form gets in,
    even before its CSRF token is looked at."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return origin != "null" and urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()


async def posted(request: Request, me: Me) -> SignedIn:
    """The signed-in account of a POST that carries the session's CSRF token and comes from this site."""
    form = await request.form()
    if not same_site(request) or not auth.same_token(form.get("csrf"), me.csrf):
        log.warning("refused a POST to %s without a valid CSRF token (account %s)", request.url.path, me.username)
        raise HTTPException(403, "Yêu cầu không hợp lệ hoặc phiên đã hết hạn: hãy tải lại trang rồi thử lại.")
    return me


Posted = Annotated[SignedIn, Depends(posted)]


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only (never `//elsewhere` or a full URL)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def create_app(
    factory: sessionmaker[Session],
    cfg: DashboardConfig | None = None,
    *,
    metrics_token: str | None = None,
    session_idle: timedelta = timedelta(hours=1),
) -> FastAPI:
    """The dashboard app. `metrics_token`: the bearer token `/metrics` wants (None: loopback clients only)."""
    config = cfg or DashboardConfig()
    env = _env()
    app = FastAPI(title="Bảng theo dõi sẵn sàng", docs_url=None, redoc_url=None, openapi_url=None)
    auth.create_tables(factory.kw["bind"])
    app.state.gate = Gate(factory, idle=session_idle, metrics_token=metrics_token or None)

    def render(name: str, me: SignedIn | None, status_code: int = 200, **ctx: Any) -> HTMLResponse:
        html = env.get_template(name).render(now=datetime.now(UTC), me=me, **ctx)
        return HTMLResponse(html, status_code=status_code)

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    @app.exception_handler(SignInRequired)
    async def to_sign_in(request: Request, _exc: SignInRequired) -> Response:
        if request.method in ("GET", "HEAD"):
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(here, safe='/')}", status_code=303)
        return PlainTextResponse("Cần đăng nhập", status_code=401)

    def login_page(next_url: str, error: str = "", status_code: int = 200) -> HTMLResponse:
        token = secrets.token_urlsafe(32)
        page = render("login.html", None, status_code, csrf=token, next=next_url, error=error)
        page.set_cookie(auth.LOGIN_COOKIE, token, httponly=True, samesite="strict", path="/login")
        return page

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/") -> Response:  # noqa: A002 - the query parameter's name
        if gate_of(request).lookup(request.cookies.get(auth.COOKIE)) is not None:
            return RedirectResponse(safe_next(next), status_code=303)
        return login_page(safe_next(next))

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()
        target = safe_next(str(form.get("next") or "/"))
        if not same_site(request) or not auth.same_token(form.get("csrf"), request.cookies.get(auth.LOGIN_COOKIE, "")):
            return login_page(target, "Trang đăng nhập đã cũ: hãy đăng nhập lại.", 403)
        client = request.client.host if request.client else "?"
        token = gate_of(request).sign_in(str(form.get("username") or ""), str(form.get("password") or ""), client)
        if token is None:
            return login_page(target, "Sai tên đăng nhập hoặc mật khẩu (hoặc tạm khóa vì nhập sai nhiều lần).", 401)
        response = RedirectResponse(target, status_code=303)
        response.delete_cookie(auth.LOGIN_COOKIE, path="/login")
        response.set_cookie(
            auth.COOKIE, token, httponly=True, samesite="lax", secure=request.url.scheme == "https", path="/"
        )
        return response

    @app.post("/logout")
    def logout(request: Request, _me: Posted) -> Response:
        gate_of(request).sign_out(request.cookies.get(auth.COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(auth.COOKIE, path="/")
        return response

    refreshed = [float("-inf")]
    lock = threading.Lock()

    def refresh_all() -> None:
        """Recompute every verdict row (what changes with time alone: connectivity, "lost for N days")."""
        if not lock.acquire(blocking=False):
            return  # one refresh at a time; the pages keep reading the current rows meanwhile
        try:
            t0 = time.monotonic()
            with factory() as s, s.begin():
                n = readiness.refresh_rows(s, config, datetime.now(UTC))
            refreshed[0] = time.monotonic()
            log.debug("dashboard rows refreshed: %d in %.0f ms", n, (refreshed[0] - t0) * 1000)
        except Exception:  # the pages still show the rows as of the previous refresh
            log.exception("dashboard rows refresh failed")
        finally:
            lock.release()

    def fresh() -> None:
        """Start a background refresh when the rows are older than `refresh_s` (never in the request)."""
        if time.monotonic() - refreshed[0] >= config.refresh_s and not lock.locked():
            threading.Thread(target=refresh_all, name="dashboard-rows", daemon=True).start()

    refresh_all()  # rows as of now, before the first request

    def pages(total: int, page: int) -> dict[str, int]:
        last = max(1, -(-total // config.page_size))
        return {"page": min(max(1, page), last), "last": last, "size": config.page_size}

    @app.get("/", response_class=HTMLResponse)
    def index(
        me: Me, province: str = "", verdict: str = "", q: str = "", sort: str = "verdict", desc: int = 0, page: int = 1
    ) -> HTMLResponse:
        """Province summary counts, then the units (not ready first by default), one page at a time."""
        fresh()
        with factory() as s:
            provinces, totals, conn = readiness.summaries(s)
            shown = readiness.query_rows(s, province=province, verdict=verdict, q=q, limit=0)[1]
            nav = pages(shown, page)
            chosen, _ = readiness.query_rows(
                s,
                province=province,
                verdict=verdict,
                q=q,
                sort=sort,
                desc=bool(desc),
                limit=config.page_size,
                offset=(nav["page"] - 1) * config.page_size,
            )
            n_alerts, n_incidents = readiness.count_open(s)
        groups: dict[tuple[str, str], list[Row]] = {}
        for r in chosen:
            groups.setdefault((r.province_code, r.province_name), []).append(r)
        return render(
            "index.html",
            me,
            groups=groups,
            provinces=provinces,
            totals=totals,
            conn=conn,
            shown=shown,
            total=sum(totals.values()),
            nav=nav,
            f={"province": province, "verdict": verdict, "q": q, "sort": sort, "desc": desc},
            labels=readiness.VERDICT_LABEL,
            conn_labels=readiness.CONNECTIVITY_LABEL,
            n_alerts=n_alerts,
            n_incidents=n_incidents,
            cfg=config,
        )

    @app.get("/device/{device_id}", response_class=HTMLResponse)
    def device(me: Me, device_id: str, days: int = 7) -> HTMLResponse:
        now = datetime.now(UTC)
        with factory() as s:
            dev = s.get(Device, device_id)
            if dev is None:
                raise HTTPException(404, "Không có thiết bị này")
            row = next(iter(readiness.build_rows(s, config, now, device_id=device_id)), None)
            since = now - timedelta(days=max(1, min(days, 90)))
            hist = list(
                s.scalars(
                    select(History).where(History.device_id == device_id, History.at >= since).order_by(History.at)
                )
            )
            counters = list(
                s.scalars(
                    select(DayCounters)
                    .where(DayCounters.device_id == device_id)
                    .order_by(DayCounters.day.desc())
                    .limit(31)
                )
            )
            incidents = list(
                s.scalars(
                    select(IncidentRow)
                    .where(IncidentRow.device_id == device_id)
                    .order_by(IncidentRow.at.desc())
                    .limit(20)
                )
            )
        pts = [(aware(h.at) or now, h) for h in hist]
        charts = [
            line_chart([(t, h.disk_used_pct) for t, h in pts], title="Ổ đĩa đã dùng (%)", unit="%", limit=85.0),
            line_chart([(t, h.cpu_temp_c) for t, h in pts], title="Nhiệt độ CPU (°C)", unit="°"),
            line_chart(
                [(t, None if h.outbox_depth is None else float(h.outbox_depth)) for t, h in pts],
                title="Gói chờ gửi về tỉnh",
            ),
            line_chart([(t, h.link_rtt_ms) for t, h in pts], title="Độ trễ đường truyền (ms)", unit=""),
        ]
        return render(
            "device.html",
            me,
            dev=dev,
            row=row,
            charts=charts,
            counters=counters,
            incidents=incidents,
            days=days,
            cfg=config,
        )

    @app.get("/alerts", response_class=HTMLResponse)
    def alerts(me: Me) -> HTMLResponse:
        with factory() as s:
            items = readiness.open_alerts(s)
            communes = {str(d): str(c) for d, c in s.execute(select(Device.device_id, Device.commune_code))}
        return render("alerts.html", me, alerts=items, communes=communes)

    @app.get("/incidents", response_class=HTMLResponse)
    def incidents(me: Me, show: str = "open") -> HTMLResponse:
        with factory() as s:
            if show == "all":
                items = list(s.scalars(select(IncidentRow).order_by(IncidentRow.at.desc()).limit(500)))
            else:
                items = readiness.open_incidents(s)
        return render("incidents.html", me, incidents=items, show=show)

    @app.post("/incidents/{incident_id}/handled")
    def handled(incident_id: str, me: Posted) -> Response:
        if not me.operator:  # a viewer account reads; marking handled is an operator's act
            raise HTTPException(403, "Tài khoản chỉ được xem, không được đánh dấu đã xử lý")
        by = (me.full_name or me.username)[:200]  # the signed-in account, not a name typed in the form
        with factory() as s, s.begin():
            row = s.get(IncidentRow, incident_id)
            if row is None:
                raise HTTPException(404, "Không có sự cố này")
            if row.handled_at is None:
                row.handled_at = datetime.now(UTC)
                row.handled_by = by
                log.info("incident %s marked handled by %s", incident_id, me.username)
        return RedirectResponse("/incidents", status_code=303)

    @app.get("/rollout", response_class=HTMLResponse)
    def rollout(me: Me, province: str = "", page: int = 1) -> HTMLResponse:
        fresh()
        now = datetime.now(UTC)
        with factory() as s:
            by_level = readiness.rollout_counts(s)
            nav = pages(readiness.query_rows(s, province=province, limit=0)[1], page)
            chosen, _ = readiness.query_rows(
                s, province=province, sort="name", limit=config.page_size, offset=(nav["page"] - 1) * config.page_size
            )
            provinces = readiness.summaries(s)[0]
            deadlines = readiness.deadlines(s, config)
        return render(
            "rollout.html",
            me,
            deadlines=deadlines,
            level_labels={"commune": "Cấp xã", "province": "Cấp tỉnh"},
            rows=chosen,
            today=now.astimezone(LOCAL).date(),
            by_level=by_level,
            cfg=config,
            labels=readiness.ROLLOUT_LABEL,
            nav=nav,
            provinces=provinces,
            f={"province": province},
        )

    @app.get("/certificates", response_class=HTMLResponse)
    def certificates(me: Me, province: str = "", show: str = "attention", page: int = 1) -> HTMLResponse:
        """Officers' certificates: counts per unit (grouped by province), then the officers' lines that need
        attention (every line with `show=all`)."""
        now = datetime.now(UTC)
        with factory() as s:
            units = roster.units_view(s, now, province=province)
            provinces = readiness.summaries(s)[0]
        nav = pages(len(units), page)
        shown = units[(nav["page"] - 1) * config.page_size : nav["page"] * config.page_size]
        groups: dict[tuple[str, str], list[roster.UnitCertificates]] = {}
        for u in shown:
            groups.setdefault((u.province_code, u.province_name), []).append(u)
        lines = [(u, o) for u in units for o in u.lines if show == "all" or o.verdict != roster.VALID]
        officers = [o for u in units for o in u.officers]
        totals = {
            "units": len(units),
            "usable": sum(1 for o in officers if o.usable),
            "without": sum(1 for o in officers if not o.usable),
            "expiring": sum(1 for o in officers if o.verdict == roster.EXPIRING),
            "never_seen": sum(1 for o in officers if o.verdict == roster.NEVER_SEEN),
            "no_org": sum(1 for u in units if (u.reported or u.has_list) and not u.org_usable),
        }
        return render(
            "certificates.html",
            me,
            groups=groups,
            lines=lines[:CERTIFICATE_LINES],
            more=max(0, len(lines) - CERTIFICATE_LINES),
            totals=totals,
            provinces=provinces,
            nav=nav,
            f={"province": province, "show": show},
        )

    @app.get("/certificates/{code}", response_class=HTMLResponse)
    def certificate_unit(me: Me, code: str) -> HTMLResponse:
        with factory() as s:
            found = roster.units_view(s, datetime.now(UTC), communes={code})
        if not found:
            raise HTTPException(404, "Không có đơn vị này")
        u = found[0]
        lines = [(u, o) for o in u.lines]
        return render("certificate_unit.html", me, u=u, lines=lines)

    @app.get("/certificates.csv")
    def certificates_csv(_me: Me, province: str = "", by: str = "officer") -> Response:
        """For the report to the provincial People's Committee: one line per officer (and organisation
        certificate) of every unit, or one line per unit with its counts (`by=unit`)."""
        with factory() as s:
            units = roster.units_view(s, datetime.now(UTC), province=province)
        buf = io.StringIO()
        out = csv.writer(buf)
        if by == "unit":
            out.writerow(
                [
                    "ma_tinh", "tinh", "ma_don_vi", "don_vi", "thiet_bi", "can_bo", "co_chung_thu_dung_duoc",
                    "khong_co_chung_thu_dung_duoc", "sap_het_han", "chua_thay_ky", "chung_thu_to_chuc",
                    "to_chuc_het_han",
                ]
            )  # fmt: skip
            for u in units:
                org = u.organisation
                out.writerow(
                    [
                        u.province_code, u.province_name, u.commune_code, u.name, " ".join(u.devices),
                        len(u.officers), u.usable, u.without, u.count(roster.EXPIRING), u.count(roster.NEVER_SEEN),
                        u.org_label, org.not_after.date().isoformat() if org and org.not_after else "",
                    ]
                )  # fmt: skip
            name = "chung-thu-so-don-vi.csv"
        else:
            out.writerow(
                [
                    "ma_tinh", "tinh", "ma_don_vi", "don_vi", "loai", "ho_ten", "chuc_danh", "tai_khoan",
                    "danh_gia", "con_ngay", "het_han", "chu_the", "so_serial", "noi_cap", "khoa", "pss",
                    "thu_hoi", "lan_cuoi_thay", "thiet_bi",
                ]
            )  # fmt: skip
            for u in units:
                for o in u.lines:
                    out.writerow(
                        [
                            u.province_code, u.province_name, u.commune_code, u.name,
                            "tổ chức" if o.role == "organisation" else "cán bộ", o.full_name, o.position,
                            o.username, o.label, "" if o.days_left is None else o.days_left,
                            o.not_after.isoformat() if o.not_after else "", o.subject or "", o.serial or "",
                            o.issuer or "", o.key or "", "" if o.pss is None else ("có" if o.pss else "không"),
                            o.revocation or "", o.last_seen.isoformat() if o.last_seen else "", o.device_id or "",
                        ]
                    )  # fmt: skip
            name = "chung-thu-so-can-bo.csv"
        return Response(
            "\ufeff" + buf.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @app.get("/statistics", response_class=HTMLResponse)
    def statistics_page(me: Me, month: str = "", province: str = "") -> HTMLResponse:
        """Decision 766 figures of a month (or the last `rates_days` days) per deciding agency across all
        boxes, and per receiving centre."""
        chosen = statistics.period(month, today=datetime.now(UTC).astimezone(LOCAL).date(), days=config.rates_days)
        with factory() as s:
            agencies = statistics.per_agency(s, chosen, province=province)
            centres = statistics.per_centre(s, chosen, province=province)
            provinces = readiness.summaries(s)[0]
        return render(
            "statistics.html",
            me,
            period=chosen,
            agencies=agencies,
            centres=centres,
            total=statistics.total(centres),
            provinces=provinces,
            f={"month": month, "province": province},
            cfg=config,
        )

    @app.get("/statistics.csv")
    def statistics_csv(_me: Me, month: str = "", province: str = "", by: str = "agency") -> Response:
        """The same figures as a CSV: one line per deciding agency, or per receiving centre (`by=centre`)."""
        chosen = statistics.period(month, today=datetime.now(UTC).astimezone(LOCAL).date(), days=config.rates_days)
        with factory() as s:
            if by == "centre":
                lines = statistics.per_centre(s, chosen, province=province)
            else:
                lines = statistics.per_agency(s, chosen, province=province)
        buf = io.StringIO()
        out = csv.writer(buf)
        unit = "trung_tam_tiep_nhan" if by == "centre" else "co_quan_giai_quyet"
        out.writerow(
            [
                "tu_ngay", "den_ngay", f"ma_{unit}", unit, "ho_so_tiep_nhan", "ho_so_co_thanh_phan_so_hoa",
                "ty_le_so_hoa_pct", "ket_qua_dien_tu", "ty_le_ket_qua_dien_tu_pct", "ho_so_tai_su_dung", "so_thiet_bi",
            ]
        )  # fmt: skip
        first, last = chosen.bounds
        for ln in lines:
            out.writerow(
                [
                    first, last, ln.code, ln.name, ln.received, ln.digitized,
                    "" if ln.digitized_pct is None else ln.digitized_pct, ln.results,
                    "" if ln.results_pct is None else ln.results_pct, ln.reused, ln.boxes,
                ]
            )  # fmt: skip
        name = f"chi-so-766-{'trung-tam' if by == 'centre' else 'co-quan'}-{first}-{last}.csv"
        return Response(
            "\ufeff" + buf.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @app.get("/export.csv")
    def export(
        _me: Me, province: str = "", verdict: str = "", q: str = "", sort: str = "verdict", desc: int = 0
    ) -> Response:
        fresh()
        with factory() as s:
            chosen = readiness.query_rows(s, province=province, verdict=verdict, q=q, sort=sort, desc=bool(desc))[0]
        buf = io.StringIO()
        out = csv.writer(buf)
        out.writerow(
            [
                "ma_tinh", "tinh", "ma_xa", "xa", "thiet_bi", "danh_gia", "ket_noi", "lan_cuoi_lien_lac",
                "van_de", "o_dia_pct", "chung_thu_con_ngay", "goi_cho_gui", "ho_so_tiep_nhan_30n",
                "ty_le_so_hoa_pct", "ty_le_ket_qua_dien_tu_pct", "trien_khai", "han_trien_khai", "goi_dau_tien",
            ]
        )  # fmt: skip
        for r in chosen:
            out.writerow(
                [
                    r.province_code, r.province_name, r.commune_code, r.name, r.device_id or "", r.verdict_label,
                    r.connectivity_label, r.last_seen.isoformat() if r.last_seen else "",
                    "; ".join(p for _, p in r.problems), "" if r.disk_used_pct is None else r.disk_used_pct,
                    "" if r.min_cert_days is None else r.min_cert_days,
                    "" if r.outbox_depth is None else r.outbox_depth,
                    r.received, "" if r.digitized_pct is None else r.digitized_pct,
                    "" if r.results_pct is None else r.results_pct, r.rollout_label,
                    r.deadline.isoformat() if r.deadline else "",
                    r.first_package_at.isoformat() if r.first_package_at else "",
                ]
            )  # fmt: skip
        return Response(
            "\ufeff" + buf.getvalue(),  # BOM: Excel opens Vietnamese text correctly
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="san-sang.csv"'},
        )

    @app.get("/metrics")
    def metrics(request: Request) -> PlainTextResponse:
        gate = gate_of(request)
        if not gate.metrics_allowed(
            request.headers.get("authorization"), request.client.host if request.client else None
        ):
            if gate.metrics_token:
                return PlainTextResponse("bearer token required", 401, headers={"WWW-Authenticate": "Bearer"})
            return PlainTextResponse("metrics are served to loopback clients only", 403)
        fresh()
        with factory() as s:
            text = metrics_text(s)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    return app
