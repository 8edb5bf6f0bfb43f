"""Migration 0007 adds ``accounts.data_version`` in place: every call, count and account survives it,
on SQLite (where rebuilding ``accounts`` would have cascaded into every call) and PostgreSQL."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Engine, func, inspect, select

from pbx_cdr.db.migrate import alembic_config, current_revision, upgrade
from pbx_cdr.db.tables import accounts, call_day_counts, call_hour_counts, calls
from tests.integration.test_migration_0006 import seed_at_0005


def sizes(engine: Engine) -> tuple[int, ...]:
    with engine.connect() as conn:
        return tuple(
            conn.execute(select(func.count()).select_from(table)).scalar_one()
            for table in (accounts, calls, call_hour_counts, call_day_counts)
        )


def test_0007_keeps_every_row(empty_engine: Engine) -> None:
    engine = empty_engine
    upgrade(engine, "0005")
    seed_at_0005(engine)
    upgrade(engine, "0006")
    before = sizes(engine)
    assert before[1] == 700

    upgrade(engine, "0007")
    assert current_revision(engine) == "0007"
    assert sizes(engine) == before
    with engine.connect() as conn:
        assert set(conn.execute(select(accounts.c.data_version)).scalars()) == {0}

    command.downgrade(alembic_config(engine), "0006")
    assert "data_version" not in {c["name"] for c in inspect(engine).get_columns("accounts")}
    assert sizes(engine) == before
    upgrade(engine, "0007")
    assert sizes(engine) == before
