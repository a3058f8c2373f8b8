"""remote signing and the officers' certificate roster: each officer's remote signing service, the batches
waiting for approval on the phone (so a restart continues them), and every certificate seen per officer

Revision ID: 0010_remote_signing
Revises: 0009_units_agencies
Create Date: 2026-12-14
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_remote_signing"
down_revision = "0009_units_agencies"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signing_profiles",
        sa.Column("username", sa.String(64), primary_key=True),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("credential_id", sa.String(200), nullable=False, server_default=""),
        sa.Column("user_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("updated_by", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "remote_transactions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False, index=True),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("credential_id", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("doc_ids", sa.JSON, nullable=False),
        sa.Column("plan", sa.JSON, nullable=False),
        sa.Column("provider_ref", sa.String(200)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("error_code", sa.String(64)),
        sa.Column("signed_count", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "officer_certificates",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False, index=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(500), nullable=False),
        sa.Column("common_name", sa.String(200), nullable=False),
        sa.Column("serial", sa.String(80), nullable=False),
        sa.Column("issuer", sa.String(500), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_type", sa.String(16), nullable=False, server_default=""),
        sa.Column("key_bits", sa.Integer, nullable=False, server_default="0"),
        sa.Column("pss", sa.Boolean),
        sa.Column("revocation", sa.String(16), nullable=False, server_default="not_checked"),
        sa.Column("revocation_at", sa.DateTime(timezone=True)),
        sa.Column("name_matches", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signed", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.UniqueConstraint("username", "sha256", name="uq_officer_certificates_user_cert"),
    )


def downgrade() -> None:
    op.drop_table("officer_certificates")
    op.drop_table("remote_transactions")
    op.drop_table("signing_profiles")
