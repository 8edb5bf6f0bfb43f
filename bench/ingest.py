"""Ingest benchmarks through a real ``pbx-cdr serve``: single-call POSTs and 1000-call batches.

Every figure is of durable writes: SQLite keeps its default ``synchronous=FULL`` and the benchmark's
PostgreSQL commits with ``synchronous_commit=on`` (the test suite's throwaway server turns it off;
:func:`make_durable` turns it back on for the benchmark database). A 2xx answer means committed.

Single POSTs come from ``wrk`` with a Lua script that makes a fresh UUID per request; batches from
a few client threads, each on one keep-alive connection. The server groups concurrent requests
into shared transactions (``pbx_cdr/db/writer.py``); the benchmark only sees calls per second.
"""

from __future__ import annotations

import http.client
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from tests.servers import PbxServer

from bench.http import WrkResult, wrk

# A fresh, valid UUID per request: thread number and a counter, version 4, RFC 4122 variant.
# ``thread:set`` sets a *global* of the thread's Lua state: a ``local thread_id`` shadowed it, so every
# thread numbered itself 0 and made the same uuids (half the "single POSTs" were idempotent retries).
SINGLE_POST_LUA = """
local counter = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end
function init(args)
  math.randomseed(os.time() * 64 + thread_id)
end
function request()
  counter = counter + 1
  local uuid = string.format("%08x-%04x-4%03x-8000-%012x", thread_id, math.random(0, 65535),
                             math.random(0, 4095), counter)
  local body = '{"uuid":"' .. uuid .. '","direction":"outbound","caller_number":"1001",' ..
    '"destination_number":"0987654321","start_time":"2026-06-27T08:15:42+00:00",' ..
    '"answer_time":"2026-06-27T08:15:50+00:00","end_time":"2026-06-27T08:16:56+00:00"}'
  return wrk.format("POST", "/api/pbx/cdr", {["Content-Type"] = "application/json",
                                            ["Authorization"] = "Bearer TOKEN"}, body)
end
"""


def server_cpu_seconds(root_pid: int, *, reaped: bool = False) -> float:
    """User + system CPU time so far of the server's processes (the supervisor and its workers).

    Read around a ``wrk`` run and divided by its requests, it gives the server's CPU time per
    request: steadier than requests per second on a shared machine, where ``wrk``, the database
    and other work take the same cores. ``reaped``: also the children that have exited (a
    PostgreSQL server's backends come and go; their time is added to the postmaster's).
    """
    ticks = 0
    pids, frontier = [root_pid], [root_pid]
    while frontier:
        pid = frontier.pop()
        try:
            children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            continue
        pids += children
        frontier += children
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (the 14th and 15th fields)
        if reaped:
            ticks += int(fields[13]) + int(fields[14])  # cutime, cstime: its children waited for
    return ticks / os.sysconf("SC_CLK_TCK")


def make_durable(url: str) -> None:
    """PostgreSQL only: commits of the benchmark database wait for the WAL flush, as in production."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{parsed.database}" SET synchronous_commit = on'))
    engine.dispose()


def single_posts(server: PbxServer, token: str, seconds: int) -> WrkResult:
    """One call per POST, ``wrk -c32``: requests (= calls) per second."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(SINGLE_POST_LUA.replace("TOKEN", token))
    try:
        return wrk(server.base_url + "/api/pbx/cdr", seconds, script=handle.name)
    finally:
        os.unlink(handle.name)


# Client connections for the batches. The server's two worker processes share one listening socket,
# and each keep-alive connection stays with the worker that accepted it: with 4, all of them (or 3
# of 4) often landed on one worker, and the other core idled (1.1-1.2 of 2 cores busy, against
# 1.8-1.9 with 8; measured on PostgreSQL at 10M calls).
BATCH_CONNECTIONS = 8


def batch_posts(
    server: PbxServer, token: str, bodies: list[bytes], threads: int = BATCH_CONNECTIONS
) -> tuple[float, int]:
    """Calls per second through ``bodies`` (1000-call batches); and how many came back created.

    The client is the standard library's ``http.client``, which sends a body and reads a response of
    known length in C: it shares the two cores with the server and the database, and httpx spent
    5-10 µs of CPU a call on the same posts (0.7-2.4 here).
    """
    address = urlsplit(server.base_url)
    assert address.hostname is not None
    host = address.hostname
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    local = threading.local()
    connections: list[http.client.HTTPConnection] = []

    def post(body: bytes) -> int:
        conn = getattr(local, "conn", None)
        if conn is None:  # one keep-alive connection per client thread
            conn = local.conn = http.client.HTTPConnection(host, address.port, timeout=120)
            connections.append(conn)
        conn.request("POST", "/api/pbx/cdr", body=body, headers=headers)
        response = conn.getresponse()
        content = response.read()
        if not 200 <= response.status < 300:
            raise RuntimeError(f"a batch was answered {response.status}: {content[:300]!r}")
        return int(orjson.loads(content)["created"])

    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            created = sum(pool.map(post, bodies))
        elapsed = time.perf_counter() - started
    finally:
        for conn in connections:
            conn.close()
    return created / elapsed, created


def batch_bodies(calls: list[dict[str, Any]], size: int = 1000) -> list[bytes]:
    return [orjson.dumps({"data": calls[i : i + size]}) for i in range(0, len(calls), size)]
