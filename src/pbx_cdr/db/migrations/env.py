"""Alembic environment: the engine comes from the caller (``pbx_cdr.db.migrate``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from pbx_cdr.db.tables import metadata

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    if connection.dialect.name == "postgresql":
        # Several processes may start at once (serve --workers N): one migrates, the others wait.
        connection.execute(text("SELECT pg_advisory_lock(7261001)"))
        # Held by the session, not this transaction: ended here, so the migrations' transaction is
        # Alembic's own, and a migration can step out of it (``autocommit_block``, migration 0010).
        connection.commit()
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_unlock(7261001)"))
        connection.commit()
