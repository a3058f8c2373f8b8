"""two-level units and Decree 118/2025: a dossier's receiving centre and deciding agency, the versioned
administrative-unit table and the old -> new mapping, the unit printed on an old result and today's unit

Existing dossiers keep NULL in both new columns: received at this box's commune, decided there.

Revision ID: 0009_units_agencies
Revises: 0008_accounts
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_units_agencies"
down_revision = "0008_accounts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("web_dossiers") as batch:
        batch.add_column(sa.Column("receiving_unit", sa.String(64)))
        batch.add_column(sa.Column("deciding_agency", sa.String(64)))
        batch.create_index("ix_web_dossiers_deciding_agency", ["deciding_agency"])
    with op.batch_alter_table("web_documents") as batch:
        batch.add_column(sa.Column("printed_unit", sa.String(300)))
        batch.add_column(sa.Column("current_unit", sa.String(64)))
    op.create_table(
        "admin_units",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("code", sa.String(64), nullable=False, index=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("province_code", sa.String(10), nullable=False, index=True),
        sa.Column("province_name", sa.String(200), nullable=False),
        sa.Column("valid_from", sa.String(10), nullable=False),
        sa.Column("valid_to", sa.String(10)),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("source", sa.String(500), nullable=False, server_default=""),
    )
    op.create_table(
        "admin_unit_map",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("old_code", sa.String(64), nullable=False, index=True),
        sa.Column("old_name", sa.String(200), nullable=False),
        sa.Column("old_parent", sa.String(200), nullable=False, server_default=""),
        sa.Column("new_code", sa.String(64), nullable=False, index=True),
        sa.Column("valid_to", sa.String(10), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("admin_unit_map")
    op.drop_table("admin_units")
    with op.batch_alter_table("web_documents") as batch:
        batch.drop_column("current_unit")
        batch.drop_column("printed_unit")
    with op.batch_alter_table("web_dossiers") as batch:
        batch.drop_index("ix_web_dossiers_deciding_agency")
        batch.drop_column("deciding_agency")
        batch.drop_column("receiving_unit")
