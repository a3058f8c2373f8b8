"""account lifecycle: a temporary password (set by a supervisor's reset) must be changed at the next sign-in

Existing accounts keep their passwords (``must_change`` false).

Revision ID: 0008_accounts
Revises: 0007_workflow
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_accounts"
down_revision = "0007_workflow"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("web_users") as batch:
        batch.add_column(sa.Column("must_change", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("web_users") as batch:
        batch.drop_column("must_change")
