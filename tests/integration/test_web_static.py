"""Static files: versioned URLs that browsers keep for a year, HTML that is never stored; file inputs that
speak Vietnamese instead of the browser's "Choose files / No file chosen"."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from appliance.web.assets import IMMUTABLE, StaticAssets
from tests.integration.test_web import CODE, login

STATIC = Path(__file__).resolve().parents[2] / "appliance" / "web" / "static"


def _assets(html: str) -> dict[str, str]:
    """name -> URL of every stylesheet and script the page links."""
    urls = re.findall(r'(?:href|src)="(/static/[^"]+)"', html)
    return {url.split("?")[0].removeprefix("/static/"): url for url in urls}


def test_pages_link_versioned_static_files_cached_for_a_year(client: TestClient) -> None:
    page = client.get("/login")
    assert page.headers["cache-control"] == "no-store"
    assets = _assets(page.text)
    assert set(assets) == {"app.css", "app.js", "htmx.min.js"}
    for name, url in assets.items():
        digest = hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]
        assert url == f"/static/{name}?v={digest}"
        r = client.get(url)
        assert r.status_code == 200 and r.content == (STATIC / name).read_bytes()
        assert r.headers["cache-control"] == IMMUTABLE == "public, max-age=31536000, immutable"
        # the other security headers stay
        assert r.headers["x-content-type-options"] == "nosniff"
    login(client)
    home = client.get("/")
    assert home.headers["cache-control"] == "no-store"
    assert _assets(home.text) == assets


def test_unversioned_or_stale_static_urls_are_revalidated(client: TestClient) -> None:
    for url in ("/static/app.css", "/static/app.css?v=0123456789ab", "/static/app.css?v="):
        r = client.get(url)
        assert r.status_code == 200
        assert r.headers["cache-control"] == "no-cache", url
        etag = r.headers["etag"]
        again = client.get(url, headers={"if-none-match": etag})
        assert again.status_code == 304 and again.headers["cache-control"] == "no-cache"
    missing = client.get("/static/nothing.css?v=1")
    assert missing.status_code == 404 and missing.headers["cache-control"] == "no-store"


def test_a_changed_file_gets_a_new_url(tmp_path: Path) -> None:
    (tmp_path / "app.css").write_text("body { color: red; }")
    assets = StaticAssets(tmp_path, prefix="/static")
    first = assets.url("app.css")
    assert first == assets.url("app.css")
    (tmp_path / "app.css").write_text("body { color: blue; }")
    assert assets.url("app.css") != first
    with pytest.raises(LookupError):
        assets.url("missing.css")
    assert assets.version("../outside.css") is None


def test_file_inputs_have_vietnamese_labels(client: TestClient) -> None:
    csrf = login(client)
    pages = [client.get("/").text]
    client.post("/dossiers", data={"code": CODE, "csrf": csrf})
    pages.append(client.get(f"/dossiers/{CODE}").text)
    pages.append(client.get("/backlog").text)
    inputs = [m for html in pages for m in re.finditer(r"<input ([^>]*type=\"file\"[^>]*)>", html)]
    assert len(inputs) == 3
    for m in inputs:
        html = m.string
        input_id = re.search(r'id="([^"]+)"', m.group(1))
        assert input_id, m.group(0)
        name = input_id.group(1)
        label = re.search(rf'<label for="{re.escape(name)}" class="filebutton">([^<]+)</label>', html)
        assert label and label.group(1).startswith("Chọn "), m.group(0)
        assert f'aria-describedby="{name}-chosen' in m.group(1)
        assert re.search(rf'<span id="{re.escape(name)}-chosen" class="filenames"[^>]*>Chưa chọn tệp</span>', html)
    script = client.get("/static/app.js").text
    assert "Chưa chọn tệp" in script and '"-chosen"' in script
