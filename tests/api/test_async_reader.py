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

from pbx_cdr.db.async_pg import AsyncReader

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
