"""The list's fast item rendering writes exactly the JSON of the definition, ``api_item``."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from pbx_cdr.api.list_items import laravel_utc, list_items, utc
from pbx_cdr.db.queries.calls import API_COLUMNS
from pbx_cdr.domain.call import api_item, iso, laravel_timestamp

Row = namedtuple("Row", [c.name for c in API_COLUMNS])  # type: ignore[misc]
# Times the service can hold: epoch seconds from 1970 to the parser's bound (2**33, year 2242).
TIMES = st.integers(min_value=0, max_value=2**33 - 1)
TEXT = st.text(max_size=12)


def rows() -> st.SearchStrategy[Any]:
    return st.builds(
        Row,
        id=st.integers(1, 10**9),
        uuid=st.uuids().map(str),
        direction=st.sampled_from(["inbound", "outbound", "internal", "local"]),
        source_type=TEXT,
        caller_number=TEXT,
        destination_number=TEXT,
        extension_number=st.none() | TEXT,
        agent_extension=st.none() | TEXT,
        start_ts=TIMES,
        answer_ts=st.none() | TIMES,
        end_ts=TIMES,
        duration=st.integers(0, 2**31 - 1),
        billsec=st.integers(0, 2**31 - 1),
        queue_name=st.none() | TEXT,
        queue_wait_time=st.none() | st.integers(0, 2**31 - 1),
        trunk_name=st.none() | TEXT,
        transfer_count=st.integers(0, 50),
        result=TEXT,
        hangup_cause=TEXT,
        sip_response_code=st.none() | st.sampled_from(["200", "486", "487"]),
        recording_available=st.sampled_from([0, 1, True, False]),
        created_ts=TIMES,
    )


@given(st.lists(rows(), max_size=20))
def test_fast_items_are_the_same_json_as_api_item(page: list[Any]) -> None:
    assert orjson.dumps(list_items(page)) == orjson.dumps([api_item(r) for r in page])


@given(TIMES)
def test_times_render_as_the_domain_renders_them(ts: int) -> None:
    assert orjson.dumps(utc(ts)) == orjson.dumps(iso(ts))
    assert laravel_utc(ts) == laravel_timestamp(ts)


def test_edges_of_a_day() -> None:
    for ts in (0, 86399, 86400, 1_782_561_599, 1_782_561_600, 951_782_400):  # 951782400: 2000-02-29
        assert laravel_utc(ts) == laravel_timestamp(ts)
        assert orjson.dumps(utc(ts)) == orjson.dumps(iso(ts))
    assert utc(None) is None
