"""``db/driver.py``: reads straight through the driver, on a SQLite connection per thread."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, bindparam, func, literal_column, select, table
from sqlalchemy.exc import IntegrityError, OperationalError

from pbx_cdr.db import driver
from pbx_cdr.db import engine as db
from pbx_cdr.db.driver import DriverReads, SqliteWrites, ThreadReaders, thread_readers
from pbx_cdr.db.engine import make_engine
from pbx_cdr.db.tables import accounts
from tests.conftest import Tenant

# Per-thread connections and their snapshots are SQLite's (PostgreSQL's list is one statement).
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

COUNT = select(func.count()).select_from(accounts)
BY_NAME = select(accounts.c.id, accounts.c.name).where(accounts.c.name == bindparam("name"))


@SQLITE
def test_a_snapshot_sees_one_state_of_the_database(
    engine: Engine, tenant: Tenant, make_tenant: Callable[..., Tenant]
) -> None:
    with db.driver_snapshot(engine) as reads:
        before = reads.scalar(COUNT, {})
        make_tenant("committed-meanwhile")  # another connection commits
        assert reads.scalar(COUNT, {}) == before  # the snapshot's second read does not see it
        assert reads.first(BY_NAME, {"name": "committed-meanwhile"}) is None
    with db.driver_snapshot(engine) as reads:  # the next one does
        assert reads.scalar(COUNT, {}) == before + 1
    assert db.first_row(engine, BY_NAME, {"name": "committed-meanwhile"}) is not None


@SQLITE
def test_each_thread_reads_on_its_own_connection(engine: Engine, tenant: Tenant) -> None:
    readers = thread_readers(engine)
    assert readers is not None
    mine = readers.reads()
    assert readers.reads() is mine  # the same thread finds its connection again
    theirs: list[DriverReads] = []
    thread = threading.Thread(target=lambda: theirs.append(readers.reads()))
    thread.start()
    thread.join()
    assert theirs[0].raw is not mine.raw
    assert theirs[0].scalar(COUNT, {}) == mine.scalar(COUNT, {})


@SQLITE
def test_the_read_connections_cannot_write(engine: Engine, tenant: Tenant) -> None:
    readers = thread_readers(engine)
    assert readers is not None
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        readers.reads().raw.execute("DELETE FROM accounts")
    with db.read(engine) as conn:
        assert conn.execute(COUNT).scalar_one() >= 1


@SQLITE
def test_a_snapshot_ends_its_transaction_even_when_a_read_fails(engine: Engine, tenant: Tenant) -> None:
    readers = thread_readers(engine)
    assert readers is not None
    missing = select(literal_column("x")).select_from(table("no_such_table"))
    with pytest.raises(OperationalError, match="no such table"), db.driver_snapshot(engine) as reads:
        reads.scalar(missing, {})
    assert not readers.reads().raw.in_transaction  # a held snapshot would stop checkpoints
    with db.driver_snapshot(engine) as reads:
        assert reads.scalar(COUNT, {}) >= 1


@SQLITE
def test_a_connection_stuck_in_a_transaction_is_replaced(engine: Engine, tenant: Tenant) -> None:
    readers = thread_readers(engine)
    assert readers is not None
    stuck = readers.reads().raw
    stuck.execute("BEGIN")  # as if a snapshot's ROLLBACK had failed: its old state must not be served
    fresh = readers.reads()
    assert fresh.raw is not stuck and not fresh.raw.in_transaction
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        stuck.execute("SELECT 1")


@SQLITE
def test_connections_of_ended_threads_are_closed(engine: Engine, tenant: Tenant) -> None:
    readers = thread_readers(engine)
    assert readers is not None
    left: list[sqlite3.Connection] = []
    for _ in range(5):
        thread = threading.Thread(target=lambda: left.append(readers.reads().raw))
        thread.start()
        thread.join()
    readers.reads()  # opening one (here: this thread's) closes those of threads that have ended
    for raw in left[:-1]:
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            raw.execute("SELECT 1")
    assert len(readers._opened) <= 2


def file_engine(tmp_path: Path) -> tuple[Engine, ThreadReaders]:
    """A SQLite file's engine (the file made) and its per-thread readers."""
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    with engine.connect():
        pass
    readers = thread_readers(engine)
    assert readers is not None
    return engine, readers


def test_a_forked_child_drops_inherited_connections_without_closing_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, readers = file_engine(tmp_path)
    parents = readers.reads().raw
    monkeypatch.setattr(driver.os, "getpid", lambda: -1)  # now "in a child"
    childs = readers.reads().raw
    assert childs is not parents
    engine.dispose()  # SQLAlchemy's after-fork step fires engine_disposed in the child
    parents.execute("SELECT 1")  # the parent's connection was left alone
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        childs.execute("SELECT 1")
    monkeypatch.undo()
    parents.close()


def test_disposing_the_engine_closes_the_read_connections(tmp_path: Path) -> None:
    engine, readers = file_engine(tmp_path)
    raw = readers.reads().raw
    engine.dispose()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        raw.execute("SELECT 1")
    assert readers.reads().raw is not raw  # a later read opens a fresh one


def test_other_engines_read_through_their_pool(tmp_path: Path) -> None:
    # A URI with options (as an in-memory database) is the pool's to open, as configured.
    other = make_engine(f"sqlite:///file:{tmp_path / 'uri.sqlite3'}?mode=rwc&uri=true")
    try:
        assert thread_readers(other) is None
        with db.driver_snapshot(other) as reads:
            assert reads.scalar(select(func.count()).select_from(select(1).subquery()), {}) == 1
        assert db.first_row(other, select(bindparam("n")), {"n": 7}) == (7,)
    finally:
        other.dispose()


@SQLITE
def test_sqlite_writes_run_in_the_transaction_sqlalchemy_holds(engine: Engine, tenant: Tenant) -> None:
    rename = accounts.update().where(accounts.c.id == bindparam("b_id")).values(name=bindparam("name"))

    def renamed_then_failed(to: str) -> None:
        with db.write(engine) as conn:
            writes = SqliteWrites(conn)
            writes.run(rename, {"b_id": tenant.id, "name": to})
            assert writes.rows("SELECT name FROM accounts WHERE id = ?", (tenant.id,)) == [(to,)]
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        renamed_then_failed("rolled-back")
    assert db.first_row(engine, BY_NAME, {"name": "rolled-back"}) is None  # rolled back with it
    with db.write(engine) as conn:
        SqliteWrites(conn).run_many("UPDATE accounts SET name = ? WHERE id = ?", [("kept", tenant.id)])
    assert db.first_row(engine, BY_NAME, {"name": "kept"}) == (tenant.id, "kept")


@SQLITE
def test_sqlite_write_errors_are_sqlalchemy_errors(engine: Engine, tenant: Tenant) -> None:
    with pytest.raises(IntegrityError, match=r"(?i)unique"), db.write(engine) as conn:
        SqliteWrites(conn).run_many(
            "INSERT INTO accounts (id, name, timezone, country, max_window_days, recording_url_ttl, "
            "rate_limit_per_minute, created_ts) VALUES (?, 'twin', 'UTC', 'VN', 30, 1800, 0, 0)",
            [(tenant.id,)],
        )
    with pytest.raises(OperationalError, match="no such table"), db.write(engine) as conn:
        SqliteWrites(conn).rows("SELECT * FROM no_such_table")


@SQLITE
def test_sqlite_writes_refuse_a_connection_outside_a_transaction(engine: Engine) -> None:
    with engine.connect() as conn, pytest.raises(RuntimeError, match=r"inside db\.write"):
        SqliteWrites(conn)
