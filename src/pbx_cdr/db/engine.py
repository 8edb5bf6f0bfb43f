"""Engines for SQLite (embedded default) and PostgreSQL (production): the dialect differences live here.

Transactions: repositories take a ``Connection`` and never commit; the request or CLI command owns
the transaction through :func:`read` and :func:`write`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Select, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError

from pbx_cdr.db.driver import DriverReads, thread_readers, translated_errors
from pbx_cdr.errors import ServiceUnavailable

_WRITE = "pbx_write"
_SYNCHRONOUS = "pbx_synchronous"
_IDLE_SINCE = "pbx_idle_since"
# A pooled PostgreSQL connection idle for longer than this is checked with a ``SELECT 1`` before use.
PING_AFTER_IDLE_S = 2.0
# What every PostgreSQL connection sets when it connects, whatever the server's or the database's
# defaults: the list's items are the times' text in the ISO date style (``queries/item_values.py``).
PG_SESSION_SETTINGS = "SET DateStyle = 'ISO'"
# libpq's keepalive settings for the connections held open on the event loop (the pipelined reads,
# the listener): one whose peer went silent is given up after about 20 s.
TCP_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 2}


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, *, sqlite_synchronous: str = "FULL", pool_size: int = 10) -> Engine:
    """An engine with the pragmas, pool and transaction handling this service relies on."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=pool_size,
            # The connection used last is handed out first: each connection's page cache grows to
            # 64 MB, and handed out in turn (first in, first out), every pooled connection grew
            # one; the ingest writer's server process reached 391 MB during batch posts.
            pool_use_lifo=True,
        )
        _configure_sqlite(engine, sqlite_synchronous)
        return engine
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        # psycopg prepares a statement after its fifth run, and PostgreSQL then plans it once,
        # without its values (a generic plan), when that looks no worse than planning each time:
        # planning a list cost more than running it (0.3-0.6 ms). Every list statement is shaped
        # so that its generic plan reads the same indexes in the same order as a custom one
        # (tests/api/test_list_plans.py).
    )
    _ping_when_idle(engine)
    _configure_postgres(engine)
    return engine


def _configure_postgres(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.execute(PG_SESSION_SETTINGS)
        dbapi_connection.commit()  # psycopg opened a transaction for it


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection before use only when it sat idle (``pool_pre_ping`` checks always).

    A busy process reuses its connections within milliseconds and pays no round trip; one that sat
    idle (a restarted database, a proxy's idle timeout) gets a ``SELECT 1`` first, and a dead
    connection is replaced before the request sees it. A connection that dies in use is detected by
    SQLAlchemy, which then discards every pooled connection older than the failure; that request
    answers 503 (see :func:`_unavailable_on_loss`).
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)  # what pool_pre_ping runs
            dbapi_connection.rollback()
        except Exception as exc:  # the pool catches this, drops the connection and connects anew
            raise DisconnectionError() from exc


def _configure_sqlite(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        # We issue BEGIN ourselves (below) so writers can take the lock up front.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.close()
        record.info[_SYNCHRONOUS] = synchronous

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A deferred transaction that later writes can fail with SQLITE_BUSY on the lock upgrade;
        # IMMEDIATE waits for the write lock at BEGIN instead (busy_timeout applies). Straight on
        # the driver: SQLAlchemy's execution path cost 9 µs of every transaction (read or write).
        sql = "BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN"
        with translated_errors(conn.dialect, sql, ()):
            conn.connection.dbapi_connection.execute(sql)  # type: ignore[union-attr]


@contextmanager
def read(engine: Engine) -> Iterator[Connection]:
    """A read-only unit of work."""
    with _unavailable_on_loss(), engine.connect() as conn, conn.begin():
        yield conn


@contextmanager
def read_one(engine: Engine) -> Iterator[Connection]:
    """A read of one statement: on PostgreSQL outside any transaction (one statement is one snapshot
    on its own), one round trip instead of three. SQLite's hot one-statement read, the token
    lookup, goes straight through the driver instead (:func:`first_row`)."""
    if is_sqlite(engine):
        with read(engine) as conn:
            yield conn
        return
    with _unavailable_on_loss(), engine.connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")


def first_row(engine: Engine, statement: Select[Any], params: dict[str, Any]) -> tuple[Any, ...] | None:
    """The first row of a one-statement read, as a plain tuple, or None.

    For the reads every request makes (the token lookup). On a SQLite file it runs straight through
    the driver, on this thread's own connection (``db/driver.py``); its columns must need no result
    conversion (integers and strings). Driver errors are raised as SQLAlchemy's, so a locked or
    missing database still answers 503. On PostgreSQL, where the round trip dwarfs SQLAlchemy's
    cost, it is an ordinary :func:`read_one`.
    """
    readers = thread_readers(engine)
    if readers is not None:
        with _unavailable_on_loss():
            return readers.reads().first(statement, params)
    with read_one(engine) as conn:
        row = conn.execute(statement, params).first()
    return None if row is None else tuple(row)


@contextmanager
def driver_snapshot(engine: Engine) -> Iterator[DriverReads]:
    """Reads straight through the driver (statements whose columns need no result conversion).

    On a SQLite file: this thread's own connection, in a read transaction, so every read sees one
    state of the database. On any other engine: a pooled connection in :func:`read` (PostgreSQL's
    default isolation, read committed: its list is one statement and does not come here).
    """
    readers = thread_readers(engine)
    if readers is None:
        with read(engine) as conn:
            yield DriverReads.of(conn)
        return
    with _unavailable_on_loss(), readers.snapshot() as reads:
        yield reads


@contextmanager
def write(engine: Engine, *, durable: bool = True) -> Iterator[Connection]:
    """A unit of work that writes: committed when the block ends without error, else rolled back.

    ``durable=False`` is for bookkeeping whose loss in a power cut harms nothing (rate-limit
    counters, a token's ``last_used_at``): its commit does not wait for the disk. Calls, legs,
    recordings and audit events are always durable.
    """
    with _unavailable_on_loss(), engine.connect() as conn:
        conn = conn.execution_options(**{_WRITE: True})
        if durable:
            with conn.begin():
                yield conn
        elif is_sqlite(conn):
            # NORMAL: the commit skips the fsync; the WAL stays consistent (never corrupted) and the
            # next durable commit or checkpoint syncs it. Set and restored outside the transaction.
            raw = conn.connection.dbapi_connection
            assert raw is not None
            raw.execute("PRAGMA synchronous=NORMAL")
            try:
                with conn.begin():
                    yield conn
            finally:
                raw.execute(f"PRAGMA synchronous={conn.connection.info.get(_SYNCHRONOUS, 'FULL')}")
        else:
            with conn.begin():
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                yield conn


@contextmanager
def _unavailable_on_loss() -> Iterator[None]:
    """A database that cannot be reached answers 503, not 500."""
    try:
        yield
    except OperationalError as exc:
        if _is_connection_loss(exc):
            raise ServiceUnavailable() from exc
        raise


# PostgreSQL's "try the transaction again" refusals: a deadlock victim, a serialization failure.
_TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})


def is_transient(exc: BaseException) -> bool:
    """Whether the database refused the transaction only for now: run again, it may well commit."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in _TRANSIENT_SQLSTATES


def _is_connection_loss(exc: DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    text = str(exc.orig).lower()
    return any(
        marker in text
        for marker in (
            "connection refused",
            "could not connect",
            "server closed the connection",
            "terminating connection",
            "connection is closed",
            "the database system is",
            "no such host",
            "unable to open database file",
            "database is locked",
        )
    )
