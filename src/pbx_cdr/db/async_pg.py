"""One-statement reads of PostgreSQL awaited on the event loop: the token lookup of every request.

Through SQLAlchemy's (blocking) engine each lookup took a hop to a worker thread and back, and with
dozens of requests in flight those threads fought over the GIL: measured in process, a single-call
POST cost 975 µs of CPU with the lookup and 293 µs without it. Here the lookup is awaited on the
event loop itself, over psycopg's async connections, with no thread at all.

The connections are a small LIFO pool of this module's own, because a lost database must answer 503
at once, as the blocking engine does: ``psycopg_pool`` waits for its background reconnection instead
(a request stalled for its whole timeout during an outage). A connection idle for more than
``PING_AFTER_IDLE_S`` is checked before use (``engine._ping_when_idle`` does the same for the
blocking engine), so a restarted database costs no request a 503; a broken one is dropped. At most
``max_size`` connections per event loop; a pool belongs to the loop that made it (a server process
has one, each test client its own). The statements are the same SQLAlchemy constructs the rest of
the code runs, compiled once; driver errors are raised as SQLAlchemy's, which the app answers 503.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from sqlalchemy import Engine, Select
from sqlalchemy.exc import DBAPIError

from pbx_cdr.db.driver import driver_statement
from pbx_cdr.db.engine import PING_AFTER_IDLE_S

Conn = psycopg.AsyncConnection[Any]


class _Pool:
    def __init__(self, conninfo: str, max_size: int) -> None:
        self.conninfo = conninfo
        self.slots = asyncio.Semaphore(max_size)
        self.idle: list[tuple[Conn, float]] = []  # (connection, when it was last returned)

    async def _take(self) -> Conn:
        while self.idle:
            conn, since = self.idle.pop()  # the most recently used: warm, and the rest may idle out
            if conn.broken or conn.closed:
                continue
            if time.monotonic() - since > PING_AFTER_IDLE_S:
                try:
                    await conn.execute("SELECT 1")
                except psycopg.Error:
                    await conn.close()
                    continue
            return conn
        return await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        async with self.slots:
            conn = await self._take()
            try:
                yield conn
            finally:
                if conn.broken or conn.closed:
                    await conn.close()
                else:
                    self.idle.append((conn, time.monotonic()))

    async def close(self) -> None:
        idle, self.idle = self.idle, []
        for conn, _ in idle:
            await conn.close()


class AsyncReader:
    """Awaitable one-row reads for ``engine``'s PostgreSQL database."""

    def __init__(self, engine: Engine, max_size: int) -> None:
        self.engine = engine
        self.conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
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
        rows = await self._fetch(statement, params, one=True)
        return rows[0] if rows else None

    async def all_rows(self, statement: Select[Any], params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Every row of the statement, as tuples."""
        return await self._fetch(statement, params, one=False)

    async def _fetch(
        self, statement: Select[Any], params: dict[str, Any], *, one: bool
    ) -> list[tuple[Any, ...]]:
        compiled = driver_statement(statement, self.engine.dialect)
        sql, values = compiled.sql, compiled.bind(params)
        try:
            async with self._ready().connection() as conn:
                cursor = await conn.execute(sql, values)
                if one:
                    row = await cursor.fetchone()
                    return [] if row is None else [row]
                return await cursor.fetchall()
        except psycopg.Error as exc:
            raise DBAPIError.instance(sql, values, exc, psycopg.Error) from exc

    async def close(self) -> None:
        pool, self._pool, self._loop = self._pool, None, None
        if pool is not None:
            await pool.close()
