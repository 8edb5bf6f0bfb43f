"""The list page's items from PostgreSQL's rows, in about half a microsecond each (SQLite writes its
items' JSON itself, ``db/queries/item_json.py``).

:func:`pbx_cdr.domain.call.api_item` is the definition of an item. The rows are the item's values
in its order, already as they are written (``db/queries/item_values.py``: PostgreSQL spells the
times). Each row becomes an :class:`Item`, a ``msgspec`` struct whose fields are the item's, made
from the row's values in C and written by ``msgspec`` with its field names encoded once: at 10M
calls, a small account's 50-row page took 22 µs where a ``dict`` per row written by orjson took 60
(94 when psycopg still made ``datetime`` objects for the times). ``tests/api/test_item_values.py``
holds the bytes equal to ``api_item``'s JSON on random rows stored in PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import orjson

from pbx_cdr.db.queries.call_list import ListPage
from pbx_cdr.domain.call import API_FIELDS

_WIDTH = len(API_FIELDS)

# Untracked by the garbage collector (``gc=False``): an item holds only strings, numbers and None.
Item = msgspec.defstruct("Item", [(name, Any) for name in API_FIELDS], gc=False)
_ENCODER = msgspec.json.Encoder()


def items_json(rows: Sequence[Sequence[Any]]) -> bytes:
    """The JSON array of the items of rows of :data:`~pbx_cdr.db.queries.item_values.ITEM_VALUES`
    (any trailing columns, such as the list's total, are ignored)."""
    return _ENCODER.encode([Item(*row[:_WIDTH]) for row in rows])


def page_data(page: ListPage) -> tuple[int, orjson.Fragment]:
    """The number of items and the page's ``data`` array as JSON, whichever form the page came in:
    items the database already wrote (joined as they are) or rows to render."""
    if page.items is not None:
        return len(page.items), orjson.Fragment("[" + ",".join(page.items) + "]")
    return len(page.rows), orjson.Fragment(items_json(page.rows))
