"""the workflow owned by the core: document states, versions (corrections), the append-only audit trail,
result codes held in a UNIQUE table with a sequence, intakes of uploaded files, officers' ID numbers

States are renamed to the workflow's table: ocr_done -> captured (digitizing restarts), assembled ->
digitized (or reviewed when an officer saved the review), sent -> queued, acked -> delivered. Documents
whose package was receipted or rejected take that state. Result codes already in use are entered in
result_codes; a code held twice keeps its first holder (the others are listed in the log and left for the
officers to re-code: their documents stay unsigned or keep what they signed).

Revision ID: 0007_workflow
Revises: 0002_outbox, 0004_page_upright, 0006_web_fts
Create Date: 2026-12-04
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0007_workflow"
down_revision = ("0002_outbox", "0004_page_upright", "0006_web_fts")
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

APPEND_ONLY = (
    """CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END""",
    """CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END""",
)


def upgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.add_column(sa.Column("error_detail", sa.String(500)))
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("supersedes_id", sa.String(36)))
        batch.add_column(sa.Column("superseded_by", sa.String(36)))
    op.create_index("ix_documents_supersedes_id", "documents", ["supersedes_id"])
    with op.batch_alter_table("web_documents") as batch:
        batch.add_column(sa.Column("cert_subject", sa.String(500)))
        batch.add_column(sa.Column("cert_serial", sa.String(100)))
        batch.add_column(sa.Column("delivered_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("rejected_reason", sa.String(500)))
    with op.batch_alter_table("web_users") as batch:
        batch.add_column(sa.Column("id_number", sa.String(32)))

    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("dossier_code", sa.String(64)),
        sa.Column("document_id", sa.String(36)),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_index("ix_audit_events_dossier_code", "audit_events", ["dossier_code"])
    op.create_index("ix_audit_events_document_id", "audit_events", ["document_id"])
    op.create_table(
        "result_codes",
        sa.Column("code", sa.String(100), primary_key=True),
        sa.Column("document_id", sa.String(36), nullable=False),
        sa.Column("minted", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_result_codes_document_id", "result_codes", ["document_id"])
    op.create_table(
        "sequences",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Integer, nullable=False),
    )
    op.create_table(
        "intakes",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("folder", sa.String(500), nullable=False),
        sa.Column("files", sa.JSON, nullable=False),
        sa.Column("dossier_code", sa.String(64)),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("digitizer", sa.String(200)),
        sa.Column("backlog", sa.Boolean, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error_code", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_intakes_state", "intakes", ["state"])

    conn = op.get_bind()
    conn.execute(sa.text("UPDATE documents SET state = 'captured' WHERE state = 'ocr_done'"))
    conn.execute(
        sa.text(
            "UPDATE documents SET state = CASE WHEN EXISTS (SELECT 1 FROM web_documents w "
            "WHERE w.document_id = documents.id AND w.reviewed_at IS NOT NULL AND w.kind IS NOT NULL) "
            "THEN 'reviewed' ELSE 'digitized' END WHERE state = 'assembled'"
        )
    )
    conn.execute(sa.text("UPDATE documents SET state = 'queued' WHERE state = 'sent'"))
    conn.execute(sa.text("UPDATE documents SET state = 'delivered' WHERE state = 'acked'"))
    for package_state, doc_state in (("receipted", "delivered"), ("rejected", "rejected")):
        conn.execute(
            sa.text(
                f"UPDATE documents SET state = '{doc_state}' WHERE state = 'queued' AND id IN ("  # noqa: S608 - constants
                "SELECT w.document_id FROM web_documents w JOIN outbox o ON o.package_id = w.package_id "
                f"WHERE o.state = '{package_state}')"
            )
        )
    taken: set[str] = set()
    rows = conn.execute(
        sa.text(
            "SELECT w.result_code, w.document_id FROM web_documents w JOIN documents d ON d.id = w.document_id "
            "WHERE w.result_code IS NOT NULL ORDER BY d.created_at"
        )
    ).all()
    for code, document_id in rows:
        if code in taken:
            log.warning("result code %s is held by more than one document; %s must be re-coded", code, document_id)
            continue
        taken.add(code)
        conn.execute(
            sa.text(
                "INSERT INTO result_codes (code, document_id, minted, created_at) "
                "VALUES (:code, :doc, 0, CURRENT_TIMESTAMP)"
            ),
            {"code": code, "doc": document_id},
        )
    conn.execute(sa.text("INSERT INTO sequences (name, value) VALUES ('result_code', :n)"), {"n": len(taken)})
    if conn.dialect.name == "sqlite":
        for statement in APPEND_ONLY:
            op.execute(statement)


def downgrade() -> None:
    for table in ("intakes", "sequences", "result_codes", "audit_events"):
        op.drop_table(table)
