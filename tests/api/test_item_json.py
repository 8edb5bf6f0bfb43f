"""SQLite writes each list item's JSON itself: it must parse to exactly the definition, ``api_item``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, insert, select

from pbx_cdr.db.queries.item_json import ITEM_JSON
from pbx_cdr.db.tables import accounts, calls, metadata
from pbx_cdr.domain.call import api_item
from tests.api.item_rows import ACCOUNT, EDGE_ROW_FIELDS, STORED, base_row, storable_rows, stored


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(accounts).values(ACCOUNT))
    yield engine
    engine.dispose()


def through_sqlite(engine: Engine, page: list[Any]) -> list[Any]:
    with engine.begin() as conn:
        conn.execute(calls.delete())
        if page:
            conn.execute(insert(calls), [stored(r, 1) for r in page])
        texts = conn.execute(select(ITEM_JSON).order_by(calls.c.id)).scalars().all()
    return [orjson.loads(text) for text in texts]


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        storable_rows(),
        max_size=8,
        unique_by=(lambda r: r.id, lambda r: r.uuid),
    )
)
def test_items_written_by_sqlite_are_api_items(engine: Engine, page: list[Any]) -> None:
    expected = [api_item(r) for r in sorted(page, key=lambda r: r.id)]
    assert through_sqlite(engine, page) == expected


@given(text=st.text(STORED, max_size=20))
@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_stored_text_survives_the_round_trip(engine: Engine, text: str) -> None:
    row = base_row(caller_number=text, queue_name=text, hangup_cause=text)
    assert through_sqlite(engine, [row]) == [api_item(row)]


def test_field_order_and_edge_values(engine: Engine) -> None:
    row = base_row(**EDGE_ROW_FIELDS)
    with engine.begin() as conn:
        conn.execute(calls.delete())
        conn.execute(insert(calls), [stored(row, 1)])
        text = conn.execute(select(ITEM_JSON)).scalar_one()
    item = orjson.loads(text)
    assert list(item) == list(api_item(row))  # the contract's field order
    assert item == api_item(row)
    assert item["start_time"] == "1970-01-01T00:00:00+00:00"
    assert item["answer_time"] is None
    assert item["recording_available"] is True
    assert item["created_at"] == "2000-02-29 00:00:00"
