"""outbox

Revision ID: 0002_outbox
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_outbox"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("package_id", sa.String(64), nullable=False, unique=True),
        sa.Column("path", sa.String(500), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("dossier_code", sa.String(64)),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(500)),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("bytes_acked", sa.Integer, nullable=False),
        sa.Column("next_try_at", sa.DateTime(timezone=True)),
        sa.Column("warehouse_id", sa.String(100)),
        sa.Column("receipted_at", sa.DateTime(timezone=True)),
        sa.Column("archived", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_outbox_state", "outbox", ["state"])
    op.create_index("ix_outbox_dossier_code", "outbox", ["dossier_code"])


def downgrade() -> None:
    op.drop_table("outbox")
