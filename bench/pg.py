"""A PostgreSQL for the benchmarks: the test suite's throwaway server, with a benchmark's memory."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from tests.servers import PostgresServer, postgres_server

# A 2-core, 24 GiB machine shared with others: enough to keep the hot indexes in shared buffers.
BENCH_SETTINGS = {
    "shared_buffers": "2GB",
    "effective_cache_size": "8GB",
    "work_mem": "16MB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "autovacuum": "on",
    "jit": "off",
    # The bulk loader truncates and copies in one transaction: with minimal WAL, neither the rows
    # nor the index builds are WAL-logged (their files are synced at commit instead). Reads are
    # unaffected.
    "wal_level": "minimal",
    "max_wal_senders": "0",
    # Durable, unlike the test suite's throwaway server: ingest figures include the commit's fsync.
    "fsync": "on",
    "full_page_writes": "on",
    "synchronous_commit": "on",
}


@contextmanager
def bench_postgres() -> Iterator[PostgresServer]:
    with postgres_server(BENCH_SETTINGS) as server:
        yield server


def new_database(server: PostgresServer, name: str) -> str:
    admin = create_engine(server.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return server.url(name)


if __name__ == "__main__":  # a server to develop against: prints its URL, runs until killed
    # SIGTERM unwinds the context manager, so the server stops and its folder goes with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with bench_postgres() as srv:
        print(srv.url(), flush=True)
        while True:
            time.sleep(3600)
