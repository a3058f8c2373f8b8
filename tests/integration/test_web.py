"""The web UI through FastAPI's TestClient: sign-in, security rules, bad input, search (no browser)."""

from __future__ import annotations

import io
import re
import struct
import zlib
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from PIL import Image

from appliance import db
from appliance.records import DocumentInfo
from appliance.settings import Settings
from appliance.textindex import fold
from appliance.web.app import SESSION_COOKIE, create_app
from appliance.web.models import WebSession
from tests.integration.conftest import OFFICER_PW, SUPER_PW

CODE = "000.00.19.H12-230412-0007"


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def login(c: TestClient, username: str = "canbo", password: str = OFFICER_PW) -> str:
    token = _csrf(c.get("/login").text)
    r = c.post("/login", data={"username": username, "password": password, "csrf": token}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return _csrf(c.get("/").text)


def _open_dossier(c: TestClient, csrf: str) -> None:
    r = c.post("/dossiers", data={"code": CODE, "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303


def test_pages_need_sign_in(client: TestClient) -> None:
    for path in ("/", "/sign", "/track", "/search", "/backlog", "/stats", "/stats.csv", "/admin/users"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path


def test_session_cookie_flags_and_headers(client: TestClient) -> None:
    token = _csrf(client.get("/login").text)
    r = client.post("/login", data={"username": "canbo", "password": OFFICER_PW, "csrf": token}, follow_redirects=False)
    cookie = [h for h in r.headers.get_list("set-cookie") if h.startswith(f"{SESSION_COOKIE}=")][0]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    page = client.get("/")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


def test_every_form_rejects_a_missing_or_wrong_csrf_token(client: TestClient) -> None:
    csrf = login(client)
    _open_dossier(client, csrf)
    posts = [
        "/dossiers",
        "/dossiers/receipt",
        f"/dossiers/{CODE}/scan",
        f"/dossiers/{CODE}/upload",
        f"/dossiers/{CODE}/camera",
        f"/dossiers/{CODE}/reuse",
        "/documents/00000000-0000-0000-0000-000000000000/review",
        "/documents/00000000-0000-0000-0000-000000000000/pages/1/rotate",
        "/documents/00000000-0000-0000-0000-000000000000/replace/1",
        "/documents/00000000-0000-0000-0000-000000000000/split",
        "/documents/00000000-0000-0000-0000-000000000000/correct",
        "/sign",
        "/sign/remote-profile",
        "/track/1/retry",
        "/backlog/scan",
        "/backlog/upload",
        "/backlog/camera",
        "/incident",
        "/account/password",
        "/logout",
    ]
    for path in posts:
        for data in ({}, {"csrf": "forged"}):
            r = client.post(path, data=data | {"code": CODE, "preset": "a4-grey", "doc": "x"})
            assert r.status_code == 403, (path, data, r.status_code)
            assert "Biểu mẫu đã hết hạn" in r.text
    # the login form has its own token (double-submit cookie)
    r = client.post("/login", data={"username": "canbo", "password": OFFICER_PW, "csrf": "forged"})
    assert r.status_code == 403
    # every POST route of the app is in the list above (or is the login / a supervisor form)
    from appliance.web.routes import routers

    app_posts = {
        route.path  # type: ignore[attr-defined]
        for router in routers()
        for route in router.routes
        if "POST" in getattr(route, "methods", set())
    }
    templated = {re.sub(r"\{[^}]+\}", "*", p) for p in app_posts}
    concrete = {re.sub(r"/(000\.[^/]+|0{8}-[0-9-]+|1)(?=/|$)", "/*", p).replace("/rotate", "/*") for p in posts}
    supervisor_posts = {
        "/admin/users",
        "/admin/users/reset-password",
        "/admin/users/deactivate",
        "/admin/users/activate",
        "/admin/users/unlock",
        "/admin/users/role",
        "/admin/users/id-number",
        "/backlog/plan",
    }
    assert templated - concrete == {"/login"} | supervisor_posts, templated - concrete
    sup = TestClient(client.app, raise_server_exceptions=False)
    login(sup, "lanhdao", SUPER_PW)
    for path in sorted(supervisor_posts):
        for data in ({}, {"csrf": "forged"}):
            r = sup.post(path, data=data | {"username": "canbo", "role": "officer", "target": "5"})
            assert r.status_code == 403 and "Biểu mẫu đã hết hạn" in r.text, path


def test_login_starts_a_new_session_no_fixation(client: TestClient, settings: Settings) -> None:
    planted = "attacker-chosen-session-id"
    client.cookies.set(SESSION_COOKIE, planted, domain="testserver.local")
    login(client)
    now = client.cookies.get(SESSION_COOKIE, domain="testserver.local")
    assert now and now != planted
    attacker = TestClient(client.app, raise_server_exceptions=False)
    attacker.cookies.set(SESSION_COOKIE, planted)
    assert attacker.get("/", follow_redirects=False).status_code == 303
    # signing out kills the session on the server, not just the cookie
    csrf = _csrf(client.get("/").text)
    client.post("/logout", data={"csrf": csrf})
    replay = TestClient(client.app, raise_server_exceptions=False)
    replay.cookies.set(SESSION_COOKIE, now)
    assert replay.get("/", follow_redirects=False).status_code == 303


def test_supervisor_pages_refuse_officers(client: TestClient) -> None:
    login(client)
    r = client.get("/admin/users")
    assert r.status_code == 403 and "chỉ dành cho lãnh đạo" in r.text
    sup = TestClient(client.app, raise_server_exceptions=False)
    login(sup, "lanhdao", SUPER_PW)
    assert sup.get("/admin/users").status_code == 200


def test_brute_force_locks_the_account(client: TestClient, settings: Settings) -> None:
    for _ in range(settings.web.login_max_failures):
        token = _csrf(client.get("/login").text)
        r = client.post("/login", data={"username": "canbo", "password": "sai-mat-khau", "csrf": token})
        assert r.status_code == 401 and "không đúng" in r.text
    token = _csrf(client.get("/login").text)
    r = client.post("/login", data={"username": "canbo", "password": OFFICER_PW, "csrf": token}, follow_redirects=False)
    assert r.status_code == 429 and "tạm khóa" in r.text
    assert SESSION_COOKIE not in client.cookies


def test_idle_session_expires(client: TestClient, settings: Settings) -> None:
    login(client)
    factory = client.app.state.ctx.factory  # type: ignore[attr-defined]
    with db.transaction(factory) as session:
        for row in session.query(WebSession):
            row.last_seen = datetime.now(UTC) - timedelta(minutes=settings.web.idle_timeout_min + 1)
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?expired=1"
    assert "hết hạn" in client.get("/login?expired=1").text


def test_malformed_dossier_codes_get_vietnamese_messages(client: TestClient) -> None:
    csrf = login(client)
    r = client.post("/dossiers", data={"code": "000.00.19.H12-231399-7", "tthc_code": "abc", "csrf": csrf})
    assert r.status_code == 400
    assert "Mã hồ sơ không đúng dạng" in r.text
    assert 'aria-invalid="true"' in r.text
    assert client.get("/dossiers/..%2F..%2Fetc").status_code == 404
    # opening twice (double submit) opens the same dossier
    for _ in range(2):
        r = client.post("/dossiers", data={"code": f" {CODE.lower()} ", "csrf": csrf}, follow_redirects=False)
        assert r.headers["location"] == f"/dossiers/{CODE}"


def _forged_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb)."""
    buf = io.BytesIO()
    Image.new("L", (8, 8), 255).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = data[12:29]  # b"IHDR" + 13 bytes
    body = b"IHDR" + struct.pack(">II", width, height) + bytes(ihdr[12:17])
    data[12:29] = body
    data[29:33] = struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    return bytes(data)


def test_bad_uploads_get_clear_messages_and_lose_nothing(client: TestClient, settings: Settings) -> None:
    csrf = login(client)
    _open_dossier(client, csrf)
    url = f"/dossiers/{CODE}/upload"
    evil = '<img src=x onerror="alert(1)">.png'
    cases = [
        (("files", (evil, b"not an image at all", "image/png")), "không"),
        (("files", ("../../../etc/passwd.png", b"junk", "image/png")), "passwd.png"),
        (("files", ("so-do.exe", b"MZ....", "application/octet-stream")), "không phải ảnh hoặc PDF"),
        (("files", ("bom.png", _forged_png(40000, 40000), "image/png")), "bom.png"),
    ]
    for file, expected in cases:
        r = client.post(url, data={"csrf": csrf}, files=[file])
        assert r.status_code == 400, r.text
        assert expected in r.text
        assert "<img src=x" not in r.text  # the file name is escaped
    shown = client.post(url, data={"csrf": csrf}, files=[cases[0][0]]).text
    assert "img src_x onerror" in shown  # made harmless, and shown
    assert not (settings.data_dir.parent / "etc").exists()
    big = b"\x00" * (settings.web.upload_max_bytes + 10)
    r = client.post(url, data={"csrf": csrf}, files=[("files", ("lon.png", big, "image/png"))])
    assert r.status_code == 413 and "quá" in r.text
    # the dossier and its page are still there
    assert client.get(f"/dossiers/{CODE}").status_code == 200


def test_double_submitted_upload_starts_one_job(client: TestClient) -> None:
    csrf = login(client)
    _open_dossier(client, csrf)
    buf = io.BytesIO()
    Image.new("L", (200, 280), 255).save(buf, format="PNG", dpi=(50, 50))
    locations = []
    for _ in range(2):
        r = client.post(
            f"/dossiers/{CODE}/upload",
            data={"csrf": csrf, "nonce": "same-form"},
            files=[("files", ("trang.png", buf.getvalue(), "image/png"))],
            follow_redirects=False,
        )
        assert r.status_code == 303
        locations.append(r.headers["location"])
    assert locations[0] == locations[1]
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    jobs = ctx.jobs.for_dossier(CODE)
    assert len(jobs) == 1
    _wait(jobs[0])


def _wait(job: object) -> None:
    """Let a background job end before the test's database goes away (no timing asserted)."""
    import time

    for _ in range(600):
        if not job.running:  # type: ignore[attr-defined]
            return
        time.sleep(0.1)


def _document_with_text(client: TestClient, text: str) -> str:
    factory = client.app.state.ctx.factory  # type: ignore[attr-defined]
    with db.transaction(factory) as session:
        doc = db.create_document(session, source="file", pages=[("0" * 64, "a.png", 300.0)], dossier_code=CODE)
        doc.state = db.DocState.DIGITIZED
        session.add(
            DocumentInfo(
                document_id=doc.id,
                kind="component",
                fields={"trich_yeu": text[:60]},
                backlog=False,
                text=text,
                text_folded=fold(f"{CODE} {text}"),
            )
        )
        return doc.id


def test_search_with_and_without_diacritics(client: TestClient) -> None:
    login(client)
    doc_id = _document_with_text(client, "QUYẾT ĐỊNH về việc công nhận hộ gia đình văn hóa năm 2024")
    _document_with_text(client, "Biên bản họp thôn")
    for q in ("quyet dinh", "Quyết định", "QUYET DINH van hoa", "230412-0007 cong nhan"):
        r = client.get("/search", params={"q": q})
        assert r.status_code == 200
        assert f"/documents/{doc_id}" in r.text, q
        assert "1 kết quả" in r.text, q
    assert "0 kết quả" in client.get("/search", params={"q": "giấy khai sinh"}).text
    assert "0 kết quả" in client.get("/search", params={"q": "%_\\"}).text


def test_ocr_text_is_escaped(client: TestClient) -> None:
    login(client)
    doc_id = _document_with_text(client, 'Quyết định <script>alert("x")</script> số 12')
    r = client.get("/search", params={"q": "quyet dinh so 12"})
    assert "<script>alert" not in r.text and "&lt;script&gt;" in r.text
    page = client.get(f"/documents/{doc_id}")
    assert page.status_code == 200 and "<script>alert" not in page.text


def test_statistics_csv(client: TestClient) -> None:
    csrf = login(client)
    _open_dossier(client, csrf)
    _document_with_text(client, "Tờ khai")
    r = client.get("/stats.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = r.content.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("thang,ho_so_tiep_nhan,ho_so_da_so_hoa")
    month = f"{datetime.now(UTC):%Y-%m}"
    row = next(line for line in lines if line.startswith(month)).split(",")
    assert row[1:4] == ["1", "1", "100.0"]


def test_backlog_plan_is_for_supervisors(client: TestClient) -> None:
    csrf = login(client)
    assert client.post("/backlog/plan", data={"target": "120", "csrf": csrf}).status_code == 403
    sup = TestClient(client.app, raise_server_exceptions=False)
    csrf = login(sup, "lanhdao", SUPER_PW)
    r = sup.post("/backlog/plan", data={"target": "120", "csrf": csrf})
    assert r.status_code == 200 and "/ 120" in r.text


def test_lockout_and_double_submit_guard_survive_a_restart(client: TestClient, settings: Settings) -> None:
    """Both live in the database: a new app (a restarted service) still refuses and still deduplicates."""
    for _ in range(settings.web.login_max_failures):
        token = _csrf(client.get("/login").text)
        client.post("/login", data={"username": "canbo", "password": "sai-mat-khau", "csrf": token})
    sup = TestClient(client.app, raise_server_exceptions=False)
    csrf = login(sup, "lanhdao", SUPER_PW)
    _open_dossier(sup, csrf)
    buf = io.BytesIO()
    Image.new("L", (200, 280), 255).save(buf, format="PNG", dpi=(50, 50))
    form = {"csrf": csrf, "nonce": "form-before-restart"}
    first = sup.post(
        f"/dossiers/{CODE}/upload",
        data=form,
        files=[("files", ("a.png", buf.getvalue(), "image/png"))],
        follow_redirects=False,
    )
    assert first.status_code == 303
    old_jobs = client.app.state.ctx.jobs  # type: ignore[attr-defined]
    _wait(old_jobs.for_dossier(CODE)[0])

    restarted = create_app(settings)
    with TestClient(restarted, raise_server_exceptions=False) as again:
        token = _csrf(again.get("/login").text)
        r = again.post("/login", data={"username": "canbo", "password": OFFICER_PW, "csrf": token})
        assert r.status_code == 429 and "tạm khóa" in r.text
        csrf2 = login(again, "lanhdao", SUPER_PW)
        r = again.post(
            f"/dossiers/{CODE}/upload",
            data={"csrf": csrf2, "nonce": "form-before-restart"},
            files=[("files", ("a.png", buf.getvalue(), "image/png"))],
            follow_redirects=False,
        )
        assert r.status_code == 303 and r.headers["location"] == first.headers["location"]
        assert restarted.state.ctx.jobs.for_dossier(CODE) == []  # no second job after the restart
    with db.transaction(restarted.state.ctx.factory) as session:
        assert session.query(db.Document).filter_by(dossier_code=CODE).count() == 1


def test_reuse_of_a_digitized_document_is_counted(client: TestClient) -> None:
    csrf = login(client)
    _open_dossier(client, csrf)
    other = "000.00.19.H12-230412-0008"
    client.post("/dossiers", data={"code": other, "csrf": csrf})
    source_id = _document_with_text(client, "Giấy khai sinh số 123/2020 của Nguyễn Văn An")
    factory = client.app.state.ctx.factory  # type: ignore[attr-defined]
    with db.transaction(factory) as session:
        src = session.get(db.Document, source_id)
        assert src is not None
        src.pdf_path, src.pdf_sha256 = "/nonexistent/source.pdf", "f" * 64
    page = client.get("/search", params={"q": "khai sinh nguyen van an", "dossier": other})
    assert "Dùng lại giấy tờ đã số hóa" in page.text and f"/dossiers/{other}/reuse" in page.text
    without = client.get("/search", params={"q": "khai sinh nguyen van an"})
    assert "Dùng lại giấy tờ đã số hóa" not in without.text
    form = {"csrf": _csrf(page.text), "doc": source_id, "nonce": "reuse-1"}
    r = client.post(f"/dossiers/{other}/reuse", data=form, follow_redirects=False)
    assert r.status_code == 303 and "ok=reused" in r.headers["location"]
    copy_id = r.headers["location"].split("/documents/")[1].split("?")[0]
    with db.transaction(factory) as session:
        copy = session.get(db.Document, copy_id)
        src = session.get(db.Document, source_id)
        assert copy is not None and src is not None
        assert copy.dossier_code == other and copy.state == db.DocState.REVIEWED  # the officer chose it
        assert [p.original_sha256 for p in copy.pages] == [p.original_sha256 for p in src.pages]
        info = session.get(DocumentInfo, copy_id)
        assert info is not None and info.kind == "component" and "khai sinh" in info.text_folded
    assert "dùng lại từ" in client.get(f"/documents/{copy_id}").text.lower()
    # the same paper again (new form): nothing new, the officer is sent to the copy already there
    again = client.post(f"/dossiers/{other}/reuse", data=form | {"nonce": "reuse-2"}, follow_redirects=False)
    assert again.headers["location"] == f"/documents/{copy_id}?ok=have"
    lines = client.get("/stats.csv").content.decode("utf-8-sig").splitlines()
    month = f"{datetime.now(UTC):%Y-%m}"
    row = next(line for line in lines if line.startswith(month)).split(",")
    assert row[1] == "2" and row[6] == "1"  # two dossiers received, one reused a digitized document
