"""PostgreSQL hands the list its items' values (``item_values``) and ``items_json`` writes them: the
JSON must be byte for byte the definition's, ``api_item``, whatever time zone and date style the
server or the database is configured with (our connections set their own date style)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, insert, select

from pbx_cdr.api.list_items import items_json
from pbx_cdr.db.async_pg import AsyncReader
from pbx_cdr.db.driver import DriverReads
from pbx_cdr.db.engine import make_engine
from pbx_cdr.db.queries.item_values import ITEM_VALUES
from pbx_cdr.db.tables import accounts, calls
from pbx_cdr.domain.call import api_item
from tests.api.item_rows import ACCOUNT, EDGE_ROW_FIELDS, STORED, base_row, storable_rows, stored
from tests.conftest import new_pg_database
from tests.servers import PostgresServer

pytestmark = pytest.mark.postgres


# A database whose defaults are not PostgreSQL's: another date style (the times' text would be
# "27/06/2026 08:15:42" in it) and a time zone with a half-hour offset.
ELSEWHERE = {"DateStyle": "SQL, DMY", "TimeZone": "America/St_Johns"}


def _engine(pg: PostgresServer, defaults: dict[str, str]) -> Iterator[Engine]:
    url = new_pg_database(pg)
    if defaults:
        admin = make_engine(url)
        with admin.connect() as conn:
            for name, value in defaults.items():
                conn.exec_driver_sql(f"ALTER DATABASE {conn.engine.url.database} SET {name} = '{value}'")
            conn.commit()
        admin.dispose()
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(accounts).values(ACCOUNT))
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def engine(pg: PostgresServer) -> Iterator[Engine]:
    yield from _engine(pg, {})


@pytest.fixture(scope="module")
def elsewhere(pg: PostgresServer) -> Iterator[Engine]:
    yield from _engine(pg, ELSEWHERE)


def through_postgres(engine: Engine, page: list[Any]) -> bytes:
    with engine.begin() as conn:
        conn.execute(calls.delete())
        if page:
            conn.execute(insert(calls), [stored(r, 1) for r in page])
        rows = DriverReads.of(conn).rows(select(*ITEM_VALUES).order_by(calls.c.id), {})
    return items_json(rows)


def expected(page: list[Any]) -> bytes:
    return orjson.dumps([api_item(r) for r in sorted(page, key=lambda r: r.id)])


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(st.lists(storable_rows(), max_size=8, unique_by=(lambda r: r.id, lambda r: r.uuid)))
def test_items_from_postgres_values_are_api_items(engine: Engine, page: list[Any]) -> None:
    assert through_postgres(engine, page) == expected(page)


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(text=st.text(STORED, max_size=20))
def test_any_stored_text_survives_the_round_trip(engine: Engine, text: str) -> None:
    row = base_row(caller_number=text, queue_name=text, hangup_cause=text)
    assert through_postgres(engine, [row]) == expected([row])


@pytest.mark.parametrize("configured", ["default", "elsewhere"])
def test_edge_values_whatever_the_database_is_configured_with(
    request: pytest.FixtureRequest, configured: str
) -> None:
    engine = request.getfixturevalue("engine" if configured == "default" else "elsewhere")
    if configured == "elsewhere":  # the database's defaults do reach a new session...
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW TimeZone").scalar_one() == ELSEWHERE["TimeZone"]
    row = base_row(**EDGE_ROW_FIELDS)
    written = through_postgres(engine, [row])  # ... and change nothing
    assert written == expected([row])
    item = orjson.loads(written)[0]
    assert list(item) == list(api_item(row))  # the contract's field order
    assert item["start_time"] == "1970-01-01T00:00:00+00:00"
    assert item["end_time"] == "2242-03-16T12:56:31+00:00"
    assert item["answer_time"] is None
    assert item["recording_available"] is True
    assert item["created_at"] == "2000-02-29 00:00:00"


def test_the_event_loops_reads_set_their_date_style_too(elsewhere: Engine) -> None:
    """The list runs on ``AsyncReader``'s own connections, not the engine's."""
    row = base_row(**EDGE_ROW_FIELDS)
    through_postgres(elsewhere, [row])

    async def read() -> list[tuple[Any, ...]]:
        reader = AsyncReader(elsewhere, 1)
        try:
            return await reader.all_rows(select(*ITEM_VALUES).order_by(calls.c.id), {})
        finally:
            await reader.close()

    assert items_json(asyncio.run(read())) == expected([row])
