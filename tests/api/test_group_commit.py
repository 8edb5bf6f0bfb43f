"""Group commit (db/writer.py): many requests in one transaction, each with its own exact answer.

On SQLite and PostgreSQL. Grouping is made certain, not timed: jobs are queued while the test holds
the writer's lock, so the thread finds them all waiting at once.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError

from pbx_cdr.db import engine as db
from pbx_cdr.db import writer as writer_module
from pbx_cdr.db.engine import make_engine
from pbx_cdr.db.queries import accounts, counts
from pbx_cdr.db.queries import calls as call_queries
from pbx_cdr.db.tables import call_hour_counts, calls
from pbx_cdr.db.writer import GroupCommitWriter, WriteJob, apply_jobs, writer_for
from pbx_cdr.domain.call import Call
from pbx_cdr.ingest.json_cdr import parse_payload
from tests.api.calls_support import assert_counts_exact
from tests.conftest import Tenant, cdr

NOW = 1_782_561_600


def uid(n: int) -> str:
    return str(uuid.UUID(int=n))


def at(n: int, hour: int, date: str = "2026-06-27") -> dict[str, Any]:
    """Call ``n``, started in ``hour`` (UTC) of the seed's day (or of ``date``)."""
    day = f"{date}T"
    return cdr(
        uid(n),
        start_time=f"{day}{hour:02d}:15:42+00:00",
        answer_time=f"{day}{hour:02d}:15:50+00:00",
        end_time=f"{day}{hour:02d}:16:56+00:00",
    )


def parsed(*items: dict[str, Any]) -> list[Call]:
    batch, _ = parse_payload({"data": list(items)})
    return batch


def job(account_id: int, *items: dict[str, Any]) -> WriteJob:
    return WriteJob(account_id, "VN", parsed(*items), "api", NOW)


@contextmanager
def held(writer: GroupCommitWriter) -> Iterator[None]:
    """Queue jobs without the thread taking any: it waits for this lock (reentrant for us)."""
    with writer._wakeup:
        yield


@pytest.fixture
def writer(engine: Engine) -> Iterator[GroupCommitWriter]:
    w = GroupCommitWriter(engine)
    yield w
    w.close()


def hour_counts(engine: Engine, account_id: int) -> dict[tuple[int, str], int]:
    with db.read(engine) as conn:
        rows = conn.execute(
            select(call_hour_counts.c.hour, call_hour_counts.c.direction, call_hour_counts.c.n).where(
                call_hour_counts.c.account_id == account_id, call_hour_counts.c.n != 0
            )
        ).all()
    return {(r.hour, r.direction): r.n for r in rows}


def fresh_counts(engine: Engine, account_id: int) -> dict[tuple[int, str], int]:
    with db.read(engine) as conn:
        rows = conn.execute(
            select(calls.c.start_ts, calls.c.direction).where(calls.c.account_id == account_id)
        ).all()
    fresh: Counter[tuple[int, str]] = Counter()
    for r in rows:
        fresh[(r.start_ts // counts.HOUR, r.direction)] += 1
    return dict(fresh)


def row_count(engine: Engine, account_id: int) -> int:
    with db.read(engine) as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(calls).where(calls.c.account_id == account_id)
            ).scalar_one()
        )


def results(futures: list[Future[list[str]]]) -> list[list[str]]:
    return [f.result(timeout=60) for f in futures]


def test_waiting_requests_share_one_transaction_and_keep_their_own_statuses(
    engine: Engine, writer: GroupCommitWriter, tenant: Tenant
) -> None:
    jobs = [job(tenant.id, *(at(100 * i + k, k) for k in range(3))) for i in range(20)]
    with held(writer):
        futures = [writer.submit(j) for j in jobs]
    assert results(futures) == [["created"] * 3] * 20
    assert writer.groups == 1 and writer.jobs == 20
    assert row_count(engine, tenant.id) == 60
    assert hour_counts(engine, tenant.id) == fresh_counts(engine, tenant.id)
    assert_counts_exact(engine, tenant.id)  # and the day counts


def test_identical_concurrent_posts_make_one_row(
    engine: Engine, writer: GroupCommitWriter, tenant: Tenant
) -> None:
    with held(writer):
        futures = [writer.submit(job(tenant.id, cdr(uid(1)))) for _ in range(5)]
    assert results(futures) == [["created"], ["unchanged"], ["unchanged"], ["unchanged"], ["unchanged"]]
    assert row_count(engine, tenant.id) == 1
    hour = parsed(cdr(uid(1)))[0].start_ts // 3600
    assert hour_counts(engine, tenant.id) == fresh_counts(engine, tenant.id) == {(hour, "outbound"): 1}
    assert_counts_exact(engine, tenant.id)  # and the day counts


def test_a_later_request_for_the_same_call_is_applied_after_the_earlier_one(
    engine: Engine, writer: GroupCommitWriter, tenant: Tenant
) -> None:
    moved = at(7, 10)
    with held(writer):
        futures = [
            writer.submit(job(tenant.id, cdr(uid(7)), cdr(uid(8)))),
            writer.submit(job(tenant.id, cdr(uid(9)))),  # unrelated: merged with the first
            writer.submit(job(tenant.id, moved)),  # names uid(7): after the first
            writer.submit(job(tenant.id, cdr(uid(8)))),  # names uid(8): after the first, unchanged
            writer.submit(job(tenant.id, cdr(uid(7)))),  # after the move: moves the call back
        ]
    assert results(futures) == [["created", "created"], ["created"], ["updated"], ["unchanged"], ["updated"]]
    assert writer.groups == 1
    with db.read(engine) as conn:
        start = conn.execute(select(calls.c.start_ts).where(calls.c.uuid == uid(7))).scalar_one()
    assert start == parsed(cdr(uid(7)))[0].start_ts
    assert hour_counts(engine, tenant.id) == fresh_counts(engine, tenant.id)
    assert_counts_exact(engine, tenant.id)  # and the day counts


def test_the_same_uuid_in_two_accounts_is_two_calls(
    engine: Engine, writer: GroupCommitWriter, make_tenant: Any
) -> None:
    a, b = make_tenant("a"), make_tenant("b")
    with held(writer):
        futures = [writer.submit(job(a.id, cdr(uid(1)))), writer.submit(job(b.id, cdr(uid(1))))]
    assert results(futures) == [["created"], ["created"]]
    assert row_count(engine, a.id) == row_count(engine, b.id) == 1


def test_one_failing_request_does_not_fail_the_others(
    engine: Engine, writer: GroupCommitWriter, tenant: Tenant
) -> None:
    with held(writer):
        good_before = writer.submit(job(tenant.id, cdr(uid(1)), cdr(uid(2))))
        bad = writer.submit(job(987654, cdr(uid(3))))  # no such account: the foreign key refuses it
        good_after = writer.submit(job(tenant.id, cdr(uid(4))))
    assert good_before.result(timeout=60) == ["created", "created"]
    assert good_after.result(timeout=60) == ["created"]
    with pytest.raises(IntegrityError, match=r"(?i)foreign key"):
        bad.result(timeout=60)
    assert row_count(engine, tenant.id) == 3
    assert row_count(engine, 987654) == 0
    assert hour_counts(engine, tenant.id) == fresh_counts(engine, tenant.id)
    assert_counts_exact(engine, tenant.id)  # and the day counts


def test_a_cancelled_request_is_not_written(
    engine: Engine, writer: GroupCommitWriter, tenant: Tenant
) -> None:
    with held(writer):
        dropped = writer.submit(job(tenant.id, cdr(uid(1))))
        kept = writer.submit(job(tenant.id, cdr(uid(2))))
        assert dropped.cancel()
    assert kept.result(timeout=60) == ["created"]
    assert row_count(engine, tenant.id) == 1


def test_close_finishes_the_queue_and_refuses_more(engine: Engine, tenant: Tenant) -> None:
    writer = GroupCommitWriter(engine)
    with held(writer):
        futures = [writer.submit(job(tenant.id, cdr(uid(n)))) for n in range(3)]
        closing = threading.Thread(target=writer.close)
        closing.start()
    closing.join(60)
    assert results(futures) == [["created"]] * 3
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit(job(tenant.id, cdr(uid(9))))


def test_an_idle_writer_stops_its_thread_and_starts_again(engine: Engine, tenant: Tenant) -> None:
    writer = GroupCommitWriter(engine, idle_seconds=0.01)
    assert writer.submit(job(tenant.id, cdr(uid(1)))).result(timeout=60) == ["created"]
    thread = writer._thread
    if thread is not None:
        thread.join(60)  # it ends once it has been idle
    assert writer._thread is None
    assert writer.submit(job(tenant.id, cdr(uid(2)))).result(timeout=60) == ["created"]
    writer.close()


def test_one_writer_per_engine(engine: Engine) -> None:
    assert writer_for(engine) is writer_for(engine)


def test_concurrent_http_posts_each_get_exact_answers(
    client: TestClient, engine: Engine, tenant: Tenant
) -> None:
    """Forty clients at once, half of them posting calls another client posts too."""

    def post(n: int) -> dict[str, Any]:
        items = [cdr(uid(1000 + n)), at(n % 10, n % 10)]
        r = client.post("/api/pbx/cdr", json={"data": items}, headers=tenant.write)
        assert r.status_code in (200, 201), r.text
        body: dict[str, Any] = r.json()
        return body

    with ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(post, range(40)))
    statuses = Counter((item["uuid"], item["status"]) for a in answers for item in a["data"])
    for n in range(40):
        assert statuses[(uid(1000 + n), "created")] == 1
    for n in range(10):  # each posted by four clients: created once, then unchanged
        assert statuses[(uid(n), "created")] == 1
        assert statuses[(uid(n), "unchanged")] == 3
    assert all(a["created"] == sum(i["status"] == "created" for i in a["data"]) for a in answers)
    assert row_count(engine, tenant.id) == 50
    assert hour_counts(engine, tenant.id) == fresh_counts(engine, tenant.id)
    assert_counts_exact(engine, tenant.id)  # and the day counts
    listed = client.get(
        "/api/pbx/cdr", params={"from": "2026-06-27", "to": "2026-06-27"}, headers=tenant.read
    )
    assert listed.json()["total"] == 50


def _new_account(engine: Engine, name: str) -> int:
    with db.write(engine) as conn:
        return accounts.create_account(
            conn,
            name=name,
            timezone="UTC",
            country="VN",
            max_window_days=30,
            recording_url_ttl=1800,
            rate_limit_per_minute=0,
            now=NOW,
        ).id


def test_writers_of_two_processes_share_one_sqlite_file(sqlite_url: str) -> None:
    """Two engines, as two server processes have: their writers take turns (flock) and agree."""
    engines = [make_engine(sqlite_url, sqlite_synchronous="NORMAL") for _ in range(2)]
    account_id = _new_account(engines[0], "shared")
    writers = [GroupCommitWriter(e) for e in engines]
    try:
        futures = [
            writers[n % 2].submit(job(account_id, at(n % 15, n % 15 % 10), at(100 + n, 3))) for n in range(60)
        ]
        answers = results(futures)
    finally:
        for w in writers:
            w.close()
    statuses = Counter(s for a in answers for s in a)
    assert statuses == {"created": 75, "unchanged": 45}
    assert row_count(engines[0], account_id) == 75
    assert hour_counts(engines[1], account_id) == fresh_counts(engines[1], account_id)
    assert_counts_exact(engines[1], account_id)  # and the day counts
    for e in engines:
        e.dispose()


def test_async_waiters_of_one_group_are_woken_with_one_call_into_their_loop(
    engine: Engine, writer: GroupCommitWriter, tenant: Tenant
) -> None:
    wakes: list[Any] = []

    async def main() -> list[list[str]]:
        loop = asyncio.get_running_loop()
        through = loop.call_soon_threadsafe

        def counting(callback: Any, *args: Any, **kwargs: Any) -> Any:
            wakes.append(callback)
            return through(callback, *args, **kwargs)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        with held(writer):
            tasks = [
                asyncio.ensure_future(
                    writer.upsert(tenant.id, "VN", parsed(cdr(uid(n))), origin="api", now=NOW)
                )
                for n in range(10)
            ]
            await asyncio.sleep(0)  # every task submits its job; the thread cannot take them yet
        return list(await asyncio.gather(*tasks))

    assert asyncio.run(main()) == [["created"]] * 10
    assert writer.groups == 1
    assert len(wakes) == 1  # one wake-up of the event loop for the whole group
    assert row_count(engine, tenant.id) == 10


def test_a_request_cancelled_while_waiting_is_not_written(
    engine: Engine, writer: GroupCommitWriter, tenant: Tenant
) -> None:
    async def main() -> list[str]:
        with held(writer):
            gone = asyncio.ensure_future(
                writer.upsert(tenant.id, "VN", parsed(cdr(uid(1))), origin="api", now=NOW)
            )
            kept = asyncio.ensure_future(
                writer.upsert(tenant.id, "VN", parsed(cdr(uid(2))), origin="api", now=NOW)
            )
            await asyncio.sleep(0)  # both queued
            gone.cancel()  # the client went away before the writer took its job
            with pytest.raises(asyncio.CancelledError):
                await gone
        return await kept

    assert asyncio.run(main()) == ["created"]
    assert row_count(engine, tenant.id) == 1


def test_a_failure_reaches_the_async_waiter(writer: GroupCommitWriter) -> None:
    async def main() -> list[str]:
        return await writer.upsert(987654, "VN", parsed(cdr(uid(1))), origin="api", now=NOW)

    with pytest.raises(IntegrityError, match=r"(?i)foreign key"):
        asyncio.run(main())


def test_processes_naming_the_file_through_a_symlink_share_the_turn(sqlite_url: str, tmp_path: Path) -> None:
    real = Path(make_url(sqlite_url).database or "")
    link = tmp_path / "elsewhere" / "link.sqlite3"
    link.parent.mkdir()
    link.symlink_to(real)
    engines = [make_engine(sqlite_url), make_engine(f"sqlite:///{link}")]
    try:
        paths = {GroupCommitWriter(e)._turn.path for e in engines}
        assert paths == {f"{real.resolve()}.writer-lock"}
    finally:
        for e in engines:
            e.dispose()


def _sqlite_writer(sqlite_url: str) -> tuple[Engine, GroupCommitWriter, int, str]:
    """A writer on a SQLite file with one account; and the file's real path (its locks' prefix)."""
    engine = make_engine(sqlite_url, sqlite_synchronous="NORMAL")
    account_id = _new_account(engine, "turns")
    real = os.path.realpath(make_url(sqlite_url).database or "")
    return engine, GroupCommitWriter(engine), account_id, real


def test_requests_that_arrive_while_another_process_writes_join_one_group(sqlite_url: str) -> None:
    """The writer waits for its turn first and takes the group then, not the other way round."""
    engine, writer, account_id, real = _sqlite_writer(sqlite_url)
    turn = os.open(f"{real}.writer-lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(turn, fcntl.LOCK_EX)  # another process is committing
    try:
        futures = [writer.submit(job(account_id, at(n, 3))) for n in range(10)]
    finally:
        fcntl.flock(turn, fcntl.LOCK_UN)
        os.close(turn)
    try:
        assert results(futures) == [["created"]] * 10
        assert writer.groups == 1  # all ten in the transaction that followed the other's
    finally:
        writer.close()
        engine.dispose()


def test_a_writer_that_just_wrote_cannot_take_the_turn_before_one_that_waits(sqlite_url: str) -> None:
    engine, writer, account_id, real = _sqlite_writer(sqlite_url)
    gate = os.open(f"{real}.writer-gate", os.O_RDWR | os.O_CREAT)
    turn = os.open(f"{real}.writer-lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(gate, fcntl.LOCK_EX)  # "another process" takes its turn the same way
        fcntl.flock(turn, fcntl.LOCK_EX)
        fcntl.flock(gate, fcntl.LOCK_UN)
        future = writer.submit(job(account_id, at(1, 3)))
        deadline = time.monotonic() + 30
        while True:  # until our writer waits for the turn, holding the gate
            try:
                fcntl.flock(gate, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                break
            fcntl.flock(gate, fcntl.LOCK_UN)
            assert time.monotonic() < deadline, "the writer never came to the gate"
            time.sleep(0.001)
        fcntl.flock(turn, fcntl.LOCK_UN)  # done; and at once it asks for another turn
        fcntl.flock(gate, fcntl.LOCK_EX)
        fcntl.flock(turn, fcntl.LOCK_EX)
        assert row_count(engine, account_id) == 1  # the waiting writer had its turn in between
        fcntl.flock(turn, fcntl.LOCK_UN)
        fcntl.flock(gate, fcntl.LOCK_UN)
        assert future.result(timeout=30) == ["created"]
    finally:
        os.close(gate)
        os.close(turn)
        writer.close()
        engine.dispose()


def test_a_group_writes_its_counts_then_its_accounts_each_once_in_order(
    engine: Engine,
    writer: GroupCommitWriter,
    tenant: Tenant,
    make_tenant: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = make_tenant("other", timezone="UTC", country="VN")
    writes: list[tuple[str, int]] = []
    adjust, bump = counts.adjust, call_queries.bump_data_version

    def adjusting(conn: Any, account_id: int, deltas: Any) -> None:
        writes.append(("counts", account_id))
        adjust(conn, account_id, deltas)

    def bumping(conn: Any, account_id: int) -> None:
        writes.append(("account", account_id))
        bump(conn, account_id)

    monkeypatch.setattr(counts, "adjust", adjusting)
    monkeypatch.setattr(call_queries, "bump_data_version", bumping)
    # Requests made in different seconds are separate upserts of one transaction.
    jobs = [
        WriteJob(other.id, "VN", parsed(at(1, 5)), "api", NOW),
        WriteJob(tenant.id, "VN", parsed(at(2, 9)), "api", NOW),
        WriteJob(tenant.id, "VN", parsed(at(3, 2)), "api", NOW + 1),
        WriteJob(other.id, "VN", parsed(at(4, 1)), "api", NOW + 2),
    ]
    with held(writer):
        futures = [writer.submit(j) for j in jobs]
    assert results(futures) == [["created"]] * 4
    assert writer.groups == 1
    # Every count row before any account row, each account's counts and row written once, by id:
    # two transactions take their locks in one order and never wait for each other in a circle.
    first, second = sorted((tenant.id, other.id))
    assert writes == [("counts", first), ("counts", second), ("account", first), ("account", second)]
    for account in (tenant, other):
        assert_counts_exact(engine, account.id)


POSTGRESQL_ONLY = [pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("database_url", POSTGRESQL_ONLY, indirect=True)
def test_two_writers_of_one_account_never_deadlock(engine: Engine, tenant: Tenant) -> None:
    # Another transaction has written the count rows of a day's hour 2 and has yet to write the
    # account's row.
    other_hour = parsed(at(9, 2, "2026-06-28"))[0].start_ts // 3600
    other = engine.connect()
    other_tx = other.begin()
    counts.adjust(other, tenant.id, Counter({(other_hour, "outbound", None): 1}))
    other_pid = other.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    # This group holds two upserts of the account (two seconds): hour 9 of the day before, and
    # that hour 2.
    group = [
        WriteJob(tenant.id, "VN", parsed(at(1, 9)), "api", NOW),
        WriteJob(tenant.id, "VN", parsed(at(2, 2, "2026-06-28")), "api", NOW + 1),
    ]
    outcome: list[Any] = []

    def write_group() -> None:
        try:
            with db.write(engine) as conn:
                outcome.append(apply_jobs(conn, group))
        except Exception as exc:  # the assertion below shows it
            outcome.append(exc)

    thread = threading.Thread(target=write_group)
    thread.start()
    deadline = time.monotonic() + 30
    waiting = 0
    while not waiting and time.monotonic() < deadline:  # until the group waits for our count row
        time.sleep(0.02)
        with engine.connect() as conn:
            waiting = conn.exec_driver_sql(  # a session of this test's own database waits for a lock
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                f" AND wait_event_type = 'Lock' AND pid <> {int(other_pid)}"
            ).scalar_one()
    assert waiting, "the group never waited for the other transaction"
    # Had the group written the account's row after its first upsert, this would wait for the
    # group while the group waits for this transaction: a deadlock, and one of the two refused.
    accounts.bump_data_version(other, tenant.id)
    other_tx.commit()
    other.close()
    thread.join(60)
    assert outcome == [[["created"], ["created"]]]
    expected = Counter(fresh_counts(engine, tenant.id))
    expected[(other_hour, "outbound")] += 1  # the other transaction's
    assert hour_counts(engine, tenant.id) == expected


def _refusal(sqlstate_error: type[Exception]) -> OperationalError:
    return OperationalError("INSERT INTO calls ...", {}, sqlstate_error("refused"))


def test_a_request_refused_as_a_deadlocks_victim_is_written_on_another_try(
    engine: Engine, writer: GroupCommitWriter, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = writer_module.apply_jobs
    refusals = [_refusal(psycopg.errors.DeadlockDetected), _refusal(psycopg.errors.SerializationFailure)]

    def refused_twice(conn: Any, jobs: Any) -> Any:
        if refusals:
            raise refusals.pop(0)
        return real(conn, jobs)

    monkeypatch.setattr(writer_module, "apply_jobs", refused_twice)
    with held(writer):
        futures = [writer.submit(job(tenant.id, cdr(uid(1)))), writer.submit(job(tenant.id, cdr(uid(2))))]
    assert results(futures) == [["created"], ["created"]]
    assert row_count(engine, tenant.id) == 2
    assert_counts_exact(engine, tenant.id)


def test_a_request_is_tried_again_a_few_times_only(
    writer: GroupCommitWriter, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls_made: list[int] = []

    def always_refused(conn: Any, jobs: Any) -> Any:
        calls_made.append(len(jobs))
        raise _refusal(psycopg.errors.DeadlockDetected)

    monkeypatch.setattr(writer_module, "apply_jobs", always_refused)
    with held(writer):
        future = writer.submit(job(tenant.id, cdr(uid(1))))
    with pytest.raises(OperationalError):
        future.result(timeout=60)
    assert calls_made == [1] * (1 + 1 + writer_module.TRANSIENT_RETRIES)  # the group, then alone
    assert db.is_transient(_refusal(psycopg.errors.SerializationFailure))
    assert not db.is_transient(_refusal(psycopg.errors.UniqueViolation))
