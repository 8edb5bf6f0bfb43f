"""One-statement reads of PostgreSQL awaited on the event loop: the token lookup of every request
and the list.

Through SQLAlchemy's (blocking) engine each lookup took a hop to a worker thread and back, and with
dozens of requests in flight those threads fought over the GIL: measured in process, a single-call
POST cost 975 µs of CPU with the lookup and 293 µs without it. Here the reads are awaited on the
event loop itself, with no thread at all.

The connections are psycopg's async connections in libpq's pipeline mode (``db/pg_pipe.py``): the
reads of an event loop share a few of them (``PIPES``), each read sent without waiting for those
before it, so the server runs them back to back and the loop reads their answers together. At 10M
calls, a small account's list over HTTP went from 2,822-3,113 to 3,542-3,862 a second, with 15% less
of the server's CPU and of PostgreSQL's a list (``docs/benchmarks.md``). A read goes to an idle
connection, or opens one, or else joins the one with the fewest reads in flight among those not
stuck behind a slow read (``SLOW_S``), and holds its place until answered even if its request is
cancelled; reads waiting for a connection being opened share its outcome; the server ends a read
after ``READ_TIMEOUT_S``. The pool is this module's own, because a lost database must answer 503 at
once, as the blocking engine does: ``psycopg_pool`` waits for its background reconnection instead.
Each connection's socket is watched for as long as it lives, so one the server ends (a restart, a
terminated backend) is dropped as soon as it says so, before any request uses it. A pool belongs to
the loop that made it (a server process has one, each test client its own).

A read runs on the connection's libpq handle (``pgconn``), not through psycopg's cursor: each
statement is prepared on a connection the first time it runs there, then executed by name, and its
rows are loaded by psycopg's own (C) loaders. psycopg's cursor, with its query conversion and its
generator-driven waits, had cost about 130 µs of CPU a statement, 75 on the handle. Parameters go as
text and PostgreSQL types them from the statement (SQLAlchemy casts every one). A read cut short (a
cancelled request) leaves its connection in step: its answer is read in its turn and dropped. A
connection whose prepared statements went stale is retired. The statements are the same SQLAlchemy
constructs the rest of the code runs, compiled once; driver errors are raised as SQLAlchemy's, which
the app answers 503.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import pq
from psycopg.conninfo import make_conninfo
from sqlalchemy import URL, Dialect, Engine, Select, make_url
from sqlalchemy.exc import DBAPIError

from pbx_cdr.db.driver import driver_statement
from pbx_cdr.db.engine import PG_SESSION_SETTINGS, TCP_KEEPALIVES
from pbx_cdr.db.pg_pipe import Pipe

Conn = psycopg.AsyncConnection[Any]
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")
# The reads' statements are planned once for all values. Left to choose, PostgreSQL re-planned a
# first page's list for the biggest account on every run (its plan for those values looked cheaper
# than the generic one, which is as fast): 0.4 ms of planning a list. Every list shape is checked
# under generic plans (``tests/api/test_list_plans.py``).
# A read the server has run for READ_TIMEOUT_S is ended (a 503): the reads pipelined behind it on its
# connection wait for it, and its request may have gone long before. Every read here is an indexed
# lookup or a list page (milliseconds at 10M calls, ``docs/benchmarks.md``).
READ_TIMEOUT_S = 30
# A connection with a read unanswered for this long has stopped answering (a peer gone silent, a
# stalled pooler: the server itself would have ended the read): it is given up, and its reads fail.
ANSWER_WITHIN_S = READ_TIMEOUT_S + 5
_SESSION = (
    "SET plan_cache_mode = force_generic_plan;"
    f" SET statement_timeout = '{READ_TIMEOUT_S}s'; {PG_SESSION_SETTINGS}"
)
# "cached plan must not change result type" (a migration changed a column), "prepared statement does
# not exist" (the server side lost it): the connection is retired, and the next one prepares afresh.
_STALE_STATEMENTS = frozenset({"0A000", "26000"})
PIPES = 3  # connections per event loop (fewer if the pool size is smaller)
DEPTH = 8  # reads in flight per connection, on average, before more wait
# A connection whose oldest read in flight has waited this long is behind a slow read: a list takes
# well under a millisecond of the server's time, and a connection 8 reads deep a few, but a busy
# event loop reads answers late (p99 20-30 ms over HTTP at full load), and at 10 ms, connections
# counted as slow that were only waiting to be read cost 8% of the lists a second.
SLOW_S = 0.1


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


def _behind(pipe: Pipe, now: float) -> tuple[bool, float]:
    """How far behind a busy connection is: whether its oldest read is slow, then, if it is not, how
    many reads it has in flight, and if it is, how long that read has waited."""
    age = now - (pipe.oldest or now)
    return (True, age) if age > SLOW_S else (False, len(pipe.pending))


def _closed() -> psycopg.OperationalError:
    return psycopg.OperationalError("the reader is closed")


class _Pool:
    """The pipelined connections of one event loop: at most ``max_pipes``. A read goes to an idle
    connection, or opens one while there is room, or else joins the one least behind (``_behind``: a
    count of reads in flight alone would queue a quick read behind a slow one). Reads waiting for a
    connection share its opening, and its failure: against a database that does not answer, each
    waits one connect attempt, not one after another's."""

    def __init__(self, conninfo: str, max_pipes: int) -> None:
        self.conninfo = conninfo
        self.max_pipes = max_pipes
        # Reads in flight, all connections; a slot is given back when the read's answer has come
        # (bounded: a slot given back twice would raise).
        self.slots = asyncio.BoundedSemaphore(max_pipes * DEPTH)
        self.pipes: list[Pipe] = []
        self.opening: set[asyncio.Task[Pipe]] = set()
        self.closed = False

    def _gone(self, pipe: Pipe) -> None:
        if pipe in self.pipes:
            self.pipes.remove(pipe)

    def _usable(self) -> list[Pipe]:
        return [p for p in self.pipes if p.usable and p.pgconn.status == pq.ConnStatus.OK]

    def _least_behind(self, usable: list[Pipe]) -> Pipe:
        now = asyncio.get_running_loop().time()
        return min(usable, key=lambda p: _behind(p, now))

    async def _pipe(self) -> Pipe:
        if self.closed:
            raise _closed()
        usable = self._usable()
        idle = next((p for p in usable if not p.pending), None)
        if idle is not None:
            return idle
        if len(self.pipes) + len(self.opening) < self.max_pipes:  # retiring ones still open count
            opening = asyncio.get_running_loop().create_task(self._open())
            self.opening.add(opening)
            opening.add_done_callback(self._opened)
        elif usable:
            return self._least_behind(usable)
        else:  # every connection there may be is being opened
            opening = next(iter(self.opening))
        try:
            # Shielded: a read cancelled meanwhile leaves the opening to the others waiting for it.
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if opening.cancelled() and task is not None and not task.cancelling():
                raise _closed() from None  # the pool closed, this read was not cancelled
            raise
        except psycopg.Error:
            usable = self._usable()  # say "too many clients": the connections open can take it
            if usable:
                return self._least_behind(usable)
            raise

    def _opened(self, opening: asyncio.Task[Pipe]) -> None:
        self.opening.discard(opening)
        if not opening.cancelled():
            opening.exception()  # retrieved here too: every read waiting for it may have gone

    async def _open(self) -> Pipe:
        # UTF-8 whatever the database's default: parameters are sent encoded so.
        conn = await psycopg.AsyncConnection.connect(
            make_conninfo(self.conninfo, **TCP_KEEPALIVES), autocommit=True, client_encoding="utf8"
        )
        try:
            try:
                async with asyncio.timeout(ANSWER_WITHIN_S):
                    await conn.execute(_SESSION)
            except TimeoutError:
                raise psycopg.OperationalError("the server did not answer the session's settings") from None
            if self.closed:
                raise _closed()
            pipe = Pipe(conn, self._gone, self.slots.release, ANSWER_WITHIN_S)
        except BaseException:
            await conn.close()
            raise
        self.pipes.append(pipe)
        return pipe

    async def read(self, prepared: _Prepared, values: Sequence[bytes | None]) -> tuple[Pipe, pq.abc.PGresult]:
        """The statement's result, and the connection it came on (whose loader reads its rows)."""
        await self.slots.acquire()
        try:  # until the read is sent; from then on its connection gives the slot back
            pipe = await self._pipe()
            while True:
                if prepared.name in pipe.prepared:
                    read = pipe.send(prepared.name, None, values)
                    break
                waiting = pipe.preparing.get(prepared.name)
                if waiting is None:  # prepared with this read, in the same unit
                    read = pipe.send(prepared.name, prepared.sql.encode(), values)
                    break
                await waiting.wait()  # another read is preparing it: after its answer, prepared or not
                if not pipe.usable:  # lost or retired meanwhile: this read was never sent
                    pipe = await self._pipe()
        except BaseException:
            self.slots.release()
            raise
        try:
            return pipe, await read.future
        except psycopg.Error as exc:
            if exc.sqlstate in _STALE_STATEMENTS:
                pipe.retire()
            raise

    def close(self) -> None:
        self.closed = True
        for opening in list(self.opening):
            opening.cancel()
        for pipe in list(self.pipes):
            pipe.close()


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
            self._pool, self._loop = _Pool(self.conninfo, min(self.max_size, PIPES)), loop
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
            pipe, result = await self._ready().read(prepared, values)
            pipe.loader.set_pgresult(result)  # no await from here on: the loader is the pipe's
            return pipe.loader.load_rows(0, result.ntuples, tuple)
        except psycopg.Error as exc:
            raise DBAPIError.instance(prepared.sql, params, exc, psycopg.Error) from exc

    async def close(self) -> None:
        pool, self._pool, self._loop = self._pool, None, None
        if pool is not None:
            pool.close()
