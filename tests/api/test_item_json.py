"""SQLite writes each list item's JSON itself: it must parse to exactly the definition, ``api_item``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, insert, select

from pbx_cdr.db.queries.calls import API_COLUMNS
from pbx_cdr.db.queries.item_json import ITEM_JSON
from pbx_cdr.db.tables import accounts, calls, metadata
from pbx_cdr.domain.call import api_item
from tests.unit.test_list_items import Row, rows

# Stored text never holds NUL (the API refuses it); every other code point may appear.
STORED = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(accounts).values(
                id=1,
                name="a",
                timezone="UTC",
                country="VN",
                max_window_days=30,
                recording_url_ttl=1800,
                rate_limit_per_minute=0,
                created_ts=0,
            )
        )
    yield engine
    engine.dispose()


def stored(row: Any) -> dict[str, Any]:
    values = {c.name: getattr(row, c.name) for c in API_COLUMNS}
    values["recording_available"] = bool(values["recording_available"])
    return {
        **values,
        "account_id": 1,
        "caller_key": "",
        "destination_key": "",
        "origin": "api",
        "updated_ts": 0,
    }


def through_sqlite(engine: Engine, page: list[Any]) -> list[Any]:
    with engine.begin() as conn:
        conn.execute(calls.delete())
        if page:
            conn.execute(insert(calls), [stored(r) for r in page])
        texts = conn.execute(select(ITEM_JSON).order_by(calls.c.id)).scalars().all()
    return [orjson.loads(text) for text in texts]


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        rows().filter(lambda r: "\x00" not in "".join(str(v) for v in r)),
        max_size=8,
        unique_by=(lambda r: r.id, lambda r: r.uuid),
    )
)
def test_items_written_by_sqlite_are_api_items(engine: Engine, page: list[Any]) -> None:
    expected = [api_item(r) for r in sorted(page, key=lambda r: r.id)]
    assert through_sqlite(engine, page) == expected


def base_row(**fields: Any) -> Any:
    values: dict[str, Any] = {c.name: None for c in API_COLUMNS}
    values.update(
        id=1,
        uuid="0b5e7c4e-5d2a-4f43-9a53-1f0e9c1b2a3d",
        direction="inbound",
        source_type="inbound",
        caller_number="0901234567",
        destination_number="1001",
        start_ts=1_782_561_600,
        end_ts=1_782_561_660,
        duration=60,
        billsec=50,
        transfer_count=0,
        result="answered",
        hangup_cause="NORMAL_CLEARING",
        recording_available=False,
        created_ts=1_782_561_661,
    )
    values.update(fields)
    return Row(**values)


@given(text=st.text(STORED, max_size=20))
@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_stored_text_survives_the_round_trip(engine: Engine, text: str) -> None:
    row = base_row(caller_number=text, queue_name=text, hangup_cause=text)
    assert through_sqlite(engine, [row]) == [api_item(row)]


def test_field_order_and_edge_values(engine: Engine) -> None:
    row = base_row(
        caller_number='quote " backslash \\ tab \t newline \n bell \x07 del \x7f',
        destination_number="Việt Nam ☎ 𝄞",
        start_ts=0,
        answer_ts=None,
        end_ts=2**33 - 1,
        created_ts=951_782_400,  # 2000-02-29
        recording_available=1,
    )
    with engine.begin() as conn:
        conn.execute(calls.delete())
        conn.execute(insert(calls), [stored(row)])
        text = conn.execute(select(ITEM_JSON)).scalar_one()
    item = orjson.loads(text)
    assert list(item) == list(api_item(row))  # the contract's field order
    assert item == api_item(row)
    assert item["start_time"] == "1970-01-01T00:00:00+00:00"
    assert item["answer_time"] is None
    assert item["recording_available"] is True
    assert item["created_at"] == "2000-02-29 00:00:00"
