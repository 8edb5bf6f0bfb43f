"""PostgreSQL hands the list its items' values (``item_values``) and ``list_items`` makes them the
items: the JSON must be byte for byte the definition's, ``api_item``, whatever the session's time
zone and date style."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, insert, select

from pbx_cdr.api.list_items import JSON_OPTIONS, list_items
from pbx_cdr.db.driver import DriverReads
from pbx_cdr.db.engine import make_engine
from pbx_cdr.db.queries.item_values import ITEM_VALUES
from pbx_cdr.db.tables import accounts, calls
from pbx_cdr.domain.call import api_item
from tests.api.item_rows import ACCOUNT, EDGE_ROW_FIELDS, STORED, base_row, storable_rows, stored
from tests.conftest import new_pg_database
from tests.servers import PostgresServer

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def engine(pg: PostgresServer) -> Iterator[Engine]:
    engine = make_engine(new_pg_database(pg))
    with engine.begin() as conn:
        conn.execute(insert(accounts).values(ACCOUNT))
    yield engine
    engine.dispose()


def through_postgres(engine: Engine, page: list[Any], *, session: str = "") -> bytes:
    with engine.begin() as conn:
        if session:  # a server configured otherwise must not change a byte
            conn.exec_driver_sql(session)
        conn.execute(calls.delete())
        if page:
            conn.execute(insert(calls), [stored(r, 1) for r in page])
        rows = DriverReads.of(conn).rows(select(*ITEM_VALUES).order_by(calls.c.id), {})
    return orjson.dumps(list_items(rows), option=JSON_OPTIONS)


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


@pytest.mark.parametrize(
    "session",
    ["", "SET LOCAL TimeZone = 'America/St_Johns'; SET LOCAL DateStyle = 'SQL, DMY'"],
)
def test_edge_values_whatever_the_session_settings(engine: Engine, session: str) -> None:
    row = base_row(**EDGE_ROW_FIELDS)
    written = through_postgres(engine, [row], session=session)
    assert written == expected([row])
    item = orjson.loads(written)[0]
    assert list(item) == list(api_item(row))  # the contract's field order
    assert item["start_time"] == "1970-01-01T00:00:00+00:00"
    assert item["end_time"] == "2242-03-16T12:56:31+00:00"
    assert item["answer_time"] is None
    assert item["recording_available"] is True
    assert item["created_at"] == "2000-02-29 00:00:00"
