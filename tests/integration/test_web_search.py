"""Archive search on SQLite FTS5 (migration 0006_web_fts) and cached page images, on a real database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient
from sqlalchemy import delete, text
from sqlalchemy.orm import Session, sessionmaker

from appliance import db
from appliance.originals import OriginalStore
from appliance.records import DocumentInfo
from appliance.settings import Settings, load_settings
from appliance.textindex import fold
from appliance.web.app import SESSION_COOKIE, create_app
from appliance.web.auth import create_user, start_session
from appliance.web.models import Role
from appliance.web.search import fts_query, search

CODE = "000.00.19.H12-230412-0007"


def _add(factory: sessionmaker[Session], body: str, *, code: str = CODE, sha: str = "0" * 64) -> str:
    with db.transaction(factory) as session:
        doc = db.create_document(session, source="file", pages=[(sha, "a.png", 300.0)], dossier_code=code)
        doc.state = db.DocState.DIGITIZED
        session.add(
            DocumentInfo(
                document_id=doc.id,
                kind="component",
                fields={"trich_yeu": body[:40]},
                backlog=False,
                text=body,
                text_folded=fold(f"{code} {body}"),
            )
        )
        return doc.id


def _found(factory: sessionmaker[Session], query: str) -> set[str]:
    with factory() as session:
        return {h.document_id for h in search(session, query=query)}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data")


@pytest.fixture
def factory(settings: Settings) -> Iterator[sessionmaker[Session]]:
    import appliance.web.models  # noqa: F401

    engine = db.make_engine(settings.db_url)
    db.upgrade(engine)
    yield db.session_factory(engine)
    engine.dispose()


def test_words_with_or_without_diacritics_and_word_prefixes(factory: sessionmaker[Session]) -> None:
    decision = _add(factory, "QUYẾT ĐỊNH về việc công nhận hộ gia đình văn hóa năm 2024")
    minutes = _add(factory, "Biên bản họp thôn Đông", code="000.00.19.H12-230412-0008")
    assert _found(factory, "quyet dinh") == {decision}
    assert _found(factory, "Quyết  Định văn") == {decision}
    assert _found(factory, "van hoa quyet") == {decision}  # any order
    assert _found(factory, "cong nh") == {decision}  # word prefix
    assert _found(factory, "230412-0008") == {minutes}  # dossier code, as typed
    assert _found(factory, "dong") == {minutes}  # đ -> d
    assert _found(factory, "inh nhan") == {decision}  # inside words: the LIKE fallback still finds it
    assert _found(factory, "giấy khai sinh") == set()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('"', ""),
        ('"quyet', "decision"),
        ('quyet" OR "dinh', ""),  # three words, all needed: "or" is in neither
        ("quyet*", "decision"),
        ("*", ""),
        ("-dinh", "decision"),
        ("quyet -dinh", "decision"),
        ("NEAR(quyet dinh)", ""),  # "near" is a word like any other: in neither document with "quyet"
        ("quyet NEAR dinh", ""),
        ("near not", "near"),
        ("quyet AND OR NOT dinh", ""),
        ("^quyet", "decision"),
        ("text_folded:quyet", ""),
        ("body:quyet", ""),
        ("{body}: not", "near"),
        ("(quyet", "decision"),
        ("quyet)", "decision"),
        ("%_\\", ""),
        ("+ quyet", "decision"),
        ("''", ""),
    ],
)
def test_fts_syntax_typed_by_an_officer_is_searched_as_text(
    factory: sessionmaker[Session], query: str, expected: str
) -> None:
    ids = {
        "decision": _add(factory, "Quyết định số 12 về việc công nhận"),
        "near": _add(factory, "near or and not body", code="000.00.19.H12-230412-0008"),
    }
    hits = _found(factory, query)  # must not raise
    assert hits == ({ids[expected]} if expected else set()), query
    match = fts_query([w for w in fold(query).split(" ") if w])
    assert match is None or all(term.startswith('"') and term.endswith('"*') for term in match.split(" AND "))


def test_syntax_words_are_found_as_words(factory: sessionmaker[Session]) -> None:
    near = _add(factory, "near or and not")
    _add(factory, "Quyết định số 12")
    assert _found(factory, "NEAR") == {near}
    assert _found(factory, "or and NOT") == {near}


def test_index_follows_inserts_updates_and_deletes(factory: sessionmaker[Session]) -> None:
    doc_id = _add(factory, "Giấy khai sinh")
    assert _found(factory, "khai sinh") == {doc_id}
    with db.transaction(factory) as session:
        info = session.get(DocumentInfo, doc_id)
        assert info is not None
        info.text, info.text_folded = "Giấy chứng tử", fold("Giấy chứng tử")
    assert _found(factory, "khai sinh") == set()
    assert _found(factory, "chung tu") == {doc_id}
    with db.transaction(factory) as session:
        session.execute(delete(db.Document).where(db.Document.id == doc_id))  # the review row goes with it
    assert _found(factory, "chung tu") == set()
    with factory() as session:
        assert session.scalar(text("SELECT count(*) FROM web_search")) == 0
        assert session.scalar(text("SELECT count(*) FROM web_search_ids")) == 0


def test_migration_indexes_rows_written_before_it(settings: Settings) -> None:
    import appliance.web.models  # noqa: F401

    engine = db.make_engine(settings.db_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(cfg)

    def ancestors(revision: str) -> set[str]:
        seen: set[str] = set()
        todo = [revision]
        while todo:
            rev = script.get_revision(todo.pop())
            assert rev is not None
            for down in rev._all_down_revisions:
                if down not in seen:
                    seen.add(down)
                    todo.append(down)
        return seen

    before_fts = {
        rev.revision
        for rev in script.walk_revisions()
        if rev.revision != "0006_web_fts" and "0006_web_fts" not in ancestors(rev.revision)
    }
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        for head in sorted(before_fts):
            command.upgrade(cfg, head)
    factory = db.session_factory(engine)
    with engine.begin() as conn:  # rows as the schema of that time holds them (no ORM: newer columns)
        conn.execute(
            text(
                "INSERT INTO documents (id, created_at, updated_at, source, state, page_count, fields) "
                "VALUES ('d-old', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 'file', 'assembled', 1, '{}')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO web_documents (document_id, kind, backlog, fields, text, text_folded) "
                "VALUES ('d-old', 'component', 0, '{}', :body, :folded)"
            ),
            {
                "body": "Quyết định công nhận hộ gia đình văn hóa",
                "folded": fold("Quyết định công nhận hộ gia đình văn hóa"),
            },
        )
    old = "d-old"
    with factory() as session:
        assert session.scalar(text("SELECT count(*) FROM sqlite_master WHERE name = 'web_search'")) == 0
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")
    with factory() as session:
        assert session.scalar(text('SELECT count(*) FROM web_search WHERE web_search MATCH \'"van"* AND "hoa"*\'')) == 1
    assert _found(factory, "gia dinh van hoa") == {old}
    engine.dispose()


def test_page_images_are_cached_on_disk_and_revalidated_with_etag(settings: Settings) -> None:
    app = create_app(settings)
    ctx = app.state.ctx
    image = np.full((400, 300), 255, dtype=np.uint8)
    image[100:120, 50:250] = 0
    sha = OriginalStore(settings.originals_dir).put_image(image, dpi=100.0)
    doc_id = _add(ctx.factory, "Giấy khai sinh", sha=sha)
    with db.transaction(ctx.factory) as session:
        user = create_user(session, username="canbo", full_name="Cán bộ", role=Role.OFFICER, password="x" * 12)
        token = start_session(session, user=user)
    with TestClient(app) as client:
        client.cookies.set(SESSION_COOKIE, token)
        first = client.get(f"/documents/{doc_id}/pages/0.jpg", params={"w": 180})
        assert first.status_code == 200 and first.content[:2] == b"\xff\xd8"
        tag = first.headers["etag"]
        assert "max-age" in first.headers["cache-control"] and "no-store" not in first.headers["cache-control"]
        assert len(list(ctx.cache_dir.glob("*.jpg"))) == 1
        again = client.get(f"/documents/{doc_id}/pages/0.jpg", params={"w": 180}, headers={"If-None-Match": tag})
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == tag
        other = client.get(f"/documents/{doc_id}/pages/0.jpg", params={"w": 900}, headers={"If-None-Match": tag})
        assert other.status_code == 200 and other.headers["etag"] != tag
        for cached in ctx.cache_dir.glob("*.jpg"):
            cached.write_bytes(first.content)  # served from the cache from now on, not rendered again
        assert client.get(f"/documents/{doc_id}/pages/0.jpg", params={"w": 900}).content == first.content
        assert client.get(f"/documents/{doc_id}/pages/1.jpg").status_code == 404
