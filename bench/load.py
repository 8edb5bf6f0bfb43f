"""Bulk-load generated calls into a database the migrations made.

The schema always comes from the migrations. For the load only, the secondary indexes of ``calls``
are dropped and then created again from the very definitions the migrations wrote (read back from the
database), because building an index once is far cheaper than growing it row by row. Hour counts are
counted in memory with numpy and written once at the end. SQLite takes ``executemany``; PostgreSQL
takes ``COPY``.
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg
from sqlalchemy.engine import make_url

from bench.datagen import COLUMNS, Generator, check_keys, unpack_hour_counts
from pbx_cdr.db import engine as db
from pbx_cdr.db.engine import make_engine
from pbx_cdr.db.migrate import upgrade
from pbx_cdr.db.queries import accounts as account_queries

BENCH_NOW_SLACK = 600


@dataclass
class LoadReport:
    calls: int
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)
    account_ids: list[int] = field(default_factory=list)  # index 0 = the biggest

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0


def create_accounts(url: str, gen: Generator, now: int) -> list[int]:
    engine = make_engine(url)
    upgrade(engine)
    ids = []
    with db.write(engine) as conn:
        for t in gen.tenants:
            account = account_queries.create_account(
                conn,
                name=t.name,
                timezone=t.timezone,
                country="VN",
                max_window_days=31,
                recording_url_ttl=1800,
                rate_limit_per_minute=0,
                now=now,
            )
            ids.append(account.id)
    engine.dispose()
    return ids


def _chunks(gen: Generator, csv_payload: bool) -> Iterator[tuple[Any, np.ndarray, np.ndarray]]:
    checked = False
    for chunk in gen.chunks():
        if not checked:
            check_keys(chunk)
            checked = True
        keys, n = np.unique(chunk.pop("_hour_keys"), return_counts=True)
        yield (_csv(chunk) if csv_payload else chunk), keys, n


def _csv(chunk: dict[str, list[Any]]) -> bytes:
    # The csv module writes in C, and an unquoted empty field is NULL to COPY.
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(zip(*(chunk[c] for c in COLUMNS), strict=True))
    return buffer.getvalue().encode()


def _worker(gen: Generator, csv_payload: bool, queue: Any) -> None:
    try:
        for item in _chunks(gen, csv_payload):
            queue.put(item)
    except BaseException as exc:
        queue.put(RuntimeError(f"the generator failed: {exc!r}"))
        raise
    queue.put(None)


def _produce(gen: Generator, *, csv_payload: bool) -> Iterator[tuple[Any, np.ndarray, np.ndarray]]:
    """Generate in a second process, so generating and writing use both cores."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue(maxsize=3)
    proc = ctx.Process(target=_worker, args=(gen, csv_payload, queue), daemon=True)
    proc.start()
    try:
        while (item := queue.get()) is not None:
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.terminate()


def load(url: str, calls: int, *, now: int | None = None, seed: int = 7) -> LoadReport:
    """Migrate ``url`` (an empty database), create 200 accounts and load ``calls`` calls."""
    moment = int(now if now is not None else time.time())
    started = time.perf_counter()
    gen = Generator(calls, moment, seed=seed)
    ids = create_accounts(url, gen, moment)
    gen.account_ids = np.array(ids)
    phases = {"setup": time.perf_counter() - started}
    loader = _SqliteLoader(url) if url.startswith("sqlite") else _PostgresLoader(url)
    counts: Counter[int] = Counter()
    insert_started = time.perf_counter()
    for payload, keys, n in _produce(gen, csv_payload=isinstance(loader, _PostgresLoader)):
        counts.update(dict(zip(keys.tolist(), n.tolist(), strict=True)))
        loader.insert(payload)
    phases["insert"] = time.perf_counter() - insert_started
    t = time.perf_counter()
    loader.restore_indexes()
    phases["indexes"] = time.perf_counter() - t
    t = time.perf_counter()
    keys_arr = np.array(sorted(counts), dtype=np.int64)
    loader.insert_counts(unpack_hour_counts(keys_arr, np.array([counts[k] for k in keys_arr.tolist()])))
    phases["hour_counts"] = time.perf_counter() - t
    t = time.perf_counter()
    loader.finish()
    phases["analyze"] = time.perf_counter() - t
    return LoadReport(calls, time.perf_counter() - started, phases, ids)


class _SqliteLoader:
    def __init__(self, url: str) -> None:
        path = make_url(url).database
        assert path
        self.conn = sqlite3.connect(path, isolation_level=None)
        for pragma in (
            "journal_mode=OFF",
            "synchronous=OFF",
            "cache_size=-1048576",
            "temp_store=MEMORY",
            "threads=2",
            "foreign_keys=OFF",
        ):
            self.conn.execute(f"PRAGMA {pragma}")
        rows = self.conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type='index' AND tbl_name='calls' AND sql IS NOT NULL"
        ).fetchall()
        self.indexes = [sql for _, sql in rows]
        for name, _ in rows:
            self.conn.execute(f'DROP INDEX "{name}"')
        cols = ", ".join(COLUMNS)
        self.insert_sql = f"INSERT INTO calls ({cols}) VALUES ({', '.join('?' * len(COLUMNS))})"

    def insert(self, chunk: dict[str, list[Any]]) -> None:
        self.conn.execute("BEGIN")
        self.conn.executemany(self.insert_sql, zip(*(chunk[c] for c in COLUMNS), strict=True))
        self.conn.execute("COMMIT")

    def restore_indexes(self) -> None:
        for sql in self.indexes:
            self.conn.execute(sql)

    def insert_counts(self, rows: list[dict[str, Any]]) -> None:
        self.conn.execute("BEGIN")
        self.conn.executemany(
            "INSERT INTO call_hour_counts (account_id, hour, direction, n) "
            "VALUES (:account_id, :hour, :direction, :n)",
            rows,
        )
        self.conn.execute("COMMIT")

    def finish(self) -> None:
        self.conn.execute("ANALYZE")
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.close()


def _libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


class _PostgresLoader:
    def __init__(self, url: str) -> None:
        self.url = _libpq_url(url)
        self.conn = psycopg.connect(self.url, autocommit=True)
        self.conn.execute("SET maintenance_work_mem = '512MB'")
        self.conn.execute("SET max_parallel_maintenance_workers = 2")
        self.conn.execute("SET synchronous_commit = off")
        self.indexes = [
            r[1]
            for r in self.conn.execute(
                "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = 'calls' AND "
                "i.indexname NOT IN (SELECT conname FROM pg_constraint WHERE conrelid = 'calls'::regclass)"
            )
        ]
        self.constraints = list(
            self.conn.execute(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), contype::text "
                "FROM pg_constraint "
                "WHERE conrelid IN ('calls'::regclass, 'call_hour_counts'::regclass) "
                "AND contype IN ('u', 'f')"
            )
        )
        for sql in self.indexes:
            self.conn.execute(f"DROP INDEX {sql.split()[2]}")
        # Foreign keys would check every row; the unique key would grow at random. Both come back
        # after the load, exactly as the migrations defined them.
        for table, name, _, _ in self.constraints:
            self.conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
        self.copy_sql = f"COPY calls ({', '.join(COLUMNS)}) FROM STDIN (FORMAT csv)"

    def insert(self, payload: bytes) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur, cur.copy(self.copy_sql) as copy:
            copy.write(payload)

    def restore_indexes(self) -> None:
        # Two builds at a time, on two connections: one per core.
        statements = [
            f"ALTER TABLE {t} ADD CONSTRAINT {n} {d}" for t, n, d, kind in self.constraints if kind == "u"
        ] + self.indexes
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(self._build, [statements[0::2], statements[1::2]]))
        self.conn.execute(
            "SELECT setval(pg_get_serial_sequence('calls', 'id'), coalesce(max(id), 1)) FROM calls"
        )

    def _build(self, statements: list[str]) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("SET maintenance_work_mem = '512MB'")
            conn.execute("SET max_parallel_maintenance_workers = 0")
            for sql in statements:
                conn.execute(sql)

    def _add_constraints(self, kind: str) -> None:
        for table, name, definition, contype in self.constraints:
            if contype == kind:
                self.conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")

    def insert_counts(self, rows: list[dict[str, Any]]) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(
            (r["account_id"], r["hour"], r["direction"], r["n"]) for r in rows
        )
        with (
            self.conn.cursor() as cur,
            cur.copy(
                "COPY call_hour_counts (account_id, hour, direction, n) FROM STDIN (FORMAT csv)"
            ) as copy,
        ):
            copy.write(buffer.getvalue().encode())

    def finish(self) -> None:
        self._add_constraints("f")
        # What autovacuum would do to a table of this age: statistics and the visibility map
        # (index-only scans need the latter).
        self.conn.execute("VACUUM (ANALYZE) calls")
        self.conn.execute("ANALYZE")
        self.conn.close()
