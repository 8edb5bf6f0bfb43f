"""Changes to who may call the API, heard as they commit: PostgreSQL's ``LISTEN``.

Migration 0008 has PostgreSQL notify :data:`CHANNEL`, from triggers, in the transaction of any change
to a token (revoked, deleted, its scopes) or to an account's settings, however it was made. A server
process listens on one connection of its own (a few hundred bytes of buffers, idle but for the
notifications) and tells its token cache (``api/token_cache.py``):

- ``on_listening(True)`` once ``LISTEN`` is in effect: from then on every change is heard;
- ``on_change()`` for every change heard;
- ``on_listening(False)`` when the connection is lost: changes may go unheard until it is back,
  which is tried again with a growing pause (0.5 s to 10 s).

The connection's socket is watched by the event loop; :meth:`AuthChangeListener.heard` also reads
what has already arrived, without waiting, so a caller about to rely on the cache has every
notification the network has delivered. TCP keepalives find a connection that died silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import pq
from psycopg.conninfo import make_conninfo

CHANNEL = "pbx_cdr_auth"
_LISTEN = f"LISTEN {CHANNEL}"
_RETRY_FIRST_S = 0.5
_RETRY_MAX_S = 10.0
# libpq's keepalive settings: a connection that stopped answering is given up after about 20 s.
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 2}

log = logging.getLogger(__name__)


class AuthChangeListener:
    """Listens on :data:`CHANNEL` from the event loop that first asks it to (see :meth:`heard`)."""

    def __init__(
        self, conninfo: str, *, on_change: Callable[[], None], on_listening: Callable[[bool], None]
    ) -> None:
        self.conninfo = conninfo
        self.on_change = on_change
        self.on_listening = on_listening
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lost: asyncio.Future[None] | None = None

    def heard(self) -> None:
        """Start listening from the running loop if not yet; read the notifications already here."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._start(loop)
        elif self._conn is not None:
            self._read()

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        # A listener belongs to one event loop (a server process has one); an earlier loop's
        # connection, if any, is closed at once, and its changes count as unheard.
        if self._conn is not None:
            self._conn.pgconn.finish()
            self._conn = None
        self.on_listening(False)
        self._loop = loop
        self._task = loop.create_task(self._run(), name="pbx-cdr auth changes")

    async def _run(self) -> None:
        pause = _RETRY_FIRST_S
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    make_conninfo(self.conninfo, **_KEEPALIVES), autocommit=True
                )
            except psycopg.Error as exc:
                log.warning("not listening for token changes (retry in %.1f s): %s", pause, exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, _RETRY_MAX_S)
                continue
            try:
                await conn.execute(_LISTEN)
                pause = _RETRY_FIRST_S
                await self._listen(conn)
            except psycopg.Error as exc:
                log.warning("stopped listening for token changes: %s", exc)
            finally:
                await conn.close()
            await asyncio.sleep(pause)

    async def _listen(self, conn: psycopg.AsyncConnection[Any]) -> None:
        loop = asyncio.get_running_loop()
        fd = conn.pgconn.socket
        self._conn, self._lost = conn, loop.create_future()
        loop.add_reader(fd, self._read)
        self.on_listening(True)
        try:
            await self._lost
        finally:
            loop.remove_reader(fd)
            if self._conn is conn:
                self._conn = None
                self.on_listening(False)

    def _read(self) -> None:
        conn = self._conn
        if conn is None:
            return
        pgconn = conn.pgconn
        heard = False
        try:
            pgconn.consume_input()
            while pgconn.notifies() is not None:
                heard = True
        except psycopg.Error:
            pass  # told below: the connection is lost
        if heard:
            self.on_change()
        if pgconn.status == pq.ConnStatus.BAD and self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    async def close(self) -> None:
        task, self._task, self._loop = self._task, None, None
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        elif self._conn is not None:  # another loop's: its socket closed, nothing awaited
            self._conn.pgconn.finish()
        self._conn = None
        self.on_listening(False)
