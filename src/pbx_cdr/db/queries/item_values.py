"""A call's API item as PostgreSQL hands it over: the item's values, in its order, as they are written.

The list's page on PostgreSQL selects these 21 values, named as the item's fields, and
``api/list_items.py`` writes them as they come: PostgreSQL spells the times, Python never makes a
``datetime``. The three ISO times are the UTC ``timestamp``'s text with a ``T`` and ``+00:00``
(``2026-06-27T08:15:42+00:00``) and ``created_at`` is that text as it is (``2026-06-27 08:15:42``);
``timezone('UTC', ...)`` reads no session setting, and the text is the ISO date style's, which every
connection of ours sets when it connects (``db/engine.PG_SESSION_SETTINGS``), so a server
configured with another date style changes nothing. ``recording_available`` is a boolean.

Measured on a 10M database, a small account's 50-row page: the times' text costs PostgreSQL about
20-30 µs more a list than handing over ``timestamp`` values, and saves the API the 150
``datetime``s psycopg made and the 50 ``created_at`` strings Python spelled, which is what let the
items be written as structs (``list_items``): 94 -> 22 µs of rendering a page. Rows in psycopg's
binary format cost PostgreSQL 40-70 µs more a list, and ``row_to_json`` 130-160 µs more, more than it
saved the API (``item_json.py`` is SQLite's way).

The item is the definition's (``domain.call.api_item``): ``tests/api/test_item_values.py``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, cast, func, literal_column

from pbx_cdr.db.tables import calls
from pbx_cdr.domain.call import API_FIELDS

# Literals, not parameters: the statement's text never changes.
_UTC: Any = literal_column("'UTC'")
_SPACE: Any = literal_column("' '")
_T: Any = literal_column("'T'")
_OFFSET: Any = literal_column("'+00:00'")
_TIMES = {
    "start_time": "start_ts",
    "answer_time": "answer_ts",
    "end_time": "end_ts",
    "created_at": "created_ts",
}


def _value(field: str) -> Any:
    if field not in _TIMES:
        return calls.c[field]
    # NULL stays NULL through every step.
    text = cast(func.timezone(_UTC, func.to_timestamp(calls.c[_TIMES[field]])), String)
    if field == "created_at":  # domain.call.laravel_timestamp
        return text.label(field)
    return (func.replace(text, _SPACE, _T, type_=String) + _OFFSET).label(field)  # domain.call.iso


ITEM_VALUES = tuple(_value(field) for field in API_FIELDS)
