"""The list of calls: one page, newest first, and the exact total of the filtered window.

Totals of the unfiltered and direction-only window come from the hour counts (``counts.py``); deep
pages are located from them; extension and phone filters run as index-only plans over their
candidate ids. ``tests/api/test_list_consistency.py`` holds every shortcut equal to the naive query.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Connection,
    Integer,
    and_,
    bindparam,
    func,
    select,
    text,
    union,
    union_all,
)

from pbx_cdr.db.queries import counts
from pbx_cdr.db.queries.calls import API_COLUMNS
from pbx_cdr.db.tables import AGENT_ONLY, calls
from pbx_cdr.domain.listing import ListQuery
from pbx_cdr.domain.phone import key_prefix_range

# Below this offset a plain OFFSET is as cheap as locating the hour from the counts.
DEEP_OFFSET = 1000
_ORDER = (calls.c.start_ts.desc(), calls.c.id.desc())
# The unfiltered page, without and with a direction: built once (building it cost more than SQLite
# took to run it), bound per request.
_WINDOW = (
    calls.c.account_id == bindparam("account_id"),
    calls.c.start_ts >= bindparam("low"),
    calls.c.start_ts < bindparam("high"),
)


def _window_page(*where: Any) -> Any:
    """The page's ids from the covering window index (an OFFSET skips index entries, not table rows:
    up to an hour's calls, which at 10M calls cost SQLite 4 ms of row reads), then their rows."""
    ids = (
        select(calls.c.id)
        .where(*where)
        .order_by(*_ORDER)
        .limit(bindparam("limit", type_=Integer))
        .offset(bindparam("offset", type_=Integer))
        .subquery()
    )
    return select(*API_COLUMNS).join_from(ids, calls, calls.c.id == ids.c.id).order_by(*_ORDER)


_WINDOW_PAGE = (_window_page(*_WINDOW), _window_page(*_WINDOW, calls.c.direction == bindparam("direction")))


def _snapshot(conn: Connection) -> None:
    """On PostgreSQL, one snapshot for the total and the page (READ COMMITTED takes one per statement).

    Only when the transaction has run nothing yet: afterwards the isolation level can no longer change,
    and the caller's own choice stands.
    """
    if conn.dialect.name != "postgresql":
        return
    raw = conn.connection.dbapi_connection
    info = getattr(raw, "info", None)
    # psycopg prepares a statement after its fifth run, and PostgreSQL then may switch to a generic
    # plan made without the LIMIT and the filter values: for the extension page that plan walked the
    # window in time order (10 ms instead of 0.5 ms at 1M calls). Custom plans only, for this list.
    custom = "SET LOCAL plan_cache_mode = force_custom_plan"
    if info is not None and info.transaction_status == 0:  # psycopg's IDLE: nothing sent yet
        conn.exec_driver_sql(f"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY; {custom}")
    else:
        conn.exec_driver_sql(custom)


def _branches(account_id: int, q: ListQuery, low: int, high: int) -> tuple[list[Any], bool]:
    """The filter as conditions each served by one index, and whether they are pairwise disjoint.

    ``extension`` is the extension column, or the agent column where it differs from the extension
    (the partial index ``ix_calls_agent_only``): disjoint halves. A phone suffix is a prefix range on
    either search key; a call can match both.
    """
    window = [calls.c.account_id == account_id, calls.c.start_ts >= low, calls.c.start_ts < high]
    if q.direction:
        window.append(calls.c.direction == q.direction)
    ext_parts: list[list[Any]] = [[]]
    if q.extension is not None:
        ext_parts = [
            [calls.c.extension_number == q.extension],
            [calls.c.agent_extension == q.extension, text(AGENT_ONLY)],
        ]
    phone_parts: list[list[Any]] = [[]]
    if q.phone_suffix is not None:
        low_key, high_key = key_prefix_range(q.phone_suffix)
        phone_parts = [
            [calls.c.caller_key >= low_key, calls.c.caller_key < high_key],
            [calls.c.destination_key >= low_key, calls.c.destination_key < high_key],
        ]
    branches = [and_(*window, *e, *p) for e in ext_parts for p in phone_parts]
    return branches, q.phone_suffix is None


def _count(conn: Connection, branches: list[Any], disjoint: bool) -> int:
    if disjoint:  # a sum of index counts; no set of ids is ever built
        return sum(
            int(conn.execute(select(func.count()).select_from(calls).where(b)).scalar_one()) for b in branches
        )
    ids = union(*(select(calls.c.id).where(b) for b in branches)).subquery()
    return int(conn.execute(select(func.count()).select_from(ids)).scalar_one())


def _filtered_page(conn: Connection, branches: list[Any], disjoint: bool, q: ListQuery) -> list[Any]:
    """The page's ids from the branches' index scans, then their rows.

    Disjoint extension halves are each read in index order, only their newest ``offset + per_page``
    ids, and merged. Phone branches are key ranges, in no time order: their (few) ids are gathered
    whole, so no planner is tempted to walk the whole window in time order instead.
    """
    if disjoint:
        reach = q.offset + q.per_page
        arms = [
            select(calls.c.id, calls.c.start_ts).where(b).order_by(*_ORDER).limit(reach).subquery().select()
            for b in branches
        ]
        merged = union_all(*arms).subquery()
    else:
        merged = union(*(select(calls.c.id, calls.c.start_ts).where(b) for b in branches)).subquery()
    top = (
        select(merged.c.id)
        .order_by(merged.c.start_ts.desc(), merged.c.id.desc())
        .limit(q.per_page)
        .offset(q.offset)
        .subquery()
    )
    page = select(*API_COLUMNS).join_from(top, calls, calls.c.id == top.c.id).order_by(*_ORDER)
    return list(conn.execute(page).all())


def list_calls(
    conn: Connection, account_id: int, q: ListQuery, *, deep_offset: int = DEEP_OFFSET
) -> tuple[list[Any], int]:
    """One page, newest first (ties by id), and the exact total of the whole filtered window.

    Without ``extension`` or ``phone`` the total comes from the hour counts, and a deep page starts
    at the hour the counts locate, so no query ever skips more than an hour's calls. With them, the
    total counts index entries and a page merges ordered index scans.
    """
    _snapshot(conn)
    if q.extension is None and q.phone_suffix is None:
        total = counts.window_total(conn, account_id, q.start_ts, q.end_ts, q.direction)
        if q.offset >= total:
            return [], total
        high, skip = q.end_ts, q.offset
        if q.offset >= deep_offset:
            high, skip = counts.locate(conn, account_id, q.start_ts, q.end_ts, q.direction, q.offset)
        params = {
            "account_id": account_id,
            "low": q.start_ts,
            "high": high,
            "direction": q.direction,
            "limit": q.per_page,
            "offset": skip,
        }
        return list(conn.execute(_WINDOW_PAGE[bool(q.direction)], params).all()), total

    branches, disjoint = _branches(account_id, q, q.start_ts, q.end_ts)
    total = _count(conn, branches, disjoint)
    if q.offset >= total:
        return [], total
    return _filtered_page(conn, branches, disjoint, q), total
