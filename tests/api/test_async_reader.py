"""PostgreSQL's reads awaited on the event loop (``db/async_pg.py``): statements prepared once per
connection and run on libpq's handle, parameters as text, and connections kept only while they are
in step with the server. Each runs on asyncio's event loop and on uvloop (the server's)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any

import psycopg
import pytest
import uvloop
from sqlalchemy import (
    BigInteger,
    Boolean,
    Engine,
    Float,
    Integer,
    String,
    bindparam,
    cast,
    create_engine,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError, OperationalError

from pbx_cdr.db import async_pg
from pbx_cdr.db.async_pg import DEPTH, READ_TIMEOUT_S, AsyncReader

RunOn = Callable[[Coroutine[Any, Any, Any]], Any]

pytestmark = pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)

# One name used twice, a literal %, and each kind of parameter the service sends.
ECHO = select(
    bindparam("n", type_=BigInteger) + bindparam("n", type_=BigInteger),
    literal_column("7 % 3"),
    bindparam("s", type_=String),
    cast(bindparam("b"), Boolean),
    bindparam("none", type_=Integer),
)
SLEEP = select(func.pg_sleep(bindparam("s", type_=Integer)))
NAP = select(func.pg_sleep(cast(bindparam("s", type_=String), Float)))  # fractions of a second
DIVIDE = select(literal_column("1") / bindparam("d", type_=Integer))
PREPARED = select(text("name, statement, generic_plans, custom_plans FROM pg_prepared_statements"))
DEALLOCATE_ALL = text("DEALLOCATE ALL")


@pytest.fixture
def reader(engine: Engine) -> AsyncReader:
    return AsyncReader(engine, 2)


@pytest.fixture(params=["asyncio", "uvloop"])
def run_on(request: pytest.FixtureRequest) -> RunOn:
    """Runs a coroutine on asyncio's own event loop, or on uvloop's (the server's)."""
    factory = uvloop.new_event_loop if request.param == "uvloop" else None

    def run(coro: Coroutine[Any, Any, Any]) -> Any:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coro)

    return run


def test_parameters_go_as_text_and_come_back_typed(reader: AsyncReader, run_on: RunOn) -> None:
    async def run() -> list[tuple[object, ...]]:
        try:
            return [
                row
                for params in (
                    {"n": 21, "s": "Việt ☎ 'quoted' %s", "b": True, "none": None},
                    {"n": -(2**40), "s": "", "b": False, "none": None},
                )
                for row in await reader.all_rows(ECHO, params)
            ]
        finally:
            await reader.close()

    assert run_on(run()) == [
        (42, 1, "Việt ☎ 'quoted' %s", True, None),
        (-(2**41), 1, "", False, None),
    ]


def test_a_statement_is_prepared_once_per_connection_with_a_generic_plan(
    reader: AsyncReader, run_on: RunOn
) -> None:
    async def run() -> list[tuple[object, ...]]:
        try:
            for n in range(3):
                assert await reader.first_row(ECHO, {"n": n, "s": "x", "b": True, "none": None})
            pool = reader._ready()
            assert len(pool.pipes) == 1  # one connection, used three times
            return await reader.all_rows(PREPARED, {})  # on that same connection
        finally:
            await reader.close()

    prepared = [row for row in run_on(run()) if "pg_prepared_statements" not in row[1]]  # not itself
    assert len(prepared) == 1 and "$1::BIGINT + $1::BIGINT" in prepared[0][1]
    assert prepared[0][2:] == (3, 0)  # planned once for all values, from its first run


def test_a_refused_statement_keeps_its_connection(reader: AsyncReader, run_on: RunOn) -> None:
    async def run() -> None:
        try:
            with pytest.raises(DBAPIError) as refused:
                await reader.first_row(DIVIDE, {"d": 0})
            assert isinstance(refused.value.orig, psycopg.errors.DivisionByZero)
            pool = reader._ready()
            (pipe,) = pool.pipes  # in step with the server: still in the pool
            assert await reader.first_row(DIVIDE, {"d": 1}) == (1,)
            assert pool.pipes == [pipe]
        finally:
            await reader.close()

    run_on(run())


def test_a_read_cut_short_leaves_its_connection_in_step(engine: Engine, run_on: RunOn) -> None:
    """A cancelled request's answer is still on its way: it is read in its turn and dropped, so the
    reads sent after it on the same connection (the only one here) get their own answers."""
    reader = AsyncReader(engine, 1)

    async def run() -> None:
        try:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await reader.first_row(SLEEP, {"s": 1})
            pool = reader._ready()
            (pipe,) = pool.pipes
            assert len(pipe.pending) == 1  # the sleep's answer, still to come
            row = await reader.first_row(ECHO, {"n": 5, "s": "after", "b": False, "none": None})
            assert row == (10, 1, "after", False, None)
            assert pool.pipes == [pipe] and not pipe.pending
        finally:
            await reader.close()

    run_on(run())


def test_a_parameter_without_a_text_form_is_refused_before_any_connection(
    reader: AsyncReader, run_on: RunOn
) -> None:
    async def run() -> None:
        with pytest.raises(TypeError):
            await reader.first_row(DIVIDE, {"d": 1.5})
        assert reader._pool is None

    run_on(run())


def test_a_nul_in_a_text_parameter_is_refused_not_cut_short(reader: AsyncReader, run_on: RunOn) -> None:
    """libpq ends a text parameter at its first NUL: "100\\x00..." must not run as "100"."""

    async def run() -> None:
        with pytest.raises(DBAPIError) as refused:
            await reader.first_row(ECHO, {"n": 1, "s": "100\x00999", "b": True, "none": None})
        assert isinstance(refused.value.orig, psycopg.DataError)
        assert reader._pool is None  # refused before any connection

    run_on(run())


def test_a_connection_whose_prepared_statements_went_stale_is_dropped(
    reader: AsyncReader, engine: Engine, run_on: RunOn
) -> None:
    """A migration that changes a column's type leaves the old plan unusable ("cached plan must not
    change result type"): that connection goes, and the next one prepares afresh."""
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE drift (v integer)")
        conn.exec_driver_sql("INSERT INTO drift VALUES (7)")
    drift = select(literal_column("v")).select_from(text("drift"))

    async def run() -> None:
        try:
            assert await reader.first_row(drift, {}) == (7,)
            with engine.begin() as conn:
                conn.exec_driver_sql("ALTER TABLE drift ALTER COLUMN v TYPE text")
            with pytest.raises(DBAPIError) as stale:
                await reader.first_row(drift, {})
            assert stale.value.orig.sqlstate == "0A000"  # type: ignore[union-attr]
            assert reader._ready().pipes == []  # retired, then closed: it had nothing else in flight
            assert await reader.first_row(drift, {}) == ("7",)
        finally:
            await reader.close()

    run_on(run())


def _backend_pids(engine: Engine) -> set[int]:
    with engine.connect() as conn:
        return set(
            conn.exec_driver_sql(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            ).scalars()
        )


def _terminate(engine: Engine, pids: set[int]) -> None:
    with engine.connect() as conn:
        for pid in pids:
            conn.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")


def test_a_connection_the_server_ended_while_idle_is_not_used(
    reader: AsyncReader, engine: Engine, run_on: RunOn
) -> None:
    """Restarted or terminated backends while their connections sit idle (their sockets are watched):
    the next read takes a new connection, and no request answers 503 for them."""

    async def run() -> None:
        try:
            assert await asyncio.gather(*(reader.first_row(DIVIDE, {"d": 1}) for _ in range(2))) == [(1,)] * 2
            ended = list(reader._ready().pipes)
            assert len(ended) == 2
            _terminate(engine, _backend_pids(engine))
            await asyncio.sleep(0.2)  # the server's goodbye arrives
            assert await reader.first_row(DIVIDE, {"d": 1}) == (1,)
            assert [pipe for pipe in reader._ready().pipes if pipe in ended] == []
            assert all(pipe.conn.closed for pipe in ended)
            # Its goodbye (a FATAL libpq gives the notice handler) is what ended it, not the end of
            # the stream that may come later.
            assert all("terminating connection" in str(pipe.lost) for pipe in ended)
        finally:
            await reader.close()

    run_on(run())


def test_a_connection_lost_during_a_read_is_a_503_and_dropped(
    reader: AsyncReader, engine: Engine, run_on: RunOn
) -> None:
    async def run() -> None:
        try:
            sleeping = asyncio.ensure_future(reader.first_row(SLEEP, {"s": 5}))
            pids: set[int] = set()
            while not pids:  # the backend running the sleep
                await asyncio.sleep(0.05)
                pids = _backend_pids(engine)
            _terminate(engine, pids)
            with pytest.raises(OperationalError):  # the app answers 503
                await sleeping
            assert reader._ready().pipes == []
            assert await reader.first_row(DIVIDE, {"d": 1}) == (1,)
        finally:
            await reader.close()

    run_on(run())


def test_a_connection_whose_prepared_statements_are_gone_is_dropped(
    reader: AsyncReader, run_on: RunOn
) -> None:
    """A pooler that hands the statement to another server session: "prepared statement does not
    exist" (26000). That connection goes; the next prepares afresh."""

    async def run() -> None:
        try:
            assert await reader.first_row(DIVIDE, {"d": 1}) == (1,)
            await reader.all_rows(DEALLOCATE_ALL, {})  # on the same connection
            with pytest.raises(DBAPIError) as gone:
                await reader.first_row(DIVIDE, {"d": 1})
            assert gone.value.orig.sqlstate == "26000"  # type: ignore[union-attr]
            assert reader._ready().pipes == []
            assert await reader.first_row(DIVIDE, {"d": 1}) == (1,)
        finally:
            await reader.close()

    run_on(run())


def test_reads_in_flight_share_the_pool_and_each_gets_its_own_answer(
    reader: AsyncReader, run_on: RunOn
) -> None:
    """60 reads at once on 2 connections, every third refused: no answer goes to another read, and
    every connection comes back in step."""

    async def one(n: int) -> object:
        if n % 3 == 0:
            with pytest.raises(DBAPIError) as refused:
                await reader.first_row(DIVIDE, {"d": 0})
            assert isinstance(refused.value.orig, psycopg.errors.DivisionByZero)
            return None
        return await reader.first_row(ECHO, {"n": n, "s": f"read {n}", "b": n % 2 == 0, "none": None})

    async def run() -> list[object]:
        try:
            answers = await asyncio.gather(*(one(n) for n in range(60)))
            assert 1 <= len(reader._ready().pipes) <= 2
            return answers
        finally:
            await reader.close()

    answers = run_on(run())
    assert answers == [None if n % 3 == 0 else (2 * n, 1, f"read {n}", n % 2 == 0, None) for n in range(60)]


def test_an_unreachable_database_is_a_503_at_once(database_url: str, run_on: RunOn) -> None:
    """(Parametrized with the rest, on PostgreSQL; the database itself is not used.)"""
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reader = AsyncReader(create_engine(f"postgresql+psycopg://u@127.0.0.1:{port}/db"), 1)

    async def run() -> None:
        started = time.monotonic()
        with pytest.raises(OperationalError):
            await reader.first_row(DIVIDE, {"d": 1})
        assert time.monotonic() - started < 5  # refused, not waited out
        await reader.close()

    run_on(run())


def test_every_read_in_flight_on_a_lost_connection_fails_and_the_next_gets_a_new_one(
    engine: Engine, run_on: RunOn
) -> None:
    """Reads pipelined behind one another on one connection: when it is lost, each fails (503) at
    once instead of waiting for an answer that will never come."""
    reader = AsyncReader(engine, 1)

    async def run() -> None:
        try:
            assert await reader.first_row(DIVIDE, {"d": 1}) == (1,)  # prepared: the reads go at once
            reads = [asyncio.ensure_future(reader.first_row(SLEEP, {"s": 5}))]
            await asyncio.sleep(0.05)
            reads += [asyncio.ensure_future(reader.first_row(DIVIDE, {"d": 1})) for _ in range(5)]
            pids: set[int] = set()
            while not pids:
                await asyncio.sleep(0.05)
                pids = _backend_pids(engine)
            (pipe,) = reader._ready().pipes
            assert len(pipe.pending) == 6
            started = time.monotonic()
            _terminate(engine, pids)
            outcomes = await asyncio.gather(*reads, return_exceptions=True)
            assert time.monotonic() - started < 3  # not the sleep's 5 s
            assert all(isinstance(o, OperationalError) for o in outcomes), outcomes
            assert reader._ready().pipes == []
            assert await reader.first_row(DIVIDE, {"d": 1}) == (1,)
        finally:
            await reader.close()

    run_on(run())


def test_a_refused_prepare_is_its_reads_error_and_the_connection_stays(engine: Engine, run_on: RunOn) -> None:
    """A statement PostgreSQL cannot prepare (here a missing table): each read of it gets that
    error, not a later one ("prepared statement does not exist"), and the connection stays in step
    for the reads of other statements sent among them."""
    reader = AsyncReader(engine, 1)
    missing = select(literal_column("v")).select_from(text("no_such_table"))

    async def one(n: int) -> object:
        if n % 2:
            return await reader.first_row(DIVIDE, {"d": 1})
        with pytest.raises(DBAPIError) as refused:
            await reader.first_row(missing, {})
        return type(refused.value.orig)

    async def run() -> list[object]:
        try:
            answers = await asyncio.gather(*(one(n) for n in range(8)))
            (pipe,) = reader._ready().pipes
            assert not pipe.pending and pipe.usable
            return answers
        finally:
            await reader.close()

    answers = run_on(run())
    assert answers == [psycopg.errors.UndefinedTable, (1,)] * 4


BIG = select(func.repeat("x", 200)).select_from(func.generate_series(1, bindparam("k", type_=Integer)))


def test_a_reset_behind_a_large_answer_fails_the_reads_in_flight(engine: Engine, run_on: RunOn) -> None:
    """The connection reset while megabytes of an answer are unread, the event loop busy elsewhere:
    uvloop calls the reader once for the socket's error and stops watching it, so the reads in flight
    must fail in that one call, not wait forever."""
    reader = AsyncReader(engine, 1)
    echo = select(bindparam("s", type_=String), bindparam("n", type_=BigInteger))

    async def run() -> None:
        try:
            for statement, params in ((BIG, {"k": 1}), (SLEEP, {"s": 0}), (echo, {"s": "a", "n": 1})):
                await reader.all_rows(statement, params)  # prepared: the reads below go out at once
            pids = _backend_pids(engine)
            reads = [
                asyncio.ensure_future(reader.all_rows(BIG, {"k": 20_000})),  # about 4 MB of rows
                asyncio.ensure_future(reader.all_rows(SLEEP, {"s": 30})),
                asyncio.ensure_future(reader.all_rows(echo, {"s": "y" * 300_000, "n": 2})),
            ]
            await asyncio.sleep(0)  # sent
            time.sleep(0.05)  # the event loop busy elsewhere while the backend is ended
            _terminate(engine, pids)
            time.sleep(0.02)
            done, pending = await asyncio.wait(reads, timeout=5)
            for task in pending:
                task.cancel()
            assert not pending
            assert all(isinstance(task.exception(), OperationalError) for task in done)
            assert await reader.first_row(DIVIDE, {"d": 1}) == (1,)
        finally:
            await reader.close()

    run_on(run())


def test_a_read_goes_to_the_connection_least_behind_not_behind_a_slow_one(
    reader: AsyncReader, run_on: RunOn
) -> None:
    """Two connections, a slow read at the head of one: quick reads go to the other, also after the
    slow one's request is cancelled (the server still runs it, and holds that connection)."""

    async def run() -> None:
        try:
            assert await asyncio.gather(*(reader.first_row(DIVIDE, {"d": 1}) for _ in range(2))) == [(1,)] * 2
            await reader.first_row(NAP, {"s": "0"})  # prepared on one of them
            slow = asyncio.ensure_future(reader.first_row(NAP, {"s": "3"}))
            await asyncio.sleep(0.3)  # past SLOW_S
            busy = next(pipe for pipe in reader._ready().pipes if pipe.pending)
            started = time.monotonic()
            quick = [asyncio.ensure_future(reader.first_row(DIVIDE, {"d": 1})) for _ in range(6)]
            assert await asyncio.gather(*quick) == [(1,)] * 6
            slow.cancel()
            await asyncio.sleep(0)
            assert len(busy.pending) == 1  # cancelled, still running there
            assert await asyncio.gather(*(reader.first_row(DIVIDE, {"d": 1}) for _ in range(6))) == [(1,)] * 6
            assert time.monotonic() - started < 1.5  # none waited for the slow read
            assert len(busy.pending) == 1
        finally:
            await reader.close()

    run_on(run())


def test_a_cancelled_read_holds_its_place_until_the_server_has_answered_it(
    engine: Engine, run_on: RunOn
) -> None:
    """Requests cancelled while their reads run: the reads still occupy their connection, so the
    next reads wait for a place instead of piling up behind them."""
    reader = AsyncReader(engine, 1)

    async def run() -> None:
        try:
            await reader.first_row(NAP, {"s": "0"})
            naps = [asyncio.ensure_future(reader.first_row(NAP, {"s": "0.3"})) for _ in range(3 * DEPTH)]
            await asyncio.sleep(0.05)
            (pipe,) = reader._ready().pipes
            assert len(pipe.pending) == DEPTH  # one connection's share; the rest wait for a place
            for nap in naps:
                nap.cancel()
            after = [asyncio.ensure_future(reader.first_row(DIVIDE, {"d": 1})) for _ in range(4)]
            await asyncio.sleep(0.01)
            assert len(pipe.pending) == DEPTH  # the cancelled ones, still being answered
            assert await asyncio.gather(*after) == [(1,)] * 4
            assert not pipe.pending and pipe.usable
        finally:
            await reader.close()

    run_on(run())


def test_reads_waiting_for_a_connection_share_its_failure(database_url: str, run_on: RunOn) -> None:
    """A database that takes connections and never answers: the reads waiting for the one being
    opened fail with it, after one connect timeout, not one after another; and reads still waiting
    when the reader closes fail (503), rather than end as if their requests had been cancelled."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes the handshake; nobody ever reads or answers
        port = silent.getsockname()[1]
        url = f"postgresql+psycopg://u@127.0.0.1:{port}/db?connect_timeout=2"
        reader = AsyncReader(create_engine(url), 1)

        async def run() -> None:
            started = time.monotonic()
            outcomes = await asyncio.gather(
                *(reader.first_row(DIVIDE, {"d": 1}) for _ in range(5)), return_exceptions=True
            )
            assert all(isinstance(o, OperationalError) for o in outcomes), outcomes
            assert time.monotonic() - started < 3.5  # one timeout of 2 s, not five
            waiting = [asyncio.ensure_future(reader.first_row(DIVIDE, {"d": 1})) for _ in range(3)]
            await asyncio.sleep(0.2)
            await reader.close()
            outcomes = await asyncio.gather(*waiting, return_exceptions=True)
            assert all(isinstance(o, OperationalError) for o in outcomes), outcomes

        run_on(run())


def test_a_read_the_server_runs_too_long_is_ended(engine: Engine, run_on: RunOn) -> None:
    """A 503 after ``READ_TIMEOUT_S`` (here shortened on the session), and the connection stays."""
    reader = AsyncReader(engine, 1)
    timeout = text("SET statement_timeout = '200ms'")

    async def run() -> None:
        try:
            setting = await reader.first_row(select(func.current_setting("statement_timeout")), {})
            assert setting == (f"{READ_TIMEOUT_S}s",)
            await reader.all_rows(timeout, {})
            with pytest.raises(OperationalError) as ended:
                await reader.first_row(SLEEP, {"s": 5})
            assert isinstance(ended.value.orig, psycopg.errors.QueryCanceled)
            assert await reader.first_row(DIVIDE, {"d": 1}) == (1,)
            assert len(reader._ready().pipes) == 1
        finally:
            await reader.close()

    run_on(run())


def test_a_connection_that_stops_answering_is_given_up(
    engine: Engine, run_on: RunOn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read left unanswered for ``ANSWER_WITHIN_S`` (here half a second; a silent peer, a stalled
    pooler): the connection is given up and the reads on it fail (503), without waiting for TCP."""
    monkeypatch.setattr(async_pg, "ANSWER_WITHIN_S", 0.5)
    reader = AsyncReader(engine, 1)

    async def run() -> None:
        try:
            assert await reader.first_row(DIVIDE, {"d": 1}) == (1,)
            await reader.first_row(SLEEP, {"s": 0})
            (pipe,) = reader._ready().pipes
            started = time.monotonic()
            reads = [asyncio.ensure_future(reader.first_row(SLEEP, {"s": 5}))]
            reads += [asyncio.ensure_future(reader.first_row(DIVIDE, {"d": 1})) for _ in range(3)]
            outcomes = await asyncio.gather(*reads, return_exceptions=True)
            assert time.monotonic() - started < 2
            assert all(isinstance(o, OperationalError) for o in outcomes), outcomes
            assert "has not answered" in str(pipe.lost)
            assert await reader.first_row(DIVIDE, {"d": 1}) == (1,)  # on a new connection
        finally:
            await reader.close()

    run_on(run())


def test_a_connection_that_cannot_be_opened_leaves_reads_to_those_open(
    reader: AsyncReader, run_on: RunOn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Room for a second connection, but the server refuses it (say, too many clients): the read
    joins the connection already open instead of failing."""

    async def run() -> None:
        try:
            assert await reader.first_row(NAP, {"s": "0"}) is not None
            (pipe,) = reader._ready().pipes
            napping = asyncio.ensure_future(reader.first_row(NAP, {"s": "0.3"}))
            await asyncio.sleep(0.05)

            async def refused() -> object:
                raise psycopg.OperationalError("sorry, too many clients already")

            monkeypatch.setattr(reader._ready(), "_open", refused)
            assert await reader.first_row(NAP, {"s": "0"}) is not None
            assert reader._ready().pipes == [pipe]
            await napping
        finally:
            await reader.close()

    run_on(run())
