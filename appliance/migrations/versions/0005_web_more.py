"""web UI, more: login failures and form nonces kept across restarts, reuse of digitized documents,
separator sheets met while splitting a batch

Revision ID: 0005_web_more
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_web_more"
down_revision = "0001"
branch_labels = None
depends_on = "0003_web"


def upgrade() -> None:
    op.create_table(
        "web_login_failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_web_login_failures_key", "web_login_failures", ["key"])
    op.create_table(
        "web_nonces",
        sa.Column("nonce", sa.String(64), primary_key=True),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_web_nonces_created_at", "web_nonces", ["created_at"])
    op.create_table(
        "web_reuses",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("document_id", sa.String(36), sa.ForeignKey("documents.id", ondelete="CASCADE"), nullable=False),
        sa.Column("source_document_id", sa.String(36), nullable=False),
        sa.Column("dossier_code", sa.String(64), nullable=False),
        sa.Column("reused_by", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_web_reuses_dossier_code", "web_reuses", ["dossier_code"])
    op.create_table(
        "web_separators",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("batch", sa.String(32), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("text", sa.String(500), nullable=False),
        sa.Column("original_sha256", sa.String(64), nullable=False),
        sa.Column("before_document_id", sa.String(36)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_web_separators_batch", "web_separators", ["batch"])


def downgrade() -> None:
    for table in ("web_separators", "web_reuses", "web_nonces", "web_login_failures"):
        op.drop_table(table)
