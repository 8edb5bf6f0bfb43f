"""PostgreSQL's reads awaited on the event loop (``db/async_pg.py``): statements prepared once per
connection and run on libpq's handle, parameters as text, and connections kept only while they are
in step with the server."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from sqlalchemy import (
    BigInteger,
    Boolean,
    Engine,
    Integer,
    String,
    bindparam,
    cast,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError

from pbx_cdr.db.async_pg import AsyncReader

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


@pytest.fixture
def reader(engine: Engine) -> AsyncReader:
    return AsyncReader(engine, 2)


def test_parameters_go_as_text_and_come_back_typed(reader: AsyncReader) -> None:
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

    assert asyncio.run(run()) == [
        (42, 1, "Việt ☎ 'quoted' %s", True, None),
        (-(2**41), 1, "", False, None),
    ]


def test_a_statement_is_prepared_once_per_connection_with_a_generic_plan(reader: AsyncReader) -> None:
    async def run() -> list[tuple[object, ...]]:
        try:
            for n in range(3):
                assert await reader.first_row(ECHO, {"n": n, "s": "x", "b": True, "none": None})
            pool = reader._ready()
            assert len(pool.idle) == 1  # one connection, used three times
            conn = pool.idle[0].conn
            cursor = await conn.execute(
                "SELECT name, statement, generic_plans, custom_plans FROM pg_prepared_statements"
            )
            return await cursor.fetchall()
        finally:
            await reader.close()

    prepared = asyncio.run(run())
    assert len(prepared) == 1 and "$1::BIGINT + $1::BIGINT" in prepared[0][1]
    assert prepared[0][2:] == (3, 0)  # planned once for all values, from its first run


def test_a_refused_statement_keeps_its_connection(reader: AsyncReader) -> None:
    async def run() -> None:
        try:
            with pytest.raises(DBAPIError) as refused:
                await reader.first_row(DIVIDE, {"d": 0})
            assert isinstance(refused.value.orig, psycopg.errors.DivisionByZero)
            pool = reader._ready()
            assert len(pool.idle) == 1  # in step with the server: back in the pool
            assert await reader.first_row(DIVIDE, {"d": 1}) == (1,)
            assert len(pool.idle) == 1
        finally:
            await reader.close()

    asyncio.run(run())


def test_a_read_cut_short_closes_its_connection(reader: AsyncReader) -> None:
    """A cancelled request's answer may still be on its way: the connection must not be reused,
    or the next read would take that answer for its own."""

    async def run() -> None:
        try:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await reader.first_row(SLEEP, {"s": 2})
            pool = reader._ready()
            assert pool.idle == []
            row = await reader.first_row(ECHO, {"n": 5, "s": "after", "b": False, "none": None})
            assert row == (10, 1, "after", False, None)
        finally:
            await reader.close()

    asyncio.run(run())


def test_a_parameter_without_a_text_form_is_refused_before_any_connection(reader: AsyncReader) -> None:
    async def run() -> None:
        with pytest.raises(TypeError):
            await reader.first_row(DIVIDE, {"d": 1.5})
        assert reader._pool is None

    asyncio.run(run())


def test_a_nul_in_a_text_parameter_is_refused_not_cut_short(reader: AsyncReader) -> None:
    """libpq ends a text parameter at its first NUL: "100\\x00..." must not run as "100"."""

    async def run() -> None:
        with pytest.raises(DBAPIError) as refused:
            await reader.first_row(ECHO, {"n": 1, "s": "100\x00999", "b": True, "none": None})
        assert isinstance(refused.value.orig, psycopg.DataError)
        assert reader._pool is None  # refused before any connection

    asyncio.run(run())


def test_a_connection_whose_prepared_statements_went_stale_is_dropped(
    reader: AsyncReader, engine: Engine
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
            assert reader._ready().idle == []
            assert await reader.first_row(drift, {}) == ("7",)
        finally:
            await reader.close()

    asyncio.run(run())
