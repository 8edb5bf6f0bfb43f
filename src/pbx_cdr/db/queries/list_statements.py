"""A list's statements: one page and the exact total of its window, composed from the two.

Every list (``call_list.py``, ``phone_list.py``) is made of a total (a scalar) and its page's ids (a
select of ``id``); :func:`compose` makes the statements the two databases run from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, Select, bindparam, case, select, true

from pbx_cdr.db.queries.item_json import ITEM_JSON
from pbx_cdr.db.queries.item_values import ITEM_VALUES
from pbx_cdr.db.tables import calls
from pbx_cdr.domain.call import API_FIELDS

ORDER = (calls.c.start_ts.desc(), calls.c.id.desc())
LIMIT = bindparam("limit", type_=Integer)
OFFSET = bindparam("offset", type_=Integer)


@dataclass(frozen=True)
class Statements:
    """One list, two ways: ``combined`` (PostgreSQL), or ``total`` then ``page`` (SQLite)."""

    combined: Select[Any]
    total: Select[Any]
    page: Select[Any]


def compose(
    total: Any, ids: Select[Any], offset: Any, skip: Any = None, rows_where: list[Any] | None = None
) -> Statements:
    """The list from its total (a scalar) and its page's ids (a select of ``id``, limited).

    ``combined`` is one statement, hence one snapshot and one round trip: the page's rows in order,
    each with the total as its last column, or one row of NULLs and the total when the page is
    empty; a page that starts past the total is never read (the ids' scan carries ``total >
    offset``, which the database checks once, before the scan). SQLite, with no round trips to
    save, runs the plainer ``total`` and ``page`` in one read transaction instead: the same plans,
    without the guard's extra evaluation of the total.

    ``skip``, when given, is the ids' OFFSET (a located deep page's), evaluated only when the page
    is within the total. ``rows_where``, when given (a first page of the window, offset 0), makes
    ``combined`` read its rows straight from the index that ``ids`` scans, in its order: at 10M
    calls, 206 buffers (50 ids, then 50 primary-key lookups) became 55, 345-370 -> 275 µs of
    PostgreSQL's CPU a list. A first page needs no guard (an empty window's scan finds nothing at
    once), so ``t`` is read once and PostgreSQL folds it into the statement. Further pages keep the
    ids: an OFFSET over table rows reads each one it skips.
    """
    t = select(total.label("total")).cte("t")
    within_total = select(t.c.total).scalar_subquery() > offset
    rows = select(*ITEM_VALUES)
    if rows_where is not None:
        p = rows.where(*rows_where).order_by(*ORDER).limit(LIMIT).subquery("p")
    else:
        guarded = ids if skip is None else ids.offset(case((within_total, skip), else_=0))
        within = guarded.where(within_total).subquery("ids")
        p = rows.join_from(within, calls, calls.c.id == within.c.id).order_by(*ORDER).subquery("p")
    # No ORDER BY of its own: a join on nothing (``ON true``) can only be a nested loop, and its
    # outer side is ``t``'s one row, so the rows come out in ``p``'s order. Sorting them again had
    # cost PostgreSQL 20-25 µs a list (``tests/api/test_list_plans.py`` holds the plan's shape).
    combined = select(*(p.c[field] for field in API_FIELDS), t.c.total).select_from(t.outerjoin(p, true()))
    plain = (ids if skip is None else ids.offset(skip)).subquery("ids")
    return Statements(combined, select(total.label("total")), item_page(plain))


def item_page(ids: Any) -> Select[Any]:
    """SQLite's page from a subquery of its ids: each item's JSON, which SQLite writes itself
    (``item_json``: cheaper than rendering rows in Python), in the list's order."""
    return select(ITEM_JSON).join_from(ids, calls, calls.c.id == ids.c.id).order_by(*ORDER)
