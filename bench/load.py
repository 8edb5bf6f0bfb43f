"""Bulk-load generated calls into a database the migrations made.

The schema always comes from the migrations. For the load only, the secondary indexes of ``calls``
(and on PostgreSQL its unique and foreign keys) are dropped and then created again from the very
definitions the migrations wrote, read back from the database: building an index once is far cheaper
than growing it row by row. Generation and loading run side by side, so both cores work.

- SQLite: ``synchronous=OFF`` and no journal during the load only. One process generates; two
  stager processes write the chunks into SQLite files of their own (``executemany`` of plain tuples;
  constant columns are SQL literals), which the loader copies in whole, in order; then the indexes,
  each sorted in small runs on helper threads.
- PostgreSQL: the loader writes COPY text with numpy (:mod:`bench.copytext`) while a writer thread
  sends the last chunk and the server parses it on the other core; ``TRUNCATE``
  and every ``COPY ... FREEZE`` share one transaction, so with the benchmark server's
  ``wal_level=minimal`` nothing is WAL-logged and the rows arrive frozen and all-visible (index-only
  scans need no VACUUM); then the indexes, two builds at a time, one per core. The calls' account
  check (migration 0009's triggers) is off during the load and made once over the whole table.

Hour counts are counted with numpy as the chunks are generated and written once at the end, with the
day counts summed from them.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import queue
import shutil
import sqlite3
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

import numpy as np
import psycopg
from psycopg.copy import QueuedLibpqWriter
from sqlalchemy.engine import make_url

from bench.copytext import TextCells, encode
from bench.datagen import (
    COLUMNS,
    NUMBER_SHIFT,
    TEXT_COLUMNS,
    Generator,
    Vocabulary,
    check_keys,
    day_keys,
    unpack_hour_counts,
    unpack_number_counts,
)
from pbx_cdr.db import engine as db
from pbx_cdr.db.async_pg import libpq_conninfo
from pbx_cdr.db.engine import make_engine
from pbx_cdr.db.migrate import upgrade
from pbx_cdr.db.queries import accounts as account_queries

# Sort memory per PostgreSQL index build. Less is faster: every key after ``account_id`` (200
# values) is compared through a pointer to its tuple, and a 4 MB run of tuples stays in the CPU's
# cache while a 1 GB quicksort misses it on nearly every comparison. Measured at 10M calls, one
# build: 14.4 s of CPU with 4 MB, 15.2 with 16 MB, 19.8 with 64 MB, ~27 with 1-2 GB.
INDEX_MEMORY = "4MB"


@dataclass
class LoadReport:
    calls: int
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)
    account_ids: list[int] = field(default_factory=list)  # index 0 = the biggest

    @property
    def rate(self) -> float:
        """Calls per second from an empty database to one ready to query (indexes, counts, statistics)."""
        return self.calls / self.seconds if self.seconds else 0.0

    @property
    def insert_rate(self) -> float:
        """Calls per second while the rows go in (generation overlapped)."""
        return self.calls / self.phases["insert"] if self.phases.get("insert") else 0.0


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


Item = tuple[Any, np.ndarray, np.ndarray]  # payload, hour keys, their counts


def _chunks(gen: Generator, copy_text: bool) -> Iterator[Item]:
    text = TextCells(gen.vocab.encoded()) if copy_text else None
    checked = False
    for chunk in gen.chunks():
        if not checked:
            check_keys(gen.rows(chunk))
            checked = True
        keys, n = np.unique(chunk.pop("_hour_keys"), return_counts=True)
        if text is not None:
            payload: Any = encode(
                [chunk[c] for c in COLUMNS], [text if c in TEXT_COLUMNS else None for c in COLUMNS]
            )
        else:
            payload = chunk  # numpy arrays pickle as raw buffers; the loader decodes them
        yield payload, keys, n


# Processes that write the generated chunks into SQLite files of their own, one a chunk, for the
# loader to copy in whole: binding a row's 24 values from Python (about 4 µs a row) is most of a
# load, and only here can it run on both cores. Copying a staged file's rows costs the loader's
# one writer well under a microsecond a row (SQLite copies records as they are between tables of
# the same definition, foreign keys off).
STAGERS = 2
_POLL_S = 1.0  # how often the loader looks for a dead load process, and each for a dead loader


@dataclass(frozen=True)
class _End:
    """After the last chunk: how many there were."""

    chunks: int


@dataclass(frozen=True)
class _Failed:
    """A load process's error, reported in the place of the chunk it could not hand on."""

    message: str


Staged = tuple[str, np.ndarray, np.ndarray]  # a staged file's path, its hour keys, their counts


def _end_with_the_loader(parent: int, folder: str | None = None) -> None:
    """Start a thread that ends this process at once when the loader dies (this process then has
    another parent).

    Nobody reads its queues any more, so the process would wait for ever: for room on a queue,
    for an item, or at its exit for a queue's pipe to take what was put on it. A stager also
    removes the staging folder the dead loader left.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_POLL_S)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        os._exit(0)

    threading.Thread(target=watch, name="loader-watch", daemon=True).start()


def _generate(gen: Generator, inboxes: list[Any], parent: int) -> None:
    """Hand the chunks out in turn, each with its number; then an :class:`_End` to each stager.

    A failure is reported to every stager, which hands it on in its turn; the process then ends
    normally, so the loader reads the reason instead of an exit code.
    """
    _end_with_the_loader(parent)
    count = 0
    try:
        for count, item in enumerate(_chunks(gen, copy_text=False), start=1):
            inboxes[(count - 1) % len(inboxes)].put((count - 1, *item))
        end: _End | _Failed = _End(count)
    except Exception as exc:
        traceback.print_exc()
        end = _Failed(f"the generator failed: {exc!r}")
    for inbox in inboxes:
        inbox.put(end)


@dataclass(frozen=True)
class _Stage:
    """Where a stager writes (a folder), the table's definition, the statement that fills it and
    the columns it binds, in its parameters' order."""

    folder: str
    table_sql: str
    insert_sql: str
    bound: tuple[str, ...]


def _stager(gen: Generator, stage: _Stage, inbox: Any, outbox: Any, parent: int) -> None:
    """Write each chunk of ``inbox`` to a file of its own and put its number, path, hour keys and
    counts on ``outbox``, in the order received; hand the end, or a failure, on as it comes."""
    _end_with_the_loader(parent, stage.folder)
    try:
        while not isinstance(item := inbox.get(), _End | _Failed):
            number, chunk, keys, n = item
            rows = gen.rows(chunk)
            path = os.path.join(stage.folder, f"{number}.sqlite3")
            conn = sqlite3.connect(path, isolation_level=None)
            try:
                for pragma in ("journal_mode=OFF", "synchronous=OFF", "foreign_keys=OFF"):
                    conn.execute(f"PRAGMA {pragma}")
                conn.execute(stage.table_sql)  # references accounts, which this file lacks
                conn.execute("BEGIN")
                conn.executemany(stage.insert_sql, zip(*(rows[c] for c in stage.bound), strict=True))
                conn.execute("COMMIT")
            finally:
                conn.close()
            outbox.put((number, path, keys, n))
    except Exception as exc:
        traceback.print_exc()
        item = _Failed(f"a stager failed: {exc!r}")
    outbox.put(item)


def _staged(gen: Generator, stage: _Stage) -> Iterator[Staged]:
    """The chunks as staged files, in the generator's order: one process generates, ``STAGERS``
    stage, this one copies. Every chunk comes once, in its place, or the load fails."""
    ctx = multiprocessing.get_context("fork")
    parent = os.getpid()
    inboxes = [ctx.Queue(maxsize=2) for _ in range(STAGERS)]
    outboxes = [ctx.Queue(maxsize=2) for _ in range(STAGERS)]
    procs: list[BaseProcess] = [ctx.Process(target=_generate, args=(gen, inboxes, parent), daemon=True)]
    procs += [
        ctx.Process(target=_stager, args=(gen, stage, inboxes[i], outboxes[i], parent), daemon=True)
        for i in range(STAGERS)
    ]
    for proc in procs:
        proc.start()
    finished = False
    try:
        for number in itertools.count():
            item = _next(outboxes[number % STAGERS], procs)
            if isinstance(item, _Failed):
                raise RuntimeError(item.message)
            if isinstance(item, _End):
                if item.chunks != number:
                    raise RuntimeError(f"{item.chunks} chunks were generated, {number} arrived")
                break
            if item[0] != number:
                raise RuntimeError(f"chunk {item[0]} arrived in the place of chunk {number}")
            yield item[1:]
        finished = True
    finally:  # after a failure the others may wait for ever: they are stopped, not waited for
        for proc in procs:
            if finished:
                proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
            proc.join()


def _next(outbox: Any, procs: list[BaseProcess]) -> Any:
    """The next item of ``outbox``; an error once a process has died without saying why."""
    while True:
        try:
            return outbox.get(timeout=_POLL_S)
        except queue.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"a load process died (exit code {dead[0].exitcode})") from None


@dataclass
class CountRows:
    """The rows of ``call_hour_counts``, ``call_day_counts`` and ``call_number_counts``."""

    hours: list[dict[str, Any]]
    days: list[dict[str, Any]]
    numbers: list[tuple[Any, ...]]  # (account_id, direction, number_key, hour, n)


def _sum_by_key(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    unique, inverse = np.unique(keys, return_inverse=True)
    return unique, np.bincount(inverse, weights=counts).astype(np.int64)


def hour_counts(keys: list[np.ndarray], counts: list[np.ndarray], vocab: Vocabulary) -> CountRows:
    """Sum the chunks' (account, hour, direction) counts (a call's hour can span two daily chunks),
    then those sums by (account, UTC day, direction); and the number counts, which share the chunks'
    keys (:func:`bench.datagen._count_keys`)."""
    if not keys:
        return CountRows([], [], [])
    every, per_key = _sum_by_key(np.concatenate(keys), np.concatenate(counts))
    number = every >= 1 << NUMBER_SHIFT
    hours, per_hour = every[~number], per_key[~number]
    days, per_day = _sum_by_key(day_keys(hours), per_hour)
    return CountRows(
        unpack_hour_counts(hours, per_hour),
        unpack_hour_counts(days, per_day, "day"),
        unpack_number_counts(every[number], per_key[number], vocab),
    )


def load(url: str, calls: int, *, now: int | None = None, seed: int = 7) -> LoadReport:
    """Migrate ``url`` (an empty database), create 200 accounts and load ``calls`` calls."""
    moment = int(now if now is not None else time.time())
    started = time.perf_counter()
    gen = Generator(calls, moment, seed=seed)
    ids = create_accounts(url, gen, moment)
    gen.account_ids = np.array(ids)
    loader: _SqliteLoader | _PostgresLoader = (
        _SqliteLoader(url, gen) if url.startswith("sqlite") else _PostgresLoader(url)
    )
    phases = {"setup": time.perf_counter() - started}
    t = time.perf_counter()
    keys, counts = loader.insert_rows(gen)
    phases["insert"] = time.perf_counter() - t
    t = time.perf_counter()
    loader.restore_indexes(hour_counts(keys, counts, gen.vocab))
    phases["indexes"] = time.perf_counter() - t
    t = time.perf_counter()
    loader.finish()
    phases["analyze"] = time.perf_counter() - t
    return LoadReport(calls, time.perf_counter() - started, phases, ids)


# Columns every generated call shares, written as SQL literals instead of 2 bound parameters a row.
_SQLITE_CONSTANT = {"recording_available": "0", "origin": "'freeswitch'"}


class _SqliteLoader:
    def __init__(self, url: str, gen: Generator) -> None:
        path = make_url(url).database
        assert path
        self.gen = gen
        self.conn = sqlite3.connect(path, isolation_level=None)
        for pragma in (
            "journal_mode=OFF",
            "synchronous=OFF",
            "cache_size=-65536",  # 64 MB: the rows only append (1 GB, measured at 2M calls: no faster)
            "foreign_keys=OFF",
        ):
            self.conn.execute(f"PRAGMA {pragma}")
        rows = self.conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type='index' AND tbl_name='calls' AND sql IS NOT NULL"
        ).fetchall()
        self.indexes = [sql for _, sql in rows]
        for name, _ in rows:
            self.conn.execute(f'DROP INDEX "{name}"')
        self.bound = [c for c in COLUMNS if c not in _SQLITE_CONSTANT and c != "updated_ts"]
        values = [_SQLITE_CONSTANT.get(c) or f"?{self._param(c)}" for c in COLUMNS]
        self.insert_sql = f"INSERT INTO calls ({', '.join(COLUMNS)}) VALUES ({', '.join(values)})"

    def _param(self, column: str) -> int:
        return self.bound.index("created_ts" if column == "updated_ts" else column) + 1

    def insert_rows(self, gen: Generator) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Each chunk staged in a file of its own by another process, then copied in as it is.

        No transaction spans the copies (a file cannot be attached inside one); with no journal and
        no sync, each copy's commit only hands its pages to the operating system.
        """
        keys: list[np.ndarray] = []
        counts: list[np.ndarray] = []
        (table_sql,) = self.conn.execute(
            "SELECT sql FROM sqlite_master WHERE type='table' AND name='calls'"
        ).fetchone()
        with tempfile.TemporaryDirectory(prefix="pbx-cdr-load-") as folder:
            stage = _Stage(folder, table_sql, self.insert_sql, tuple(self.bound))
            for path, k, n in _staged(gen, stage):
                keys.append(k)
                counts.append(n)
                self.conn.execute("ATTACH DATABASE ? AS stage", (path,))
                # Record by record, unparsed: the same definition, and foreign keys off.
                self.conn.execute("INSERT INTO main.calls SELECT * FROM stage.calls")
                self.conn.execute("DETACH DATABASE stage")
                os.remove(path)
        return keys, counts

    def restore_indexes(self, counts: CountRows) -> None:
        # SQLite's sorter then sorts 2 MB runs on helper threads, in temporary files (the page
        # cache, in practice) merged as they go. With ``temp_store=MEMORY`` it made one in-memory
        # sort on this thread alone, whatever ``threads`` said, missing the CPU cache on nearly
        # every comparison. Measured at 10M calls, the seven builds: 133 s as one sort in memory;
        # 44.6 s with 2 threads and 8 MB runs; 35.5-36.5 s with 3-4 threads and 1-2 MB runs.
        self.conn.execute("PRAGMA temp_store=FILE")
        self.conn.execute("PRAGMA threads=4")
        self.conn.execute("PRAGMA cache_size=-2048")
        for sql in self.indexes:
            self.conn.execute(sql)
        self.conn.execute("PRAGMA cache_size=-262144")
        self.conn.execute("BEGIN")
        for unit, rows in (("hour", counts.hours), ("day", counts.days)):
            self.conn.executemany(
                f"INSERT INTO call_{unit}_counts (account_id, {unit}, direction, n) "
                f"VALUES (:account_id, :{unit}, :direction, :n)",
                rows,
            )
        self.conn.executemany(
            "INSERT INTO call_number_counts (account_id, direction, number_key, hour, n) "
            "VALUES (?, ?, ?, ?, ?)",
            counts.numbers,
        )
        self.conn.execute("COMMIT")

    def finish(self) -> None:
        self.conn.execute("ANALYZE")
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.close()


class _PostgresLoader:
    def __init__(self, url: str) -> None:
        self.url = libpq_conninfo(url)
        self.conn = psycopg.connect(self.url, autocommit=True)
        indexes = self.conn.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = 'calls' AND "
            "i.indexname NOT IN (SELECT conname FROM pg_constraint WHERE conrelid = 'calls'::regclass)"
        ).fetchall()
        self.indexes: list[str] = [definition for _, definition in indexes]
        self.constraints = list(
            self.conn.execute(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), contype::text "
                "FROM pg_constraint "
                "WHERE conrelid IN ('calls'::regclass, 'call_hour_counts'::regclass, "
                "'call_day_counts'::regclass) "
                "AND contype IN ('u', 'f')"
            )
        )
        for name, _ in indexes:
            self.conn.execute(f'DROP INDEX "{name}"')
        # Foreign keys would check every row; a unique key would grow at random. Both come back
        # after the load, exactly as the migrations defined them.
        for table, name, _, _ in self.constraints:
            self.conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
        # The account check of migration 0009 would keep the load's 10M rows in a transition
        # table; it is checked once, over the whole table, at the end.
        self.conn.execute("ALTER TABLE calls DISABLE TRIGGER USER")

    def insert_rows(self, gen: Generator) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """One ``COPY ... FREEZE`` in the transaction that empties the table, fed by a writer thread.

        This process generates and encodes the next chunk while the thread sends the last one and
        the server parses it on the other core.
        """
        keys: list[np.ndarray] = []
        counts: list[np.ndarray] = []
        with psycopg.connect(self.url) as conn, conn.cursor() as cur:
            conn.execute("TRUNCATE calls")  # COPY FREEZE needs it in the same transaction
            sql = f"COPY calls ({', '.join(COLUMNS)}) FROM STDIN (FREEZE)"
            with cur.copy(sql, writer=QueuedLibpqWriter(cur)) as copy:
                for payload, k, n in _chunks(gen, copy_text=True):
                    keys.append(k)
                    counts.append(n)
                    copy.write(payload)
            conn.commit()
        return keys, counts

    def restore_indexes(self, counts: CountRows) -> None:
        """Each build on a connection of its own, two at a time (one per core), biggest first.

        The hour and day counts go in meanwhile: other tables, so no lock is shared.
        """
        unique = [
            f"ALTER TABLE {t} ADD CONSTRAINT {n} {d}" for t, n, d, kind in self.constraints if kind == "u"
        ]
        jobs: list[Any] = sorted(unique + self.indexes, key=_build_order)
        jobs.insert(len(jobs) - 1, lambda conn: _copy_counts(conn, counts))
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(self._build, jobs))
        self.conn.execute(
            "SELECT setval(pg_get_serial_sequence('calls', 'id'), coalesce(max(id), 1)) FROM calls"
        )

    def _build(self, job: str | Any) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"SET maintenance_work_mem = '{INDEX_MEMORY}'")
            conn.execute("SET max_parallel_maintenance_workers = 0")
            if isinstance(job, str):
                conn.execute(job)
            else:
                job(conn)

    def finish(self) -> None:
        for table, name, definition, contype in self.constraints:
            if contype == "f":
                self.conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
        self.conn.execute("ALTER TABLE calls ENABLE TRIGGER USER")
        orphan = self.conn.execute(
            "SELECT DISTINCT account_id FROM calls EXCEPT SELECT id FROM accounts LIMIT 1"
        ).fetchone()
        if orphan is not None:
            raise RuntimeError(f"calls name account {orphan[0]}, which does not exist")
        self.conn.execute("ANALYZE")
        self.conn.close()


# Longest build first, so the two builders end together (measured at 2M calls: the text keys sort
# slowest, the window index of integers fastest). Others (none today) go first; a partial index,
# which sorts few rows, goes last.
_LONGEST_FIRST = (
    "ix_calls_extension",
    "ix_calls_direction",
    "uq_calls_account_uuid",
    "ix_calls_caller_key",
    "ix_calls_destination_key",
    "ix_calls_window",
)


def _build_order(sql: str) -> tuple[bool, int]:
    name = sql.split(" ON ")[0].split()[-1]
    return " WHERE " in sql, _LONGEST_FIRST.index(name) + 1 if name in _LONGEST_FIRST else 0


def _copy_counts(conn: psycopg.Connection[Any], counts: CountRows) -> None:
    """Frozen too (emptied in the same transaction), so index-only scans of them need no VACUUM."""
    with conn.transaction(), conn.cursor() as cur:
        for unit, rows in (("hour", counts.hours), ("day", counts.days)):
            text = "".join(f"{r['account_id']}\t{r[unit]}\t{r['direction']}\t{r['n']}\n" for r in rows)
            cur.execute(f"TRUNCATE call_{unit}_counts")
            sql = f"COPY call_{unit}_counts (account_id, {unit}, direction, n) FROM STDIN (FREEZE)"
            with cur.copy(sql) as copy:
                copy.write(text)
        cur.execute("TRUNCATE call_number_counts")
        sql = "COPY call_number_counts (account_id, direction, number_key, hour, n) FROM STDIN (FREEZE)"
        with cur.copy(sql) as copy:
            for row in counts.numbers:
                copy.write_row(row)
