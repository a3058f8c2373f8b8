"""Search hits mark the matched words in their snippet: with or without diacritics, and escaped."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from markupsafe import Markup

from appliance import db
from appliance.records import DocumentInfo
from appliance.textindex import fold
from appliance.web.search import highlight
from tests.integration.test_web import CODE, login


@pytest.mark.parametrize(
    ("text", "query", "marked"),
    [
        ("QUYẾT ĐỊNH về việc công nhận", "quyet dinh", "<mark>QUYẾT ĐỊNH</mark> về việc công nhận"),
        ("Quyết định số 38", "Quyết", "<mark>Quyết</mark> định số 38"),
        ("đất đai, Đất ở", "dat", "<mark>đất</mark> đai, <mark>Đất</mark> ở"),
        ("Ủy ban nhân dân xã", "uy ban", "<mark>Ủy ban</mark> nhân dân xã"),
        (
            "công nhận hộ gia đình văn hóa",
            "van ho",
            "công nhận <mark>hộ</mark> gia đình <mark>văn hóa</mark>",
        ),
        ("Nguyễn Văn An", "an", "Nguyễn Văn <mark>An</mark>"),  # word starts first ...
        ("Trần Thị Lan", "an", "Tr<mark>ần</mark> Thị L<mark>an</mark>"),  # ... inside words only when none starts so
        ("mã 000.00.19.H12-230412-0007", "230412-0007", "mã 000.00.19.H12-<mark>230412-0007</mark>"),
        ("nothing here", "quyet", "nothing here"),
        ("", "quyet", ""),
        ("văn bản", "", "văn bản"),
    ],
)
def test_highlight_marks_whole_matched_words(text: str, query: str, marked: str) -> None:
    out = highlight(text, fold(query))
    assert isinstance(out, Markup)
    assert str(out) == marked


def test_highlight_escapes_the_document_text() -> None:
    out = highlight('<script>alert("x")</script> & quyết <b>định</b>', fold("quyet dinh script"))
    assert "<script>" not in out and "<b>" not in out
    assert str(out) == (
        "&lt;<mark>script</mark>&gt;alert(&#34;x&#34;)&lt;/<mark>script</mark>&gt; &amp; "
        "<mark>quyết</mark> &lt;b&gt;<mark>định</mark>&lt;/b&gt;"
    )
    assert str(highlight("a <mark> b", fold("mark"))) == "a &lt;<mark>mark</mark>&gt; b"


def test_search_page_shows_marked_snippets_and_vietnamese_dates(client: TestClient) -> None:
    login(client)
    body = "QUYẾT ĐỊNH về việc công nhận <hộ gia đình> văn hóa năm 2024"
    with db.transaction(client.app.state.ctx.factory) as session:  # type: ignore[attr-defined]
        doc = db.create_document(session, source="file", pages=[("0" * 64, "a.png", 300.0)], dossier_code=CODE)
        doc.state = db.DocState.DIGITIZED
        doc.created_at = datetime(2024, 3, 9, 18, 30, tzinfo=UTC)  # already 10/03 in Vietnam
        session.add(
            DocumentInfo(
                document_id=doc.id,
                kind="component",
                fields={"trich_yeu": "Quyết định công nhận"},
                backlog=False,
                text=body,
                text_folded=fold(f"{CODE} {body}"),
            )
        )
    r = client.get("/search", params={"q": "quyet dinh gia dinh"})
    assert r.status_code == 200
    snippet = re.search(r'<p class="snippet">(.*?)</p>', r.text)
    assert snippet, r.text
    assert snippet.group(1) == (
        "<mark>QUYẾT ĐỊNH</mark> về việc công nhận &lt;hộ <mark>gia đình</mark>&gt; văn hóa năm 2024…"
    )
    assert ", 10/03/2024," in r.text
