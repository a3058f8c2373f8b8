"""web UI: full-text index (SQLite FTS5) over the folded search text of each document; an index for reuses

The index holds ``web_documents.text_folded`` (diacritics removed, đ -> d, lower case). Triggers on
web_documents keep it in step, whoever writes the row; ``web_search_ids`` gives each document a
stable integer id (the FTS rowid), which survives VACUUM. Existing rows are indexed here.
Other databases (PostgreSQL) keep the LIKE search and get nothing from this revision.

Revision ID: 0006_web_fts
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0006_web_fts"
down_revision = "0001"
branch_labels = None
depends_on = "0005_web_more"

STATEMENTS = (
    """CREATE TABLE web_search_ids (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        document_id VARCHAR(36) NOT NULL UNIQUE
    )""",
    "CREATE VIRTUAL TABLE web_search USING fts5(body, tokenize = 'unicode61 remove_diacritics 2')",
    """CREATE TRIGGER web_search_ai AFTER INSERT ON web_documents BEGIN
        INSERT OR IGNORE INTO web_search_ids (document_id) VALUES (new.document_id);
        DELETE FROM web_search WHERE rowid = (SELECT id FROM web_search_ids WHERE document_id = new.document_id);
        INSERT INTO web_search (rowid, body)
            VALUES ((SELECT id FROM web_search_ids WHERE document_id = new.document_id), new.text_folded);
    END""",
    """CREATE TRIGGER web_search_au AFTER UPDATE OF text_folded ON web_documents BEGIN
        UPDATE web_search SET body = new.text_folded
            WHERE rowid = (SELECT id FROM web_search_ids WHERE document_id = new.document_id);
    END""",
    """CREATE TRIGGER web_search_ad AFTER DELETE ON web_documents BEGIN
        DELETE FROM web_search WHERE rowid = (SELECT id FROM web_search_ids WHERE document_id = old.document_id);
        DELETE FROM web_search_ids WHERE document_id = old.document_id;
    END""",
    "INSERT INTO web_search_ids (document_id) SELECT document_id FROM web_documents ORDER BY rowid",
    """INSERT INTO web_search (rowid, body)
        SELECT i.id, d.text_folded FROM web_search_ids i JOIN web_documents d ON d.document_id = i.document_id""",
)


def upgrade() -> None:
    op.create_index("ix_web_reuses_document_id", "web_reuses", ["document_id"])  # the review page asks
    if op.get_bind().dialect.name != "sqlite":
        return
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.drop_index("ix_web_reuses_document_id", "web_reuses")
    if op.get_bind().dialect.name != "sqlite":
        return
    for name in ("web_search_ai", "web_search_au", "web_search_ad"):
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.execute("DROP TABLE IF EXISTS web_search")
    op.execute("DROP TABLE IF EXISTS web_search_ids")
