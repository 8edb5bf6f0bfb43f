"""Migration 0008 adds PostgreSQL's notifying triggers (and nothing on SQLite), and takes them away."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Engine, text

from pbx_cdr.db.migrate import alembic_config, current_revision, upgrade
from pbx_cdr.db.tables import accounts, api_tokens

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


def test_every_column_but_the_bookkeeping_ones_notifies(empty_engine: Engine) -> None:
    """A column added later must be added to the triggers too (or here, as bookkeeping)."""
    engine = empty_engine
    if engine.dialect.name != "postgresql":
        return
    upgrade(engine, "0008")
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT t.tgname, a.attname FROM pg_trigger t"
                " JOIN pg_attribute a ON a.attrelid = t.tgrelid AND a.attnum = ANY (t.tgattr)"
                " WHERE t.tgname LIKE 'pbx_cdr_auth_%'"
            )
        )
        watched: dict[str, set[str]] = {}
        for trigger, column in rows:
            watched.setdefault(trigger, set()).add(column)
    assert watched == {
        "pbx_cdr_auth_tokens": {c.name for c in api_tokens.c} - {"last_used_ts"},
        "pbx_cdr_auth_accounts": {c.name for c in accounts.c} - {"data_version"},
    }
