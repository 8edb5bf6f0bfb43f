"""Changes to who may call the API, heard as they commit: PostgreSQL's ``LISTEN``.

Migration 0008 has PostgreSQL notify :data:`CHANNEL`, from triggers, in the transaction of any change
to a token (revoked, deleted, its scopes) or to an account's settings, however it was made. A server
process listens on one connection of its own (idle but for the notifications) and tells its token
cache (``api/token_cache.py``):

- ``on_listening(True)`` once it is sure to hear every change from then on: ``LISTEN`` is in
  effect, and a probe notified through the service's own database (``probe_conninfo``) came back on
  the listening connection. A listen URL that reaches another database, or a pooler in transaction
  mode that cannot deliver notifications, fails the probe, and the cache stays off;
- ``on_change()`` for every change heard (probes are not changes);
- ``on_listening(False)`` the moment the connection is found lost: changes may go unheard until it
  is back, which is tried again with a growing pause (0.5 s to 10 s).

The connection's socket is watched by the event loop; :meth:`AuthChangeListener.heard` also reads
what has already arrived, without waiting, so a caller about to rely on the cache has every
notification the network has delivered. TCP keepalives find a connection that died silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import pq, sql
from psycopg.conninfo import make_conninfo

from pbx_cdr.db.engine import TCP_KEEPALIVES

CHANNEL = "pbx_cdr_auth"
_LISTEN = sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL))
_NOTIFY = sql.SQL("SELECT pg_notify({}, %s)").format(sql.Literal(CHANNEL))
_PROBE = b"probe:"
_PROBE_TIMEOUT_S = 5.0
_RETRY_FIRST_S = 0.5
_RETRY_MAX_S = 10.0

log = logging.getLogger(__name__)


class _NotHeard(Exception):
    """The probe did not come back: this connection does not hear the service's database."""


class _Lost(Exception):
    """The listening connection was lost (while its probe was awaited)."""


class AuthChangeListener:
    """Listens on :data:`CHANNEL` from the event loop that first asks it to (see :meth:`heard`)."""

    def __init__(
        self,
        conninfo: str,
        probe_conninfo: str,
        *,
        on_change: Callable[[], None],
        on_listening: Callable[[bool], None],
    ) -> None:
        self.conninfo = conninfo
        self.probe_conninfo = probe_conninfo
        self.on_change = on_change
        self.on_listening = on_listening
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._fd = -1
        self._lost: asyncio.Future[None] | None = None
        self._probe: tuple[bytes, asyncio.Future[None]] | None = None
        self._closed = False

    def heard(self) -> None:
        """Start listening from the running loop if not yet; read the notifications already here."""
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            self._start(loop)
        elif self._conn is not None:
            self._read()

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        # A listener belongs to one event loop (a server process has one); an earlier loop's
        # task is cancelled and its connection closed at once: its changes count as unheard.
        if self._task is not None and not self._task.get_loop().is_closed():
            self._task.cancel()
        self._drop()
        self._loop = loop
        self._task = loop.create_task(self._run(), name="pbx-cdr auth changes")
        self._task.add_done_callback(_report_end)

    def _drop(self) -> None:
        """Forget the connection now: nothing more is heard through it."""
        conn, self._conn = self._conn, None
        if conn is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)  # the socket's number: libpq forgets a lost one's
        if conn is not None and self._loop is not asyncio.get_running_loop():
            conn.pgconn.finish()  # another loop's: closed without awaiting
        self.on_listening(False)

    async def _run(self) -> None:
        pause = _RETRY_FIRST_S
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    make_conninfo(self.conninfo, **TCP_KEEPALIVES), autocommit=True
                )
            except Exception as exc:  # whatever it was, try again later
                log.warning("not listening for token changes (retry in %.1f s): %s", pause, exc)
            else:
                try:
                    await conn.execute(_LISTEN)
                    await self._listen(conn)
                    pause = _RETRY_FIRST_S  # it was listening: the next attempt is a reconnection
                except Exception as exc:
                    log.warning("stopped listening for token changes (retry in %.1f s): %s", pause, exc)
                finally:
                    if self._conn is conn:
                        self._drop()
                    await conn.close()
            await asyncio.sleep(pause)
            pause = min(pause * 2, _RETRY_MAX_S)

    async def _listen(self, conn: psycopg.AsyncConnection[Any]) -> None:
        loop = asyncio.get_running_loop()
        self._conn, self._fd, self._lost = conn, conn.pgconn.socket, loop.create_future()
        loop.add_reader(self._fd, self._read)
        await self._probe_heard(loop)
        if self._conn is not conn or self._lost.done():
            return  # lost while the probe came back: not listening
        self.on_listening(True)
        await self._lost

    async def _probe_heard(self, loop: asyncio.AbstractEventLoop) -> None:
        """Notify a random probe through the service's database; wait for it here (all of it
        within ``_PROBE_TIMEOUT_S``)."""
        payload = _PROBE + secrets.token_hex(8).encode()
        arrived: asyncio.Future[None] = loop.create_future()
        self._probe = (payload, arrived)
        probe_conninfo = make_conninfo(self.probe_conninfo, connect_timeout=int(_PROBE_TIMEOUT_S) or 1)
        try:
            async with asyncio.timeout(_PROBE_TIMEOUT_S):
                async with await psycopg.AsyncConnection.connect(probe_conninfo, autocommit=True) as sender:
                    await sender.execute(_NOTIFY, (payload.decode(),))
                await arrived
        except TimeoutError:
            raise _NotHeard(
                "a notification sent through the database did not arrive on the listening "
                "connection in time: does PBX_CDR_DATABASE_LISTEN_URL reach the same database, past "
                "any pooler in transaction mode?"
            ) from None
        finally:
            self._probe = None

    def _read(self) -> None:
        conn = self._conn
        if conn is None:
            return
        pgconn = conn.pgconn
        heard = False
        with contextlib.suppress(psycopg.Error):  # a lost connection is told by its status, below
            # Twice: a read takes what has arrived, and a server that ended the connection sent a
            # message first; the end itself is seen only by the next read.
            pgconn.consume_input()
            pgconn.consume_input()
            while (note := pgconn.notifies()) is not None:
                if not note.extra.startswith(_PROBE):
                    heard = True
                elif self._probe is not None and note.extra == self._probe[0] and not self._probe[1].done():
                    self._probe[1].set_result(None)
        if heard:
            self.on_change()
        if pgconn.status == pq.ConnStatus.BAD:
            # Told at once, not on the loop's next turn: the caller of heard() must not use the cache.
            self._drop()
            if self._lost is not None and not self._lost.done():
                self._lost.set_result(None)
            if self._probe is not None and not self._probe[1].done():
                self._probe[1].set_exception(_Lost("the listening connection was lost"))

    async def close(self) -> None:
        self._closed = True
        self.on_listening(False)  # from now on, nothing is trusted
        task, self._task = self._task, None
        if task is not None and not task.get_loop().is_closed():
            task.cancel()
            if task.get_loop() is asyncio.get_running_loop():
                await asyncio.wait([task])  # its end, whatever it was, without raising it here
        self._drop()
        self._loop = None


def _report_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the token-change listener ended", exc_info=task.exception())
