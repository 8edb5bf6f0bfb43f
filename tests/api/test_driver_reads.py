"""``db/driver.py``: reads straight through the driver, on a SQLite connection per thread."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, bindparam, func, select

from pbx_cdr.db import engine as db
from pbx_cdr.db.driver import DriverReads, thread_readers
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
    broken = select(func.count()).select_from(accounts).where(bindparam("missing") == 1)
    with pytest.raises(KeyError), db.driver_snapshot(engine) as reads:
        reads.scalar(broken, {})
    assert not readers.reads().raw.in_transaction  # a held snapshot would stop checkpoints
    with db.driver_snapshot(engine) as reads:
        assert reads.scalar(COUNT, {}) >= 1


def test_disposing_the_engine_closes_the_read_connections(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    with engine.connect():
        pass
    readers = thread_readers(engine)
    assert readers is not None
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
