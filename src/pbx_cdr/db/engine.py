"""Engines for SQLite (embedded default) and PostgreSQL (production): the dialect differences live here.

Transactions: repositories take a ``Connection`` and never commit; the request or CLI command owns
the transaction through :func:`read` and :func:`write`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from pbx_cdr.errors import ServiceUnavailable

_WRITE = "pbx_write"
_SYNCHRONOUS = "pbx_synchronous"


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
        )
        _configure_sqlite(engine, sqlite_synchronous)
        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
    )


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
        # IMMEDIATE waits for the write lock at BEGIN instead (busy_timeout applies).
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


@contextmanager
def read(engine: Engine) -> Iterator[Connection]:
    """A read-only unit of work."""
    with _unavailable_on_loss(), engine.connect() as conn, conn.begin():
        yield conn


@contextmanager
def read_one(engine: Engine) -> Iterator[Connection]:
    """A read of one statement: on PostgreSQL outside any transaction (one round trip, not three)."""
    if is_sqlite(engine):
        with read(engine) as conn:
            yield conn
        return
    with _unavailable_on_loss(), engine.connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")


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
