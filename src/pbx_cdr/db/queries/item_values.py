"""A call's API item as PostgreSQL hands it over: values the driver loads in C, in the item's order.

The list's page on PostgreSQL selects these 21 values, named as the item's fields: the three ISO
times and ``created_at`` as UTC ``timestamp`` values (``timezone('UTC', to_timestamp(...))``, which
reads no session setting), which psycopg's loader turns into ``datetime`` objects in C, and
``recording_available`` as a boolean. ``api/list_items.py`` then makes each row the item with one
``dict(zip(...))``, and orjson writes the times (``OPT_NAIVE_UTC``: ``2026-06-27T08:15:42+00:00``).
Turning the epoch columns into datetimes and strings in Python had been most of the rendering: at
10M calls, 16 concurrent lists of a small account's 50-row page on one event loop cost the API
550-650 -> 400-470 µs of CPU a list, PostgreSQL about the same (0-20 µs more). Rows in psycopg's
binary format cost PostgreSQL 40-70 µs more a list, and ``row_to_json`` more than it saved the
API, on the same cores (``item_json.py`` is SQLite's way).

The item is the definition's (``domain.call.api_item``): ``tests/api/test_item_values.py``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, literal_column

from pbx_cdr.db.tables import calls
from pbx_cdr.domain.call import API_FIELDS

_UTC: Any = literal_column("'UTC'")  # a literal: the statement's text never changes
_TIMES = {
    "start_time": "start_ts",
    "answer_time": "answer_ts",
    "end_time": "end_ts",
    "created_at": "created_ts",
}


def _value(field: str) -> Any:
    if field in _TIMES:  # NULL stays NULL
        return func.timezone(_UTC, func.to_timestamp(calls.c[_TIMES[field]])).label(field)
    return calls.c[field]


ITEM_VALUES = tuple(_value(field) for field in API_FIELDS)
