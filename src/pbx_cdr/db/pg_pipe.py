"""One PostgreSQL connection in libpq's pipeline mode, shared by the reads of an event loop.

Each read goes out as its own unit: the statement's ``Parse`` the first time it runs on the
connection, its ``Bind``/``Execute``, and a ``Sync`` of its own, so one read's error never touches
another's (the server skips only to the next ``Sync``), and each is its own implicit transaction,
hence one snapshot. Reads are sent without waiting for the ones before them to be answered: the
server runs them back to back, without sleeping between them, and sends their answers together,
which the event loop reads in one wake-up.

A read holds its place (``on_settled`` is called when it leaves) until its answer has come, even if
the request that sent it was cancelled: the server is still running it, and the reads behind it on
this connection wait for it. ``oldest`` tells how long the read at the head has been waiting, which
is how far behind the connection is. A connection that leaves a read unanswered for
``answer_within`` seconds has stopped answering (the server ends its own slow statements sooner): it
is given up, and its reads fail.

The socket is watched for as long as the connection lives (one ``add_reader``, not one per wait),
and the callback hands each read its result in the order they were sent. libpq is never asked for a
result while it is busy: it would wait for the server with the event loop (and the GIL) held. A
connection that fails (the end of the stream, an error libpq reports, a ``FATAL`` from the server,
which closes it next) fails every read in flight on it and is closed; a read that is cancelled
leaves the connection in step (its answer is read, and dropped, in its turn).
"""

from __future__ import annotations

import asyncio
import contextlib
import select
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import abc, pq
from psycopg.adapt import Transformer

Conn = psycopg.AsyncConnection[Any]
_FATAL = frozenset({b"FATAL", b"PANIC"})  # the server ends the connection after sending one
_ANSWERED = frozenset({pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK})


@dataclass
class _Read:
    """A read in flight: its future, and the results of its commands (a prepare, then the query)."""

    future: asyncio.Future[pq.abc.PGresult]
    prepares: bytes | None  # the statement this read prepares on the connection, if it does
    sent: float  # the event loop's time when it was sent
    results: list[pq.abc.PGresult] = field(default_factory=list)


class Pipe:
    """A connection whose reads are pipelined; ``on_gone`` is called once when it is lost or done,
    ``on_settled`` once for each read sent, when it is answered or failed; given up when a read waits
    ``answer_within`` seconds."""

    def __init__(
        self,
        conn: Conn,
        on_gone: Callable[[Pipe], None],
        on_settled: Callable[[], None],
        answer_within: float,
    ) -> None:
        self.conn = conn
        self.pgconn = conn.pgconn
        self.loader: abc.Transformer = Transformer(conn)
        self.prepared: set[bytes] = set()  # statements prepared here, answered
        self.preparing: dict[bytes, asyncio.Event] = {}  # statements whose prepare is on its way
        self.pending: deque[_Read] = deque()
        self.lost: psycopg.Error | None = None
        self.retiring = False  # takes no more reads; closed once those in flight are answered
        self._on_gone = on_gone
        self._on_settled = on_settled
        self._answer_within = answer_within
        self._watch: asyncio.TimerHandle | None = None  # the check that the head read is answered
        # A FATAL the server sent while no read was in flight: noted inside libpq, and raised (so the
        # connection lost) at the end of the same pass over its input.
        self._ended: str | None = None
        self._loop = asyncio.get_running_loop()
        self._fd = self.pgconn.socket
        self._group: list[pq.abc.PGresult] = []  # the results of the command being answered
        self._writing = False
        self._closed = False
        self.pgconn.enter_pipeline_mode()
        # With no read in flight, libpq hands a server's error (its FATAL goodbye: a terminated
        # backend, a shutdown) to the notice handler; the end of the stream may come only later.
        conn.add_notice_handler(self._notice)
        self._poll = select.poll()  # whether the socket has more to read, without waiting
        self._poll.register(self._fd, select.POLLIN)
        self._loop.add_reader(self._fd, self._readable)

    @property
    def usable(self) -> bool:
        return self.lost is None and not self.retiring

    @property
    def oldest(self) -> float | None:
        """When the read at the head of the line was sent (None when none is in flight)."""
        return self.pending[0].sent if self.pending else None

    def _notice(self, diagnostic: psycopg.errors.Diagnostic) -> None:
        # Called inside libpq: only noted here, acted on once libpq has returned.
        if diagnostic.severity_nonlocalized in {"FATAL", "PANIC"}:
            self._ended = diagnostic.message_primary or "the server ended the connection"

    def send(self, name: bytes, sql: bytes | None, values: Sequence[bytes | None]) -> _Read:
        """Send a read (with the statement's ``Parse`` when ``sql`` is given); await its future."""
        if self.lost is not None:
            raise psycopg.OperationalError(f"the connection is lost: {self.lost}")
        pgconn = self.pgconn
        try:
            if sql is not None:
                pgconn.send_prepare(name, sql)
            pgconn.send_query_prepared(name, values)
            pgconn.pipeline_sync()
        except psycopg.Error as exc:  # part of the read may be in libpq's buffer: out of step
            self.lose(exc)
            raise
        read = _Read(self._loop.create_future(), name if sql is not None else None, self._loop.time())
        if sql is not None:
            self.preparing[name] = asyncio.Event()
        self.pending.append(read)
        if self._watch is None:
            self._watch = self._loop.call_later(self._answer_within, self._check_answered)
        self._flush()
        return read

    def _check_answered(self) -> None:
        self._watch = None
        if self._closed or not self.pending:
            return
        waited = self._loop.time() - self.pending[0].sent
        if waited < self._answer_within:  # a later read: checked when it is due
            self._watch = self._loop.call_later(self._answer_within - waited, self._check_answered)
        else:
            self.lose(psycopg.OperationalError(f"the server has not answered a read in {waited:.0f} s"))

    def _flush(self) -> None:
        try:
            remaining = self.pgconn.flush()  # a few hundred bytes: nearly always sent at once
        except psycopg.Error as exc:
            self.lose(exc)
            return
        if remaining and not self._writing:
            self._loop.add_writer(self._fd, self._flush)
            self._writing = True
        elif not remaining and self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False

    def _readable(self) -> None:
        try:
            # Until the socket has nothing more: libpq reads at most its buffer's worth (16 KB) a
            # call, and uvloop, on a socket error (a reset behind a large answer), calls this once
            # and stops watching: the error, or the end of the stream that follows a server's
            # goodbye, must be reached now, or the reads in flight wait forever.
            while True:
                self._consume()
                if self._closed or not self._poll.poll(0):
                    break
        except psycopg.Error as exc:
            self.lose(exc)
        except Exception as exc:  # never leave the loop's callback with reads waiting forever
            self.lose(psycopg.OperationalError(f"reading the connection failed: {exc!r}"))

    def _consume(self) -> None:
        pgconn = self.pgconn
        pgconn.consume_input()  # raises at the end of the stream
        while not pgconn.is_busy():
            if pgconn.status == pq.ConnStatus.BAD:
                break
            result = pgconn.get_result()
            if result is None:  # the end of one command's results, or nothing more for now
                if not self._group:
                    break
                self._command_answered()
            elif result.status == pq.ExecStatus.PIPELINE_SYNC:
                self._read_answered()
            else:
                self._group.append(result)
                if result.error_field(pq.DiagnosticField.SEVERITY_NONLOCALIZED) in _FATAL:
                    self._command_answered()
                    raise self._error(self.pending[0].results[-1])
        if self._ended is not None:
            raise psycopg.OperationalError(self._ended)
        if pgconn.status == pq.ConnStatus.BAD:
            message = pgconn.error_message.decode(errors="replace").strip()
            raise psycopg.OperationalError(message or "the connection is lost")

    def _command_answered(self) -> None:
        if not self.pending:
            raise psycopg.OperationalError("the server answered a command nobody sent")
        self.pending[0].results.append(self._group[-1])
        self._group = []

    def _read_answered(self) -> None:
        if not self.pending:
            raise psycopg.OperationalError("the server answered a read nobody sent")
        read = self.pending.popleft()
        self._on_settled()
        error = next((r for r in read.results if r.status == pq.ExecStatus.FATAL_ERROR), None)
        if read.prepares is not None:
            if error is None or error is not read.results[0]:  # the prepare itself went through
                self.prepared.add(read.prepares)
            self.preparing.pop(read.prepares).set()
        if not read.future.done():  # not cancelled
            if error is not None:
                read.future.set_exception(self._error(error))
            elif not read.results or read.results[-1].status not in _ANSWERED:
                read.future.set_exception(psycopg.OperationalError("the server sent no rows"))
            else:
                read.future.set_result(read.results[-1])
        if self.retiring and not self.pending:
            self.close()

    def _error(self, result: pq.abc.PGresult) -> psycopg.Error:
        return psycopg.errors.error_from_result(result, encoding=self.conn.info.encoding)

    def retire(self) -> None:
        """Take no more reads; close once the ones in flight are answered."""
        self.retiring = True
        if not self.pending:
            self.close()

    def lose(self, exc: psycopg.Error) -> None:
        """Fail every read in flight (the one being answered with its own error, if it has one)."""
        if self.lost is None:
            self.lost = exc
            self.close()

    def close(self) -> None:
        """Fail what is in flight, stop watching the socket and close it (once)."""
        if self._closed:
            return
        self._closed = True
        lost = self.lost = self.lost or psycopg.OperationalError("the reader closed it")
        for n, read in enumerate(self.pending):
            if not read.future.done():
                own = n == 0 and lost.pgresult is not None
                read.future.set_exception(
                    lost if own else psycopg.OperationalError(f"the connection is lost: {lost}")
                )
            self._on_settled()
        self.pending.clear()
        for waiting in self.preparing.values():
            waiting.set()
        self.preparing.clear()
        if self._watch is not None:
            self._watch.cancel()
        # Before the socket closes: its number is free for the next one opened once it is.
        with contextlib.suppress(OSError, ValueError):
            self._loop.remove_reader(self._fd)
            if self._writing:
                self._loop.remove_writer(self._fd)
        self.pgconn.finish()
        self._on_gone(self)
