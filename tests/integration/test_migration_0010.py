"""Migration 0010: on PostgreSQL the phone search key indexes carry the call's id (``INCLUDE``), so a
suffix list counts its matches from the indexes alone; rebuilt without blocking writes, repeatable,
and reversible. SQLite's indexes are left as they are (they end with the rowid already)."""

from __future__ import annotations

import time

import pytest
from alembic import command
from sqlalchemy import Engine, insert, or_, select, text

from pbx_cdr.db.migrate import alembic_config, current_revision, upgrade
from pbx_cdr.db.tables import calls
from tests.integration.test_migration_0004 import call, new_account

KEYS = ("ix_calls_caller_key", "ix_calls_destination_key")
NOW = int(time.time())


def definitions(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            rows = conn.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'calls'"))
        else:
            rows = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'index'"))
        return {name: definition for name, definition in rows if name in KEYS or name.endswith("_new")}


def suffix_list(engine: Engine, account: int) -> tuple[int, list[str]]:
    """The calls whose caller or destination ends in 4567, newest first, as any revision stores them
    (the list itself needs the current schema: migration 0011's counts)."""
    matches = or_(calls.c.caller_key.startswith("7654"), calls.c.destination_key.startswith("7654"))
    with engine.connect() as conn:
        uuids = conn.execute(
            select(calls.c.uuid)
            .where(calls.c.account_id == account, matches)
            .order_by(calls.c.start_ts.desc(), calls.c.id.desc())
        ).scalars()
        found = list(uuids)
    return len(found), found


def test_0010_up_down_and_again(empty_engine: Engine) -> None:
    engine = empty_engine
    upgrade(engine, "0009")
    before = definitions(engine)
    with engine.begin() as conn:
        account = new_account(conn, "a", NOW - 86_400)
        rows = [call(account, f"call-{i}", NOW - 3_600 - i) for i in range(30)]
        for i, row in enumerate(rows):
            if i % 3 == 0:  # one in three has another caller, whose number does not end in 4567
                row.update(caller_number="0909999999", caller_key="999999909")
        conn.execute(insert(calls), rows)
    listed = suffix_list(engine, account)
    assert listed[0] == 20 and len(listed[1]) == 20

    upgrade(engine, "0010")
    assert current_revision(engine) == "0010"
    after = definitions(engine)
    assert set(after) == set(KEYS)  # no index left behind under a temporary name
    if engine.dialect.name == "sqlite":
        assert after == before
    else:
        for name, column in zip(KEYS, ("caller_key", "destination_key"), strict=True):
            assert after[name].endswith(f"USING btree (account_id, {column}, start_ts) INCLUDE (id)")
    assert suffix_list(engine, account) == listed

    command.downgrade(alembic_config(engine), "0009")
    assert definitions(engine) == before
    assert suffix_list(engine, account) == listed
    upgrade(engine, "0010")
    assert definitions(engine) == after


@pytest.mark.parametrize(
    "empty_engine", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_0010_finishes_a_rebuild_that_was_interrupted(empty_engine: Engine) -> None:
    """A build cut short leaves an index under the temporary name (an invalid one, and possibly the
    old index already dropped): running the migration again completes it."""
    engine = empty_engine
    upgrade(engine, "0009")
    with engine.begin() as conn:
        conn.execute(text("CREATE INDEX ix_calls_caller_key_new ON calls (account_id)"))
        conn.execute(text("DROP INDEX ix_calls_destination_key"))
    upgrade(engine, "0010")
    after = definitions(engine)
    assert set(after) == set(KEYS)
    assert all(definition.endswith("INCLUDE (id)") for definition in after.values())
