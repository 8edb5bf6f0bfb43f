"""The awaited reads never wait for PostgreSQL with the event loop held.

libpq is busy again after it hands over a result, until the server's ready-for-query arrives, and
that may come in a later packet (after an error it always does). Asking libpq for the next result
meanwhile would block in libpq, with the event loop, and every thread, stopped. A real server sends
both packets within microseconds, so this runs a stand-in server (a separate process: a blocked libpq
holds the GIL) that withholds ready-for-query until it sees the event loop turn.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import struct
from collections.abc import Iterator
from multiprocessing.synchronize import Event
from typing import Any

import pytest
from sqlalchemy import create_engine, literal_column, select

from pbx_cdr.db.async_pg import AsyncReader

WITHHELD_FOR_S = 5.0  # the stand-in's patience: far longer than any event loop takes to turn
RESULT_READ_WITHIN_S = 0.3  # the client has read a result sent over loopback well within this


def _message(kind: bytes, body: bytes = b"") -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def _read(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _stand_in(listener: socket.socket, result_sent: Event, loop_turned: Event, verdict: Any) -> None:
    """Just enough of PostgreSQL's protocol for one prepared ``SELECT 1``."""
    conn, _ = listener.accept()
    while True:  # SSL or GSS encryption requests, then the startup message
        body = _read(conn, struct.unpack("!i", _read(conn, 4))[0] - 4)
        if struct.unpack("!i", body[:4])[0] in (80877103, 80877104):
            conn.sendall(b"N")
            continue
        break
    hello = _message(b"R", struct.pack("!i", 0))
    for name, value in (
        (b"client_encoding", b"UTF8"),
        (b"server_encoding", b"UTF8"),
        (b"server_version", b"15.0"),
        (b"DateStyle", b"ISO, MDY"),
        (b"integer_datetimes", b"on"),
        (b"standard_conforming_strings", b"on"),
    ):
        hello += _message(b"S", name + b"\0" + value + b"\0")
    conn.sendall(hello + _message(b"K", struct.pack("!ii", 1, 2)) + _message(b"Z", b"I"))
    executed = False
    while True:
        kind = _read(conn, 1)
        _read(conn, struct.unpack("!i", _read(conn, 4))[0] - 4)
        if kind == b"Q":  # the SET after connecting
            conn.sendall(_message(b"C", b"SET\0") + _message(b"Z", b"I"))
        elif kind == b"P":
            conn.sendall(_message(b"1"))
        elif kind == b"B":
            conn.sendall(_message(b"2"))
        elif kind == b"D":  # one int4 column, text format
            field = b"n\0" + struct.pack("!ihihih", 0, 0, 23, 4, -1, 0)
            conn.sendall(_message(b"T", struct.pack("!h", 1) + field))
        elif kind == b"E":
            row = _message(b"D", struct.pack("!hi", 1, 1) + b"1")
            conn.sendall(row + _message(b"C", b"SELECT 1\0"))
            executed = True
        elif kind == b"S":
            if executed:  # the result is out: withhold ready-for-query until the loop has turned
                result_sent.set()
                verdict.value = 1 if loop_turned.wait(WITHHELD_FOR_S) else 0
            conn.sendall(_message(b"Z", b"I"))
        elif kind == b"X":
            conn.close()
            return


@pytest.fixture
def stand_in() -> Iterator[tuple[int, Event, Event, Any]]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    context = multiprocessing.get_context("fork")
    result_sent, loop_turned, verdict = context.Event(), context.Event(), context.Value("i", -1)
    server = context.Process(target=_stand_in, args=(listener, result_sent, loop_turned, verdict))
    server.start()
    try:
        yield listener.getsockname()[1], result_sent, loop_turned, verdict
    finally:
        server.join(10)
        if server.is_alive():
            server.kill()
        listener.close()


def test_the_event_loop_turns_while_the_server_withholds_ready_for_query(
    stand_in: tuple[int, Event, Event, Any],
) -> None:
    port, result_sent, loop_turned, verdict = stand_in
    reader = AsyncReader(create_engine(f"postgresql+psycopg://u@127.0.0.1:{port}/db"), 1)

    async def run() -> tuple[Any, ...] | None:
        async def watch() -> None:
            while not result_sent.is_set():
                await asyncio.sleep(0.001)
            # Long after the result reached the client: a loop held by libpq never gets here.
            await asyncio.sleep(RESULT_READ_WITHIN_S)
            loop_turned.set()

        watcher = asyncio.create_task(watch())
        try:
            return await reader.first_row(select(literal_column("1")), {})
        finally:
            watcher.cancel()
            await reader.close()

    assert asyncio.run(run()) == (1,)
    assert verdict.value == 1  # ready-for-query was sent once the loop had turned, not after giving up
