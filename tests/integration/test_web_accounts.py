"""The account lifecycle through the web UI: a supervisor resets, deactivates, unlocks, changes roles and
CCCDs; an officer with a temporary password must choose their own before anything else."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from appliance.settings import Settings
from tests.integration.conftest import OFFICER_PW, SUPER_PW
from tests.integration.test_web import _csrf, login

NEW_PW = "mat-khau-moi-cua-toi"


def _try_login(c: TestClient, username: str, password: str) -> int:
    token = _csrf(c.get("/login").text)
    r = c.post("/login", data={"username": username, "password": password, "csrf": token}, follow_redirects=False)
    return r.status_code


def _supervisor(client: TestClient) -> tuple[TestClient, str]:
    sup = TestClient(client.app, raise_server_exceptions=False)
    return sup, login(sup, "lanhdao", SUPER_PW)


def _act(sup: TestClient, csrf: str, action: str, **form: str) -> Any:
    return sup.post(f"/admin/users/{action}", data={"csrf": csrf, "username": "canbo"} | form, follow_redirects=False)


def test_reset_then_forced_change_then_normal(client: TestClient) -> None:
    login(client)  # the officer's browser, signed in before the reset
    sup, csrf = _supervisor(client)
    r = sup.post("/admin/users/reset-password", data={"csrf": csrf, "username": "canbo"})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    m = re.search(r'id="temporary-password">([^<]+)<', r.text)
    assert m, r.text
    temporary = m.group(1)
    assert temporary not in sup.get("/admin/users").text  # shown once
    assert "Phải đổi mật khẩu" in sup.get("/admin/users").text

    assert client.get("/", follow_redirects=False).headers["location"].startswith("/login")  # session ended
    officer = TestClient(client.app, raise_server_exceptions=False)
    assert _try_login(officer, "canbo", OFFICER_PW) == 401  # the old password is refused
    token = _csrf(officer.get("/login").text)
    r = officer.post("/login", data={"username": "canbo", "password": temporary, "csrf": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/account/password"
    for path in ("/", "/sign", "/search", "/dossiers/000.00.19.H12-230412-0007"):
        r = officer.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/account/password", path
    assert officer.get("/", headers={"HX-Request": "true"}).headers["hx-redirect"] == "/account/password"
    page = officer.get("/account/password")
    assert page.status_code == 200 and "mật khẩu tạm thời" in page.text
    assert 'href="/sign"' not in page.text  # no navigation until the password is changed
    csrf_o = _csrf(page.text)
    r = officer.post("/dossiers", data={"csrf": csrf_o, "code": "000.00.19.H12-230412-0007"}, follow_redirects=False)
    assert r.headers["location"] == "/account/password"  # no form works either

    form = {"csrf": csrf_o, "old": temporary, "new": NEW_PW, "again": NEW_PW + "x"}
    r = officer.post("/account/password", data=form)
    assert r.status_code == 400 and "không giống nhau" in r.text
    r = officer.post("/account/password", data=form | {"again": NEW_PW, "old": "sai"})
    assert r.status_code == 400 and "Mật khẩu hiện tại không đúng" in r.text
    r = officer.post("/account/password", data=form | {"again": NEW_PW}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/?ok=password"
    home = officer.get(r.headers["location"])
    assert home.status_code == 200 and "Đã đổi mật khẩu." in home.text and 'href="/sign"' in home.text
    assert _try_login(TestClient(client.app), "canbo", temporary) == 401
    assert _try_login(TestClient(client.app), "canbo", NEW_PW) == 303
    trail = sup.get("/admin/users").text
    assert "Đặt lại mật khẩu" in trail and "Đổi mật khẩu" in trail and temporary not in trail


def test_an_officer_changes_their_own_password_from_the_header(client: TestClient) -> None:
    csrf = login(client)
    assert 'href="/account/password"' in client.get("/").text
    r = client.post("/account/password", data={"csrf": csrf, "old": OFFICER_PW, "new": "ngan", "again": "ngan"})
    assert r.status_code == 400 and "ít nhất 10 ký tự" in r.text
    r = client.post("/account/password", data={"csrf": csrf, "old": OFFICER_PW, "new": NEW_PW, "again": NEW_PW})
    assert r.status_code == 200 and "Đã đổi mật khẩu." in r.text  # still signed in
    assert _try_login(TestClient(client.app), "canbo", OFFICER_PW) == 401
    assert _try_login(TestClient(client.app), "canbo", NEW_PW) == 303


def test_deactivate_ends_sessions_and_reactivate_lets_in_again(client: TestClient) -> None:
    login(client)
    sup, csrf = _supervisor(client)
    r = _act(sup, csrf, "deactivate")
    assert r.status_code == 303
    page = sup.get(r.headers["location"])
    assert "Đã ngừng hoạt động tài khoản" in page.text and "Ngừng hoạt động</span>" in page.text
    assert client.get("/", follow_redirects=False).headers["location"].startswith("/login")
    assert _try_login(TestClient(client.app), "canbo", OFFICER_PW) == 401
    assert _act(sup, csrf, "activate").status_code == 303
    assert _try_login(TestClient(client.app), "canbo", OFFICER_PW) == 303


def test_the_last_supervisor_cannot_remove_themselves(client: TestClient) -> None:
    sup, csrf = _supervisor(client)
    for action, form in (("deactivate", {}), ("role", {"role": "officer"})):
        r = sup.post(f"/admin/users/{action}", data={"csrf": csrf, "username": "lanhdao"} | form)
        assert r.status_code == 400 and "không còn lãnh đạo" in r.text, action
    assert sup.get("/admin/users").status_code == 200  # still a supervisor, still signed in


def test_unlock_after_a_lockout(client: TestClient, settings: Settings) -> None:
    officer = TestClient(client.app, raise_server_exceptions=False)
    for _ in range(settings.web.login_max_failures):
        assert _try_login(officer, "canbo", "sai-mat-khau") == 401
    assert _try_login(officer, "canbo", OFFICER_PW) == 429
    sup, csrf = _supervisor(client)
    page = sup.get("/admin/users").text
    assert "Đang tạm khóa đăng nhập" in page and 'action="/admin/users/unlock"' in page
    r = _act(sup, csrf, "unlock")
    assert r.status_code == 303
    assert "Đang tạm khóa đăng nhập" not in sup.get("/admin/users").text
    assert _try_login(officer, "canbo", OFFICER_PW) == 303


def test_role_change_takes_effect_on_the_next_request(client: TestClient) -> None:
    login(client)
    assert client.get("/admin/users").status_code == 403
    sup, csrf = _supervisor(client)
    assert _act(sup, csrf, "role", role="supervisor").status_code == 303
    assert client.get("/admin/users").status_code == 200  # no new sign-in needed
    assert _act(sup, csrf, "role", role="officer").status_code == 303
    assert client.get("/admin/users").status_code == 403
    r = sup.post("/admin/users/role", data={"csrf": csrf, "username": "canbo", "role": "admin"})
    assert r.status_code == 400 and "Vai trò không hợp lệ" in r.text


def test_cccd_and_new_accounts(client: TestClient) -> None:
    sup, csrf = _supervisor(client)
    r = sup.post("/admin/users/id-number", data={"csrf": csrf, "username": "canbo", "id_number": "12345"})
    assert r.status_code == 400 and "12 chữ số" in r.text
    assert _act(sup, csrf, "id-number", id_number="001190012345").status_code == 303
    page = sup.get("/admin/users").text
    assert 'value="001190012345"' in page and "Sửa số CCCD" in page
    r = sup.post("/admin/users/reset-password", data={"csrf": csrf, "username": "khongco"})
    assert r.status_code == 400 and "Không có tài khoản này" in r.text
    new = {"csrf": csrf, "username": "canbo2", "full_name": "Lê Văn C", "role": "officer", "password": "ngan"}
    r = sup.post("/admin/users", data=new)
    assert r.status_code == 400 and "ít nhất 10 ký tự" in r.text
    r = sup.post("/admin/users", data=new | {"password": "mat-khau-ban-dau"}, follow_redirects=False)
    assert r.status_code == 303
    r = sup.post("/admin/users", data=new | {"password": "mat-khau-ban-dau"})
    assert r.status_code == 400 and "đã có" in r.text
    officer = TestClient(client.app, raise_server_exceptions=False)
    token = _csrf(officer.get("/login").text)
    form = {"username": "canbo2", "password": "mat-khau-ban-dau", "csrf": token}
    r = officer.post("/login", data=form, follow_redirects=False)
    assert r.headers["location"] == "/account/password"  # the supervisor chose it: the officer changes it
