"""Hostile requests that used to reach a crash or leak: absurd integers in URLs, multipart bodies sent
before signing in, and a trailing-slash redirect built from a forged Host header."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi.testclient import TestClient

from appliance.settings import Settings
from tests.integration.test_web import CODE, _open_dossier, login

HUGE = str(2**64 + 7)


def test_integers_beyond_the_database_range_are_refused_not_a_crash(client: TestClient) -> None:
    csrf = login(client)
    _open_dossier(client, csrf)
    doc = "00000000-0000-0000-0000-000000000000"
    gets = [f"/jobs/x/thumb/{HUGE}.jpg", f"/documents/{doc}/pages/{HUGE}.jpg", f"/documents/{doc}?page={HUGE}"]
    for path in gets:
        assert client.get(path).status_code in {404, 422}, path
    posts = [f"/documents/{doc}/pages/{HUGE}/rotate", f"/documents/{doc}/replace/{HUGE}", f"/track/{HUGE}/retry"]
    for path in posts:
        assert client.post(path, data={"csrf": csrf}).status_code in {404, 422}, path


def _asgi_post(app: Any, path: str, body_chunks: list[bytes], cookie: str = "") -> tuple[int, dict[str, str], int]:
    """POST through the ASGI app directly; returns (status, headers, how many body chunks were read)."""
    read = 0
    chunks = list(body_chunks)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        if chunks:
            read += 1
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [
        (b"content-type", b"multipart/form-data; boundary=xyz"),
        (b"content-length", str(sum(len(c) for c in body_chunks)).encode()),
        (b"host", b"box.local"),
    ]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "scheme": "http",
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 5000),
        "http_version": "1.1",
        "root_path": "",
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, read


def test_an_upload_without_a_session_is_refused_before_its_body_is_read(client: TestClient) -> None:
    body = [b"--xyz\r\n", b"x" * 1_000_000, b"\r\n--xyz--\r\n"]
    status, headers, read = _asgi_post(client.app, f"/dossiers/{CODE}/upload", body)
    assert status == 303 and headers["location"] == "/login"
    assert read == 0  # not one byte of the body was taken
    status, _headers, read = _asgi_post(client.app, f"/dossiers/{CODE}/upload", body, cookie="sid=forged")
    assert status == 303 and read == 0


def test_a_forged_host_header_is_never_echoed_in_a_redirect(client: TestClient, settings: Settings) -> None:
    login(client)
    for path in ("/search/", "/track/", "/dossiers/"):
        r = client.get(path, headers={"host": "evil.example"}, follow_redirects=False)
        assert "evil.example" not in r.headers.get("location", ""), path
        assert r.status_code in {404, 405}, (path, r.status_code)
