"""SQLite group commits wait for the disk after releasing the write lock, never before answering.

The group writer commits with ``synchronous=NORMAL`` inside its turn, releases the turn, then
flushes the write-ahead log (``db.wal_flush``) and only then tells the waiters. These tests watch
the ``fsync`` itself: which file, in what state the lock and the rows are when it runs, and what a
failed one answers.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from pbx_cdr.db import engine as db
from pbx_cdr.db.engine import make_engine, wal_flush
from pbx_cdr.db.writer import GroupCommitWriter, WriteJob
from pbx_cdr.errors import ServiceUnavailable
from pbx_cdr.ingest.json_cdr import parse_payload
from tests.api.calls_support import new_account
from tests.conftest import cdr

NOW = 1_782_561_600


def _job(account_id: int, *uuids: str) -> WriteJob:
    calls, _ = parse_payload({"data": [cdr(u) for u in uuids]})
    return WriteJob(account_id, "VN", calls, "api", NOW)


def _uuid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


@pytest.fixture
def durable(sqlite_url: str) -> Iterator[tuple[Engine, int, Path]]:
    """A SQLite file whose commits must reach the disk (the server's default), with one account."""
    engine = make_engine(sqlite_url, sqlite_synchronous="FULL")
    account_id = new_account(engine, "acme", NOW)
    path = engine.url.database
    assert path
    yield engine, account_id, Path(path)
    engine.dispose()


def _rows_seen_by_another_connection(path: Path) -> int:
    with sqlite3.connect(path) as other:
        return int(other.execute("SELECT count(*) FROM calls").fetchone()[0])


@pytest.mark.parametrize("synchronous", ["FULL", "EXTRA"])
def test_a_durable_sqlite_file_defers_its_flush(tmp_path: Path, synchronous: str) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a.sqlite3'}", sqlite_synchronous=synchronous)
    assert wal_flush(engine) is not None
    engine.dispose()


def test_no_deferred_flush_where_a_commit_is_all_there_is(tmp_path: Path) -> None:
    relaxed = make_engine(f"sqlite:///{tmp_path / 'b.sqlite3'}", sqlite_synchronous="NORMAL")
    postgres = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")  # never connects
    for engine in (relaxed, postgres):
        assert wal_flush(engine) is None
        engine.dispose()


def test_the_log_is_flushed_after_the_commit_outside_the_turn_and_before_anyone_is_told(
    durable: tuple[Engine, int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, account_id, path = durable
    writer = GroupCommitWriter(engine)
    job = _job(account_id, _uuid(1), _uuid(2))
    seen: list[dict[str, Any]] = []
    real_fsync = os.fsync

    def watching(fd: int) -> None:
        lock = os.open(f"{path}.writer-lock", os.O_RDWR)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if the turn were still held
            fcntl.flock(lock, fcntl.LOCK_UN)
        finally:
            os.close(lock)
        seen.append(
            {
                "file": os.readlink(f"/proc/self/fd/{fd}"),
                "told": job.future.done(),
                "committed": _rows_seen_by_another_connection(path),
            }
        )
        real_fsync(fd)

    monkeypatch.setattr(db.os, "fsync", watching)
    try:
        assert writer.submit(job).result(timeout=30) == ["created", "created"]
    finally:
        writer.close()
    assert seen == [{"file": f"{path}-wal", "told": False, "committed": 2}]
    with engine.connect() as conn:  # the pooled connection is back to waiting for the disk
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2


def test_a_failed_flush_answers_503_and_the_writer_goes_on(
    durable: tuple[Engine, int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, account_id, path = durable
    writer = GroupCommitWriter(engine)
    real_fsync = os.fsync
    failures = [OSError(errno.EIO, "Input/output error")]

    def failing_once(fd: int) -> None:
        if failures:
            raise failures.pop()
        real_fsync(fd)

    monkeypatch.setattr(db.os, "fsync", failing_once)
    try:
        with pytest.raises(ServiceUnavailable):
            writer.submit(_job(account_id, _uuid(1))).result(timeout=30)
        # The commit itself went through; the retry finds it, as after an answer lost on the way.
        assert writer.submit(_job(account_id, _uuid(1), _uuid(2))).result(timeout=30) == [
            "unchanged",
            "created",
        ]
    finally:
        writer.close()
    assert writer.groups == 1 and writer.jobs == 1  # only the flushed group counts as committed
    assert _rows_seen_by_another_connection(path) == 2


def test_a_log_removed_by_the_last_connection_needs_no_flush(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    engine = make_engine(f"sqlite:///{path}", sqlite_synchronous="FULL")
    flush = wal_flush(engine)
    assert flush is not None
    with db.write(engine) as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    engine.dispose()  # the last connection checkpoints the log into the file and removes it
    assert not Path(f"{path}-wal").exists()
    flush()
    assert not Path(f"{path}-wal").exists()  # and the flush did not make one
