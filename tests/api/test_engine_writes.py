"""Units of work: durable and relaxed writes commit the same data; the durability level is restored."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from pbx_cdr.config import Settings
from pbx_cdr.db import engine as db
from pbx_cdr.errors import ServiceUnavailable


def _count(engine: Engine) -> int:
    with db.read(engine) as conn:
        return int(conn.execute(text("SELECT count(*) FROM agent_aliases")).scalar_one())


@pytest.mark.parametrize("durable", [True, False])
def test_writes_commit_and_roll_back(engine: Engine, durable: bool, make_tenant: object) -> None:
    tenant = make_tenant("w")  # type: ignore[operator]
    insert = text("INSERT INTO agent_aliases (account_id, agent_name, extension) VALUES (:a, :n, '1001')")
    with db.write(engine, durable=durable) as conn:
        conn.execute(insert, {"a": tenant.id, "n": "alice"})
    assert _count(engine) == 1

    def failing_write() -> None:
        with db.write(engine, durable=durable) as conn:
            conn.execute(insert, {"a": tenant.id, "n": "bob"})
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        failing_write()
    assert _count(engine) == 1


def test_a_relaxed_write_leaves_the_connection_durable(settings: Settings) -> None:
    engine = db.make_engine(settings.database_url, sqlite_synchronous="FULL", pool_size=1)
    if not db.is_sqlite(engine):
        with db.write(engine) as conn:  # the test server runs with it off; one pooled session on
            conn.exec_driver_sql("SET synchronous_commit TO on")
        with db.write(engine, durable=False) as conn:
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"
        with db.write(engine) as conn:
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
        return
    for _ in range(3):  # whichever pooled connection comes back, it is FULL again
        with db.write(engine, durable=False) as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        with db.write(engine) as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    engine.dispose()


def test_a_write_that_cannot_get_the_lock_answers_503(sqlite_url: str) -> None:
    """``BEGIN IMMEDIATE`` runs straight on the driver; its 'database is locked' is still a 503."""
    engine = db.make_engine(sqlite_url, pool_size=1)
    with engine.connect() as conn:  # the one pooled connection gives up after 50 ms, not 30 s
        conn.exec_driver_sql("PRAGMA busy_timeout=50")
    holder = sqlite3.connect(make_url(sqlite_url).database or "", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        with pytest.raises(ServiceUnavailable), db.write(engine):
            pass
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with db.write(engine) as conn:  # the lock is free again, and the connection is usable
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    engine.dispose()


def test_sqlite_hands_out_the_connection_used_last(sqlite_url: str) -> None:
    """Last in, first out: one warm connection does the work, not every pooled one in turn (each
    pooled connection's page cache grows to 64 MB)."""
    engine = db.make_engine(sqlite_url, pool_size=4)
    first, second = engine.connect(), engine.connect()
    raw_second = second.connection.dbapi_connection
    first.close()
    second.close()  # returned last
    for _ in range(3):
        with engine.connect() as again:
            assert again.connection.dbapi_connection is raw_second
    engine.dispose()
