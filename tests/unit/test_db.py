from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from appliance import db


def test_migrations_create_schema_idempotently_with_wal_and_foreign_keys(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    db.upgrade(engine)
    db.upgrade(engine)  # second run is a no-op
    tables = set(inspect(engine).get_table_names())
    assert {"documents", "pages", "alembic_version"} <= tables
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_document_with_pages_in_order_and_foreign_keys_enforced(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    db.upgrade(engine)
    factory = db.session_factory(engine)
    with db.transaction(factory) as s:
        doc = db.create_document(s, source="scanner", pages=[("a" * 64, "ADF 1", 300.0), ("b" * 64, "ADF 2", 300.0)])
        doc_id = doc.id
    with db.transaction(factory) as s:
        loaded = s.get(db.Document, doc_id)
        assert loaded is not None
        assert [p.label for p in loaded.pages] == ["ADF 1", "ADF 2"]
        assert loaded.state == db.DocState.CAPTURED
        assert db.documents_in_state(s, states=[db.DocState.CAPTURED])[0].id == doc_id
    with pytest.raises(IntegrityError), db.transaction(factory) as s:
        s.add(db.Page(document_id="missing", index=0, label="", original_sha256="c" * 64, dpi=300))
