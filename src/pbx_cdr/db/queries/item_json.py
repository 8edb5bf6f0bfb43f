"""A call's API item rendered by SQLite itself: one JSON text per row.

The list's page on SQLite selects this one column instead of 21: SQLite decodes the row and writes the
JSON in C (``json_object``, times by ``strftime``), so Python never builds the 21 values, the item
dict and the datetimes of each row, and the page's JSON is the rows' texts joined. At 10M calls this
took a small account's 50-row page from about 380 to 235 µs of CPU (the page's read included).

PostgreSQL keeps the Python rendering (``api/list_items.py``): there ``row_to_json`` moved more CPU
into the server than it saved in the client, on the same cores.

The item is the definition's (``domain.call.api_item``), field for field and in its order:
``tests/api/test_item_json.py`` holds the parsed JSON equal to ``api_item``'s on random rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, literal_column

from pbx_cdr.db.tables import calls
from pbx_cdr.domain.call import API_FIELDS

# SQL literals, not parameters, like the field names: the statement's text never changes.
_ISO: Any = literal_column("'%Y-%m-%dT%H:%M:%S+00:00'")  # domain.call.iso: whole seconds, UTC
_LARAVEL: Any = literal_column("'%Y-%m-%d %H:%M:%S'")  # domain.call.laravel_timestamp
_EPOCH: Any = literal_column("'unixepoch'")
_TIMES = {"start_time": "start_ts", "answer_time": "answer_ts", "end_time": "end_ts"}


def _value(field: str) -> Any:
    if field in _TIMES:  # NULL stays NULL: strftime of NULL is NULL, written as null
        return func.strftime(_ISO, calls.c[_TIMES[field]], _EPOCH)
    if field == "created_at":
        return func.strftime(_LARAVEL, calls.c.created_ts, _EPOCH)
    if field == "recording_available":  # a JSON boolean, not SQLite's 0/1
        return func.json(
            case((calls.c.recording_available, literal_column("'true'")), else_=literal_column("'false'"))
        )
    return calls.c[field]


def _item() -> Any:
    arguments: list[Any] = []
    for field in API_FIELDS:
        arguments += [literal_column(f"'{field}'"), _value(field)]
    return func.json_object(*arguments)


ITEM_JSON = _item().label("item")
