"""The sign-in lockout is decided atomically: parallel wrong passwords cannot outrun it."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from appliance.settings import Settings
from tests.integration.test_web import OFFICER_PW, login


def _attempt(app: object, password: str) -> int:
    c = TestClient(app, raise_server_exceptions=False)  # type: ignore[arg-type] # no lifespan: the app runs
    token = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text)
    assert token
    r = c.post("/login", data={"username": "canbo", "password": password, "csrf": token.group(1)})
    return r.status_code


def test_forty_parallel_wrong_passwords_get_only_the_allowed_evaluations(
    client: TestClient,
    settings: Settings,
) -> None:
    limit = settings.web.login_max_failures
    with ThreadPoolExecutor(max_workers=20) as pool:
        codes = list(pool.map(lambda _i: _attempt(client.app, "sai-mat-khau"), range(40)))
    assert codes.count(401) == limit, codes  # evaluated, wrong
    assert codes.count(429) == 40 - limit, codes  # refused before the password was looked at
    assert _attempt(client.app, OFFICER_PW) == 429  # locked even with the right password


def test_a_right_password_gives_its_reservation_back(client: TestClient, settings: Settings) -> None:
    limit = settings.web.login_max_failures
    for _ in range(3 * limit):  # many good sign-ins from one PC never lock it (nor the account)
        login(client)
    assert _attempt(client.app, "sai") == 401
    login(client)  # a success clears the account's failures
    for _ in range(limit - 1):
        assert _attempt(client.app, "sai") == 401
    login(client)
