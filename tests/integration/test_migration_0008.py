"""Migration 0008 adds PostgreSQL's notifying triggers (and nothing on SQLite), and takes them away."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Engine, text

from pbx_cdr.db.migrate import alembic_config, current_revision, upgrade

TRIGGERS = {("pbx_cdr_auth_accounts", "accounts"), ("pbx_cdr_auth_tokens", "api_tokens")}


def triggers(engine: Engine) -> set[tuple[str, str]]:
    if engine.dialect.name != "postgresql":
        return set()
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT tgname, tgrelid::regclass::text FROM pg_trigger WHERE NOT tgisinternal")
        )
        return {(name, table) for name, table in rows}


def test_0008_up_and_down(empty_engine: Engine) -> None:
    engine = empty_engine
    upgrade(engine, "0008")
    assert current_revision(engine) == "0008"
    expected = TRIGGERS if engine.dialect.name == "postgresql" else set()
    assert triggers(engine) == expected
    command.downgrade(alembic_config(engine), "0007")
    assert triggers(engine) == set()
    upgrade(engine, "0008")
    assert triggers(engine) == expected
