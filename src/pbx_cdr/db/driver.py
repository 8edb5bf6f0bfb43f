"""Hot reads straight through the database driver: statements compiled once, run on its own cursor.

SQLAlchemy's execution path (a pool checkout, the ``BEGIN`` of our ``begin`` event, the statement's
cache key, the result machinery, the pool's reset on return) cost 100-300 µs around the reads every
request makes, which take 10-300 µs themselves on SQLite. The token lookup and the list run here:
SQLAlchemy still builds every statement (tables, dialects, parameters) and compiles it once; the
driver runs it.

On SQLite each thread keeps one read connection of its own (:class:`ThreadReaders`): the event loop
that runs the reads always finds its connection, and its page cache, where it left them.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast
from urllib.parse import quote

from sqlalchemy import Connection, Engine, Select, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement


@lru_cache(maxsize=256)
def driver_statement(statement: ClauseElement, dialect: Dialect) -> DriverStatement:
    """A statement compiled once for ``dialect``, to run through the driver's own cursor.

    Keyed by the statement object: for statements built once (module constants, ``lru_cache``d
    builders), never for one built per call.
    """
    compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
    fixed = {name: value for name, value in compiled.params.items() if value is not None}
    return DriverStatement(str(compiled), tuple(compiled.positiontup or ()), fixed)


@dataclass(frozen=True)
class DriverStatement:
    """SQL, the names of its positional parameters in order (qmark dialects), and the values of
    the parameters the statement fixes itself (a literal ``0`` becomes a bound parameter)."""

    sql: str
    positions: tuple[str, ...]
    fixed: dict[str, Any]

    def bind(self, params: dict[str, Any]) -> Any:
        """The driver's parameters: a tuple in position order, or a dict for named styles."""
        merged = {**self.fixed, **params}
        return tuple(merged[name] for name in self.positions) if self.positions else merged


@contextmanager
def translated_errors(dialect: Dialect, sql: str, params: Any) -> Iterator[None]:
    """The driver's errors raised as SQLAlchemy's, so the app's handlers map them (503s, 409s)."""
    error = dialect.loaded_dbapi.Error
    try:
        yield
    except error as exc:
        raise DBAPIError.instance(sql, params, exc, error) from exc


class DriverReads:
    """Reads on one DB-API connection, in whatever transaction it is in.

    Columns come back as the driver gives them: use it for statements whose columns need no
    SQLAlchemy result conversion (integers, strings, the JSON text SQLite renders).
    """

    def __init__(self, raw: Any, dialect: Dialect) -> None:
        self.raw = raw
        self.dialect = dialect

    @classmethod
    def of(cls, conn: Connection) -> DriverReads:
        """The reads of an SQLAlchemy connection's own DB-API connection (and its transaction)."""
        return cls(conn.connection.dbapi_connection, conn.dialect)

    def rows(self, statement: Select[Any], params: dict[str, Any]) -> list[tuple[Any, ...]]:
        compiled = driver_statement(statement, self.dialect)
        values = compiled.bind(params)
        with translated_errors(self.dialect, compiled.sql, values):
            cursor = self.raw.cursor()
            try:
                cursor.execute(compiled.sql, values)
                rows: list[tuple[Any, ...]] = cursor.fetchall()
            finally:
                cursor.close()
        return rows

    def first(self, statement: Select[Any], params: dict[str, Any]) -> tuple[Any, ...] | None:
        found = self.rows(statement, params)
        return found[0] if found else None

    def scalar(self, statement: Select[Any], params: dict[str, Any]) -> Any:
        return self.rows(statement, params)[0][0]

    def scalars(self, statement: Select[Any], params: dict[str, Any]) -> list[Any]:
        return [row[0] for row in self.rows(statement, params)]


class SqliteWrites:
    """Statements on a SQLite connection's own ``sqlite3`` connection, inside the transaction
    SQLAlchemy began on it (:func:`~pbx_cdr.db.engine.write` still begins, commits and rolls back).

    For the statements every ingest group runs (the insert, the count upserts, the data version):
    SQLAlchemy's execution path cost about 45 µs around each, more than SQLite's own work. SQLite
    only: a lost PostgreSQL connection must go through SQLAlchemy, which invalidates it.
    """

    def __init__(self, conn: Connection) -> None:
        if conn.dialect.name != "sqlite" or not conn.in_transaction():
            # Outside a transaction each statement would commit on its own, behind SQLAlchemy's back.
            raise RuntimeError("SqliteWrites needs a SQLite connection inside db.write")
        self.raw: sqlite3.Connection = conn.connection.dbapi_connection  # type: ignore[assignment]
        self.dialect = conn.dialect

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with translated_errors(self.dialect, sql, params):
            return self.raw.execute(sql, params).fetchall()

    def run_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with translated_errors(self.dialect, sql, ()):
            self.raw.executemany(sql, rows)

    def run(self, statement: ClauseElement, params: dict[str, Any]) -> None:
        """A SQLAlchemy statement, compiled once (see :func:`driver_statement`)."""
        compiled = driver_statement(statement, self.dialect)
        values = compiled.bind(params)
        with translated_errors(self.dialect, compiled.sql, values):
            self.raw.execute(compiled.sql, values)


# An open connection: the process and the thread that opened it, and the connection.
_Opened = tuple[int, threading.Thread, sqlite3.Connection]


class ThreadReaders:
    """One read-only ``sqlite3`` connection per thread for one SQLite database file.

    Autocommit: a lone statement is its own snapshot; :meth:`snapshot` wraps several in one read
    transaction, never nested and with no ``await`` inside (a thread's coroutines share its
    connection). A connection whose thread has ended is closed when the next one is opened; all
    are closed with the engine (``Engine.dispose``), except those a forked child inherited, which are
    only dropped (SQLite's connections must not be used, or closed, across a fork).
    """

    def __init__(self, path: str, dialect: Dialect) -> None:
        self.path = path
        self.dialect = dialect
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: list[_Opened] = []

    def reads(self) -> DriverReads:
        """This thread's connection (opened on first use), outside any transaction."""
        mine: tuple[int, DriverReads] | None = getattr(self._local, "reads", None)
        if mine is None or mine[0] != os.getpid():
            reads = DriverReads(self._connect(), self.dialect)
            self._local.reads = (os.getpid(), reads)
            return reads
        reads = mine[1]
        if reads.raw.in_transaction:  # a snapshot that could not end: never serve its old state
            self._discard(reads)
            return self.reads()
        return reads

    @contextmanager
    def snapshot(self) -> Iterator[DriverReads]:
        """Several reads that see one state of the database."""
        reads = self.reads()
        try:
            reads.raw.execute("BEGIN")
        except sqlite3.Error as exc:
            raise DBAPIError.instance("BEGIN", (), exc, sqlite3.Error) from exc
        try:
            yield reads
        finally:
            try:
                if reads.raw.in_transaction:
                    reads.raw.execute("ROLLBACK")
            except sqlite3.Error:
                # A read transaction left open would hold its snapshot (and stop checkpoints).
                self._discard(reads)

    def close(self) -> None:
        pid = os.getpid()
        with self._lock:
            opened, self._opened = self._opened, []
        for owner, _, raw in opened:
            if owner == pid:
                raw.close()
        self._local = threading.local()

    def _discard(self, reads: DriverReads) -> None:
        self._local.reads = None
        with self._lock:
            self._opened = [entry for entry in self._opened if entry[2] is not reads.raw]
        with suppress(sqlite3.Error):
            reads.raw.close()

    def _connect(self) -> sqlite3.Connection:
        try:
            # mode=rw: never create a database file here (the engine and the migrations do that).
            raw = sqlite3.connect(
                f"file:{quote(self.path)}?mode=rw",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=30,
            )
            raw.execute("PRAGMA query_only=ON")
            raw.execute("PRAGMA cache_size=-65536")
            raw.execute("PRAGMA temp_store=MEMORY")
        except sqlite3.Error as exc:
            raise DBAPIError.instance("connect", (), exc, sqlite3.Error) from exc
        pid = os.getpid()
        with self._lock:
            # A forked child drops what it inherited; everyone closes what ended threads left.
            kept: list[_Opened] = []
            ended: list[_Opened] = []
            for entry in self._opened:
                if entry[0] != pid:
                    continue
                (kept if entry[1].is_alive() else ended).append(entry)
            self._opened = [*kept, (pid, threading.current_thread(), raw)]
        for _, _, stale in ended:
            stale.close()
        return raw


_readers: weakref.WeakKeyDictionary[Engine, ThreadReaders | None] = weakref.WeakKeyDictionary()
_readers_lock = threading.Lock()


def thread_readers(engine: Engine) -> ThreadReaders | None:
    """The per-thread readers of a SQLite engine on a database file; None for any other engine
    (PostgreSQL, an in-memory or URI-configured SQLite), which reads through its pool."""
    try:
        return _readers[engine]
    except KeyError:
        pass
    with _readers_lock:
        if engine in _readers:
            return _readers[engine]
        url = engine.url
        file_backed = (
            engine.dialect.name == "sqlite"
            and bool(url.database)
            and url.database != ":memory:"
            and not url.query
        )
        readers = ThreadReaders(os.path.abspath(str(url.database)), engine.dialect) if file_backed else None
        if readers is not None:
            event.listen(engine, "engine_disposed", lambda _engine: readers.close())
        _readers[engine] = readers
        return readers
