"""Random rows of the calls the API shows, for the tests that hold a database's rendering of the
list's items equal to the definition, ``domain.call.api_item``."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

from hypothesis import strategies as st

from pbx_cdr.db.queries.calls import API_COLUMNS

Row = namedtuple("Row", [c.name for c in API_COLUMNS])  # type: ignore[misc]
# Times the service can hold: epoch seconds from 1970 to the parser's bound (2**33, year 2242).
TIMES = st.integers(min_value=0, max_value=2**33 - 1)
TEXT = st.text(max_size=12)
# Stored text never holds NUL (the API refuses it; PostgreSQL cannot store it); every other code point may.
STORED = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")


# The account the rows belong to (id 1), for a database of the test's own.
ACCOUNT: dict[str, Any] = {
    "id": 1,
    "name": "a",
    "timezone": "UTC",
    "country": "VN",
    "max_window_days": 30,
    "recording_url_ttl": 1800,
    "rate_limit_per_minute": 0,
    "created_ts": 0,
}


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


def storable_rows() -> st.SearchStrategy[Any]:
    return rows().filter(lambda r: "\x00" not in "".join(str(v) for v in r))


def stored(row: Any, account_id: int) -> dict[str, Any]:
    """The ``calls`` row that shows as ``row``."""
    values = {c.name: getattr(row, c.name) for c in API_COLUMNS}
    values["recording_available"] = bool(values["recording_available"])
    return {
        **values,
        "account_id": account_id,
        "caller_key": "",
        "destination_key": "",
        "origin": "api",
        "updated_ts": 0,
    }


def base_row(**fields: Any) -> Any:
    """A plain answered call, with ``fields`` changed."""
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


EDGE_ROW_FIELDS: dict[str, Any] = {
    "caller_number": 'quote " backslash \\ tab \t newline \n bell \x07 del \x7f',
    "destination_number": "Việt Nam ☎ 𝄞",
    "start_ts": 0,
    "answer_ts": None,
    "end_ts": 2**33 - 1,
    "created_ts": 951_782_400,  # 2000-02-29
    "recording_available": 1,
}
