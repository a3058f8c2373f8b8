"""web UI: officers, sessions, dossiers, document review, backlog plans

Revision ID: 0003_web
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_web"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("full_name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("web_users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_web_sessions_user_id", "web_sessions", ["user_id"])
    op.create_table(
        "web_dossiers",
        sa.Column("code", sa.String(64), primary_key=True),
        sa.Column("tthc_code", sa.String(64)),
        sa.Column("owner_id", sa.String(32)),
        sa.Column("owner_name", sa.String(200)),
        sa.Column("title", sa.String(500)),
        sa.Column("appointment", sa.String(32)),
        sa.Column("backlog", sa.Boolean, nullable=False),
        sa.Column("created_by", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_web_dossiers_created_at", "web_dossiers", ["created_at"])
    op.create_table(
        "web_documents",
        sa.Column(
            "document_id",
            sa.String(36),
            sa.ForeignKey("documents.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("kind", sa.String(16)),
        sa.Column("result_code", sa.String(100)),
        sa.Column("valid_until", sa.String(32)),
        sa.Column("backlog", sa.Boolean, nullable=False),
        sa.Column("fields", sa.JSON, nullable=False),
        sa.Column("reviewed_by", sa.String(64)),
        sa.Column("reviewed_at", sa.DateTime(timezone=True)),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("text_folded", sa.Text, nullable=False),
        sa.Column("signed_path", sa.String(500)),
        sa.Column("signed_by", sa.String(64)),
        sa.Column("signed_at", sa.DateTime(timezone=True)),
        sa.Column("package_id", sa.String(64)),
    )
    op.create_index("ix_web_documents_package_id", "web_documents", ["package_id"])
    op.create_table(
        "web_campaigns",
        sa.Column("year", sa.Integer, primary_key=True),
        sa.Column("target", sa.Integer, nullable=False),
        sa.Column("note", sa.String(500), nullable=False),
        sa.Column("updated_by", sa.String(64)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for table in ("web_campaigns", "web_documents", "web_dossiers", "web_sessions", "web_users"):
        op.drop_table(table)
