"""Alembic environment: the connection is handed in by appliance.db.upgrade()."""

from __future__ import annotations

from alembic import context

from appliance.db import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - always called through appliance.db.upgrade
    raise RuntimeError("run migrations through appliance.db.upgrade(engine)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
