"""documents and pages

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("dossier_code", sa.String(64)),
        sa.Column("digitizer", sa.String(200)),
        sa.Column("page_count", sa.Integer, nullable=False),
        sa.Column("pdf_path", sa.String(500)),
        sa.Column("pdf_sha256", sa.String(64)),
        sa.Column("pdf_bytes", sa.Integer),
        sa.Column("fields", sa.JSON, nullable=False),
        sa.Column("error_code", sa.String(64)),
    )
    op.create_index("ix_documents_state", "documents", ["state"])
    op.create_index("ix_documents_dossier_code", "documents", ["dossier_code"])
    op.create_table(
        "pages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("document_id", sa.String(36), sa.ForeignKey("documents.id", ondelete="CASCADE"), nullable=False),
        sa.Column("index", sa.Integer, nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("original_sha256", sa.String(64), nullable=False),
        sa.Column("dpi", sa.Integer, nullable=False),
        sa.Column("rotation", sa.Integer),
        sa.Column("skew", sa.Float),
        sa.Column("flags", sa.JSON, nullable=False),
        sa.Column("encoding", sa.String(16)),
        sa.Column("mean_conf", sa.Float),
        sa.Column("encoded_bytes", sa.Integer),
        sa.UniqueConstraint("document_id", "index", name="uq_pages_document_index"),
    )
    op.create_index("ix_pages_document_id", "pages", ["document_id"])


def downgrade() -> None:
    op.drop_table("pages")
    op.drop_table("documents")
