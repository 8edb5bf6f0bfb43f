"""The list page's items from PostgreSQL's rows, in about a microsecond each (SQLite writes its
items' JSON itself, ``db/queries/item_json.py``).

:func:`pbx_cdr.domain.call.api_item` is the definition of an item. The rows are the item's values
in its order (``db/queries/item_values.py``), the times already UTC ``datetime`` objects that
orjson writes in C exactly as ``iso()`` spells them (``OPT_NAIVE_UTC``: ``+00:00``); only
``created_at`` is turned into its Laravel string here. ``tests/api/test_item_values.py`` holds
the JSON equal to ``api_item``'s on random rows stored in PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from pbx_cdr.db.queries.call_list import ListPage
from pbx_cdr.domain.call import API_FIELDS

_CREATED = API_FIELDS.index("created_at")


def list_items(rows: Iterable[Any]) -> list[dict[str, Any]]:
    """The items of rows of :data:`~pbx_cdr.db.queries.item_values.ITEM_VALUES` (any trailing
    columns are ignored); write them with :data:`JSON_OPTIONS`."""
    names = API_FIELDS
    out = []
    for row in rows:
        item = dict(zip(names, row, strict=False))
        item["created_at"] = row[_CREATED].isoformat(" ")  # domain.call.laravel_timestamp
        out.append(item)
    return out


JSON_OPTIONS = orjson.OPT_NAIVE_UTC  # the times are naive UTC datetimes


def page_data(page: ListPage) -> tuple[int, orjson.Fragment]:
    """The number of items and the page's ``data`` array as JSON, whichever form the page came in:
    items the database already wrote (joined as they are) or rows to render."""
    if page.items is not None:
        return len(page.items), orjson.Fragment("[" + ",".join(page.items) + "]")
    return len(page.rows), orjson.Fragment(orjson.dumps(list_items(page.rows), option=JSON_OPTIONS))
