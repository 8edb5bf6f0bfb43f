"""One-statement reads of PostgreSQL awaited on the event loop: the token lookup of every request
and the list.

Through SQLAlchemy's (blocking) engine each lookup took a hop to a worker thread and back, and with
dozens of requests in flight those threads fought over the GIL: measured in process, a single-call
POST cost 975 µs of CPU with the lookup and 293 µs without it. Here the reads are awaited on the
event loop itself, with no thread at all.

The connections are psycopg's async connections, in a small LIFO pool of this module's own, because
a lost database must answer 503 at once, as the blocking engine does: ``psycopg_pool`` waits for its
background reconnection instead (a request stalled for its whole timeout during an outage). A
connection idle for more than ``PING_AFTER_IDLE_S`` is checked before use (``engine._ping_when_idle``
does the same for the blocking engine), so a restarted database costs no request a 503; a broken
one is dropped. At most ``max_size`` connections per event loop; a pool belongs to the loop that
made it (a server process has one, each test client its own).

A read runs on the connection's libpq handle (``pgconn``), not through psycopg's cursor: each
statement is prepared on a connection the first time it runs there, then executed by name, and its
rows are loaded by psycopg's own (C) loaders. psycopg's cursor, with its query conversion and its
generator-driven waits, had cost about 130 µs of CPU a statement, 75 here. Parameters go as text
and PostgreSQL types them from the statement (SQLAlchemy casts every one). A read cut short (a
cancelled request) closes its connection, since its answer may still be on the way; so does a read
whose prepared statement went stale. libpq is never asked for a result while it is busy: it would
wait for the server with the event loop (and the GIL) held. The statements
are the same SQLAlchemy constructs the rest of the code runs, compiled once; driver errors are
raised as SQLAlchemy's, which the app answers 503.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import abc, pq
from psycopg.adapt import Transformer
from sqlalchemy import URL, Dialect, Engine, Select, make_url
from sqlalchemy.exc import DBAPIError

from pbx_cdr.db.driver import driver_statement
from pbx_cdr.db.engine import PG_SESSION_SETTINGS, PING_AFTER_IDLE_S

Conn = psycopg.AsyncConnection[Any]
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")
# The reads' statements are planned once for all values. Left to choose, PostgreSQL re-planned a
# first page's list for the biggest account on every run (its plan for those values looked cheaper
# than the generic one, which is as fast): 0.4 ms of planning a list. Every list shape is checked
# under generic plans (``tests/api/test_list_plans.py``).
_SESSION = f"SET plan_cache_mode = force_generic_plan; {PG_SESSION_SETTINGS}"
# "cached plan must not change result type" (a migration changed a column), "prepared statement does
# not exist" (the server side lost it): the connection is dropped, and the next one prepares afresh.
_STALE_STATEMENTS = frozenset({"0A000", "26000"})


@dataclass(frozen=True)
class _Prepared:
    """A statement as libpq takes it: ``$n`` placeholders, and the parameter of each ``n``."""

    sql: str
    names: tuple[str, ...]
    fixed: dict[str, Any]
    name: bytes

    def values(self, params: dict[str, Any]) -> list[bytes | None]:
        merged = {**self.fixed, **params}
        return [_text(merged[name]) for name in self.names]


@lru_cache(maxsize=256)
def _prepared(statement: Select[Any], dialect: Dialect) -> _Prepared:
    """psycopg's ``%(name)s`` placeholders as ``$n`` (a name used twice keeps its number)."""
    compiled = driver_statement(statement, dialect)
    names: dict[str, int] = {}

    def placeholder(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "%"
        return f"${names.setdefault(name, len(names) + 1)}"

    sql = _PLACEHOLDER.sub(placeholder, compiled.sql)
    # Named after its text: the same name is the same statement on every connection, and a name that
    # reached the wrong connection (a misconfigured pooler) could only fail, never run another statement.
    name = f"pbx_{hashlib.blake2b(sql.encode(), digest_size=12).hexdigest()}".encode()
    return _Prepared(sql, tuple(names), compiled.fixed, name)


def _text(value: Any) -> bytes | None:
    """A parameter in PostgreSQL's text form (the statement casts it to its type)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, str) and "\x00" in value:  # libpq would end a text parameter there
        raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
    if isinstance(value, int | str):
        return str(value).encode()
    raise TypeError(f"no text form for a parameter of type {type(value).__name__}")


@dataclass
class _Session:
    """A connection, the statements prepared on it, its row loader, and when it was last returned."""

    conn: Conn
    prepared: set[bytes] = field(default_factory=set)  # the names of the statements prepared on it
    since: float = 0.0
    loader: abc.Transformer = field(init=False)  # kept, as a psycopg cursor keeps its own

    def __post_init__(self) -> None:
        self.loader = Transformer(self.conn)

    @property
    def usable(self) -> bool:
        return not (self.conn.closed or self.conn.broken)

    async def _result(self) -> pq.abc.PGresult:
        """Wait for the statement sent and return its result (the last one libpq gives)."""
        pgconn = self.conn.pgconn
        loop = asyncio.get_running_loop()
        while pgconn.flush():  # a few hundred bytes: nearly always sent at once
            await _until_ready(loop, pgconn.socket, write=True)
        last = None
        while True:
            # Never ask libpq for a result while it is busy: it would wait for the server with the
            # event loop (and the GIL) held. Having handed over a result, it is busy again until
            # the server's ready-for-query arrives, which may come in a later packet (an error's
            # does).
            pgconn.consume_input()
            if pgconn.is_busy():
                await _until_ready(loop, pgconn.socket, write=False)
                continue
            result = pgconn.get_result()
            if result is None:
                break
            last = result
        if pgconn.status == pq.ConnStatus.BAD:  # libpq reports a lost connection as a result
            message = (last.error_message if last else pgconn.error_message).decode(errors="replace")
            raise psycopg.OperationalError(message.strip() or "the connection is lost")
        if last is None:
            raise psycopg.OperationalError("the server sent no result")
        if last.status == pq.ExecStatus.FATAL_ERROR:
            raise psycopg.errors.error_from_result(last, encoding=self.conn.info.encoding)
        return last

    async def rows(self, prepared: _Prepared, values: Sequence[bytes | None]) -> list[tuple[Any, ...]]:
        pgconn = self.conn.pgconn
        if prepared.name not in self.prepared:
            pgconn.send_prepare(prepared.name, prepared.sql.encode())
            await self._result()
            self.prepared.add(prepared.name)
        pgconn.send_query_prepared(prepared.name, values)
        result = await self._result()
        self.loader.set_pgresult(result)
        return self.loader.load_rows(0, result.ntuples, tuple)


async def _until_ready(loop: asyncio.AbstractEventLoop, fd: int, *, write: bool) -> None:
    waiter = loop.create_future()

    def wake() -> None:
        if not waiter.done():
            waiter.set_result(None)

    watch, unwatch = (loop.add_writer, loop.remove_writer) if write else (loop.add_reader, loop.remove_reader)
    watch(fd, wake)
    try:
        await waiter
    finally:
        unwatch(fd)


def _nothing_ended_it(conn: Conn) -> bool:
    """Whether a pooled connection is still open, as far as what the server sent while it sat idle
    says: a terminated backend or a restarted server sends an error and closes it, and the read
    sent on it would have failed (a 503). Two non-blocking reads (nearly always of nothing), about a
    microsecond each: libpq stops at the error's bytes, and sees the end of the stream on the next."""
    pgconn = conn.pgconn
    try:
        pgconn.consume_input()
        pgconn.consume_input()
    except psycopg.OperationalError:  # the end of the stream: libpq marks the connection bad
        return False
    return pgconn.status == pq.ConnStatus.OK


class _Pool:
    def __init__(self, conninfo: str, max_size: int) -> None:
        self.conninfo = conninfo
        self.slots = asyncio.Semaphore(max_size)
        self.idle: list[_Session] = []

    async def _take(self) -> _Session:
        while self.idle:
            session = self.idle.pop()  # the most recently used: warm, and the rest may idle out
            if not (session.usable and _nothing_ended_it(session.conn)):
                await session.conn.close()
                continue
            if time.monotonic() - session.since > PING_AFTER_IDLE_S:
                try:
                    await session.conn.execute("SELECT 1")
                except psycopg.Error:
                    await session.conn.close()
                    continue
                except BaseException:  # cut short: its answer may still be on the way
                    await session.conn.close()
                    raise
            return session
        # UTF-8 whatever the database's default: parameters are sent encoded so.
        conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True, client_encoding="utf8")
        try:
            await conn.execute(_SESSION)
        except BaseException:
            await conn.close()
            raise
        return _Session(conn)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[_Session]:
        async with self.slots:
            session = await self._take()
            keep = False
            try:
                yield session
                keep = True
            except psycopg.Error as exc:
                # A statement the server refused (an error result) leaves the connection in step,
                # unless the refusal says its prepared statements are stale or gone.
                keep = exc.pgresult is not None and exc.sqlstate not in _STALE_STATEMENTS
                raise
            finally:
                if keep and session.usable:
                    session.since = time.monotonic()
                    self.idle.append(session)
                else:  # lost, or cut short while its answer may still be on the way
                    await session.conn.close()

    async def close(self) -> None:
        idle, self.idle = self.idle, []
        for session in idle:
            await session.conn.close()


def libpq_conninfo(url: str | URL) -> str:
    """A SQLAlchemy database URL as a libpq connection string (a ``postgresql://`` URL)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class AsyncReader:
    """Awaitable reads for ``engine``'s PostgreSQL database."""

    def __init__(self, engine: Engine, max_size: int) -> None:
        self.engine = engine
        self.conninfo = libpq_conninfo(engine.url)
        self.max_size = max_size
        self._pool: _Pool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _ready(self) -> _Pool:
        loop = asyncio.get_running_loop()
        if self._pool is None or self._loop is not loop:
            self._pool, self._loop = _Pool(self.conninfo, self.max_size), loop
        return self._pool

    async def first_row(self, statement: Select[Any], params: dict[str, Any]) -> tuple[Any, ...] | None:
        """The statement's first row as a tuple, or None; as :func:`engine.first_row` on SQLite."""
        rows = await self.all_rows(statement, params)
        return rows[0] if rows else None

    async def all_rows(self, statement: Select[Any], params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Every row of the statement, as tuples."""
        prepared = _prepared(statement, self.engine.dialect)
        try:
            values = prepared.values(params)
            async with self._ready().session() as session:
                return await session.rows(prepared, values)
        except psycopg.Error as exc:
            raise DBAPIError.instance(prepared.sql, params, exc, psycopg.Error) from exc

    async def close(self) -> None:
        pool, self._pool, self._loop = self._pool, None, None
        if pool is not None:
            await pool.close()
