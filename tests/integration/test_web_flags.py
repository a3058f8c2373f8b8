"""Template mistakes that only show when a page is rendered: documents with flagged pages on every page
that lists them (a dossier, the backlog, the upload-error page), and templates that do not compile.

Regression: `p.index + 1 ~ ': '` in _documents.html is `p.index + (1 ~ ': ')` in Jinja (`~` binds tighter
than `+`), int + str, so each of these pages answered 500 as soon as one page carried a flag."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from appliance import db
from appliance.records import DocumentInfo
from tests.integration.test_web import CODE, login

TEMPLATES = Path(__file__).resolve().parents[2] / "appliance" / "web" / "templates"


def _flagged_document(client: TestClient, *, code: str | None, flags: dict[int, list[str]]) -> str:
    """A three-page document of the dossier ``code`` (None: the backlog) with ``flags`` by page index."""
    factory = client.app.state.ctx.factory  # type: ignore[attr-defined]
    with db.transaction(factory) as session:
        pages = [(f"{i:064d}", f"trang-{i}.png", 300.0) for i in range(3)]
        doc = db.create_document(session, source="file", pages=pages, dossier_code=code)
        doc.state = db.DocState.DIGITIZED
        for page in doc.pages:
            page.flags = flags.get(page.index, [])
        session.add(
            DocumentInfo(document_id=doc.id, kind="component", fields={}, backlog=code is None, text="", text_folded="")
        )
        return doc.id


def test_dossier_page_lists_a_document_with_flagged_pages(client: TestClient) -> None:
    csrf = login(client)
    assert client.post("/dossiers", data={"code": CODE, "csrf": csrf}, follow_redirects=False).status_code == 303
    doc_id = _flagged_document(client, code=CODE, flags={0: ["blurred"], 2: ["blank", "low_confidence"]})
    r = client.get(f"/dossiers/{CODE}")
    assert r.status_code == 200, r.text
    assert f"/documents/{doc_id}" in r.text
    assert '<span class="flag">1: Bị mờ, 3: Trang trắng, 3: Chữ khó đọc</span>' in r.text


def test_backlog_page_lists_a_document_with_flagged_pages(client: TestClient) -> None:
    login(client)
    _flagged_document(client, code=None, flags={1: ["too_dark"]})
    r = client.get("/backlog")
    assert r.status_code == 200, r.text
    assert '<span class="flag">2: Quá tối</span>' in r.text


@pytest.mark.parametrize("where", ["dossier", "backlog"])
def test_upload_error_page_lists_documents_with_flagged_pages(client: TestClient, where: str) -> None:
    csrf = login(client)
    if where == "dossier":
        client.post("/dossiers", data={"code": CODE, "csrf": csrf})
    _flagged_document(client, code=CODE if where == "dossier" else None, flags={0: ["cut_off"]})
    url = f"/dossiers/{CODE}/upload" if where == "dossier" else "/backlog/upload"
    r = client.post(url, data={"csrf": csrf, "nonce": "n1"}, files={"files": ("ghi-chu.txt", b"not an image")})
    assert r.status_code == 400, r.text
    assert "không phải ảnh hoặc PDF" in r.text
    assert '<span class="flag">1: Bị cắt mép</span>' in r.text


def test_every_template_compiles(client: TestClient) -> None:
    """A block defined twice, an unknown filter ...: caught here, not by the officer who opens the page."""
    env = client.app.state.ctx.templates.env  # type: ignore[attr-defined]
    names = sorted(p.name for p in TEMPLATES.glob("*.html"))
    assert "track.html" in names
    for name in names:
        env.get_template(name)


def test_track_page_renders(client: TestClient) -> None:
    login(client)
    r = client.get("/track")
    assert r.status_code == 200, r.text
    assert "Theo dõi gửi lên Kho dữ liệu" in r.text
