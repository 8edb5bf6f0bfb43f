"""The list of calls: one page, newest first, and the exact total of the filtered window.

On PostgreSQL each list is **one statement** that returns the page's rows, each with the window's
total as its last column (one row of NULLs and the total when the page is empty). One statement is one
snapshot, so the total and the page always agree with no transaction to open, and a list is a single
round trip; the API awaits it on the event loop (:func:`list_calls_async`). SQLite, with no round
trips to save, runs the same total and page as two statements in one read transaction
(:func:`reader`), writes each item's JSON itself (``item_json.py``), and locates deep pages in Python
(``counts.locate``).

Totals of the unfiltered and direction-only window come from the day and hour counts
(``counts.py``); deep pages start at the hour the counts locate; extension filters run as
index-only plans over their candidate ids; a phone filter alone sums the number counts of the
account's own numbers and gathers the rest (``phone_list.py``). ``tests/api/test_list_consistency.py``
holds every shortcut equal to the naive query.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    Integer,
    Select,
    and_,
    bindparam,
    func,
    literal,
    or_,
    select,
    text,
    union_all,
)

from pbx_cdr.db import engine as db
from pbx_cdr.db.driver import DriverReads
from pbx_cdr.db.queries import counts, phone_list
from pbx_cdr.db.queries.list_statements import LIMIT, OFFSET, ORDER, Statements, compose
from pbx_cdr.db.tables import AGENT_ONLY, calls
from pbx_cdr.domain.call import API_FIELDS
from pbx_cdr.domain.listing import ListQuery
from pbx_cdr.domain.phone import key_prefix_range

if TYPE_CHECKING:
    from pbx_cdr.db.async_pg import AsyncReader

# Below this offset a plain OFFSET is as cheap as locating the hour from the counts.
DEEP_OFFSET = 1000
HOUR = counts.HOUR
_UUID = API_FIELDS.index("uuid")


@dataclass(frozen=True)
class ListPage:
    """A page, newest first, and the exact total of the filtered window.

    On SQLite ``items`` holds each item's JSON as the database wrote it (``item_json``) and ``rows``
    is empty; on PostgreSQL ``items`` is None and ``rows`` are rows of the item's values
    (``item_values``, then the total), rendered by ``api/list_items.py``.
    """

    total: int
    rows: list[Any]
    items: list[str] | None = None

    def uuids(self) -> list[str]:
        if self.items is None:
            return [r[_UUID] for r in self.rows]
        return [orjson.loads(item)["uuid"] for item in self.items]


def _sqlite_page(reads: DriverReads, page: Select[Any], params: dict[str, Any], total: int) -> ListPage:
    return ListPage(total, [], reads.scalars(page, params))


@lru_cache(maxsize=64)
def _window_statement(
    direction: bool, top: bool, bottom: bool, whole: bool, deep: bool, first: bool = False
) -> Statements:
    """The unfiltered (or direction-only) list, built once per shape and bound per request.

    ``top``/``bottom``: the window ends/starts inside an hour (half-hour zones); ``whole``: it holds
    at least one whole hour; ``deep``: the page is located from the counts; ``first``: the page
    starts at the window's newest call (PostgreSQL reads its rows straight from the window index,
    see :func:`compose`). Parameters: ``account_id``,
    ``low``/``high`` (the window), ``first_hour``/``end_hour`` (its whole hours) and
    ``bottom_high``/``top_low`` (where they start and end, in seconds), ``direction``, ``limit``, ``offset``.
    """
    dir_: Any = bindparam("direction") if direction else None
    high = bindparam("high", type_=BigInteger)
    low = bindparam("low", type_=BigInteger)
    top_low = bindparam("top_low", type_=BigInteger)  # end_hour * HOUR
    bottom_high = bindparam("bottom_high", type_=BigInteger)  # first_hour * HOUR
    parts = []
    if whole:
        parts.append(counts.hours_sum(bindparam("first_hour"), bindparam("end_hour"), dir_))
        if top:
            parts.append(counts.rows_count(top_low, high, dir_))
        if bottom:
            parts.append(counts.rows_count(low, bottom_high, dir_))
    else:
        parts.append(counts.rows_count(low, high, dir_))
    total: Any = parts[0].scalar_subquery()
    for part in parts[1:]:
        total = total + part.scalar_subquery()

    where = [calls.c.account_id == bindparam("account_id"), calls.c.start_ts >= low]
    if direction:
        where.append(calls.c.direction == dir_)
    skip: Any = None
    if deep and whole:
        loc = counts.locate_segment(top_low, high, bottom_high, dir_, OFFSET, top=top)
        where.append(calls.c.start_ts < select(loc.c.high).scalar_subquery())
        skip = select(loc.c.skip).scalar_subquery()
    else:
        where.append(calls.c.start_ts < high)
    # The page's ids from the covering window index (an OFFSET skips index entries, not table
    # rows: at 10M calls, reading each skipped row cost SQLite 4 ms), then their rows.
    ids = select(calls.c.id).where(*where).order_by(*ORDER).limit(LIMIT).offset(OFFSET)
    return compose(total, ids, OFFSET, skip, where if first and skip is None else None)


def _branches(direction: bool, phone: bool) -> list[Any]:
    """The extension filter as conditions each served by one index (bound: ``account_id``, ``low``,
    ``high``, ``direction``, ``extension``, ``low_key``, ``high_key``).

    ``extension`` is the extension column, or the agent column where it differs from the extension
    (the partial index ``ix_calls_agent_only``): disjoint halves. A phone suffix is a prefix range on
    either search key, checked on each half's calls (a phone filter alone is ``phone_list.py``'s).
    """
    window = [
        calls.c.account_id == bindparam("account_id"),
        calls.c.start_ts >= bindparam("low", type_=BigInteger),
        calls.c.start_ts < bindparam("high", type_=BigInteger),
    ]
    if direction:
        window.append(calls.c.direction == bindparam("direction"))
    ext: Any = bindparam("extension")
    ext_parts = [
        [calls.c.extension_number == ext],
        [calls.c.agent_extension == ext, text(AGENT_ONLY)],
    ]
    phone_parts: list[list[Any]] = [[]]
    if phone:
        low_key: Any = bindparam("low_key")
        high_key: Any = bindparam("high_key")
        # Each extension half's calls are read once and both keys checked on them: a prepared
        # statement's generic plan reads them from the extension's index whatever the number.
        phone_parts = [
            [
                or_(
                    and_(calls.c.caller_key >= low_key, calls.c.caller_key < high_key),
                    and_(calls.c.destination_key >= low_key, calls.c.destination_key < high_key),
                )
            ]
        ]
    return [and_(*window, *e, *p) for e in ext_parts for p in phone_parts]


@lru_cache(maxsize=16)
def _filtered_statement(direction: bool, phone: bool) -> Statements:
    """The list with ``extension``, and maybe ``phone``: index counts and merged index scans.

    Built once per shape (building it cost several times what SQLite took to run it), bound per
    request; ``reach`` is ``offset + per_page``. Disjoint extension halves: the total is a sum of
    index-only counts (no set of ids is ever built) and each half is read in index order, only its
    newest ``reach`` ids, then merged. With a phone filter too, the halves' calls that match either
    key are gathered once, counted and sorted, so no planner is tempted to walk the whole window in
    time order instead.
    """
    branches = _branches(direction, phone)
    if not phone:
        total: Any = literal(0)
        for b in branches:
            total = total + select(func.count()).select_from(calls).where(b).scalar_subquery()
        reach = bindparam("reach", type_=Integer)
        # Each half read in its index's own order: (account, extension or agent, start_ts, id).
        arms = [
            select(calls.c.id, calls.c.start_ts).where(b).order_by(*ORDER).limit(reach).subquery().select()
            for b in branches
        ]
        found: Any = union_all(*arms).subquery()
    else:
        # The halves are disjoint, and each checks both keys: no call is found twice.
        found = union_all(*(select(calls.c.id, calls.c.start_ts).where(b) for b in branches)).cte("found")
        total = select(func.count()).select_from(found).scalar_subquery()
    ids = select(found.c.id).order_by(found.c.start_ts.desc(), found.c.id.desc()).limit(LIMIT).offset(OFFSET)
    return compose(total, ids, OFFSET)


def _located_page(reads: DriverReads, q: ListQuery, params: dict[str, Any]) -> ListPage:
    """A deep page on SQLite: the total and the hour located in Python, then the page inside it."""
    account_id = params["account_id"]
    total, high, skip = counts.locate(reads, account_id, q.start_ts, q.end_ts, q.direction, q.offset)
    if q.offset >= total:
        return ListPage(total, [], [])
    shallow = _window_statement(bool(q.direction), False, False, True, False)
    return _sqlite_page(reads, shallow.page, {**params, "high": high, "offset": skip}, total)


def _sqlite_phone_page(
    reads: DriverReads, statements: phone_list.PhoneStatements, q: ListQuery, params: dict[str, Any]
) -> ListPage:
    """A phone list on SQLite: where its page lies, then the page (``phone_list.py``)."""
    total, lower, upper, skip, keys = reads.rows(statements.located, params)[0]
    if q.offset >= total:
        return ListPage(int(total), [], [])
    page, keyed = statements.sqlite_page(orjson.loads(keys))
    bounds = {**params, "lower": lower, "upper": upper, "skip": skip, **keyed}
    return _sqlite_page(reads, page, bounds, int(total))


def reader(engine: Engine) -> AbstractContextManager[Connection | DriverReads]:
    """The read :func:`list_calls` needs: a bare statement on PostgreSQL (one statement, one
    snapshot); on SQLite a read transaction straight through the driver, whose list is a total and
    a page (and a located hour)."""
    return db.driver_snapshot(engine) if db.is_sqlite(engine) else db.read_one(engine)


def list_calls(
    conn: Connection | DriverReads, account_id: int, q: ListQuery, *, deep_offset: int = DEEP_OFFSET
) -> ListPage:
    """One page, newest first (ties by id), and the exact total of the whole filtered window.

    See :class:`ListPage` for the page's two forms. Without ``extension`` or ``phone`` the total
    comes from the day and hour counts, and a page from ``deep_offset`` on starts at the hour the counts
    locate, so no query ever skips more than an hour's calls. The statements run straight through
    the driver (``db/driver.py``), in ``conn``'s transaction, as :func:`list_calls_async` runs them.
    """
    statements, params, located = _prepare(account_id, q, deep_offset)
    if isinstance(conn, Connection):
        conn = DriverReads.of(conn)
    if conn.dialect.name != "sqlite":
        return _pg_page(conn.rows(statements.combined, params))
    if isinstance(statements, phone_list.PhoneStatements):
        return _sqlite_phone_page(conn, statements, q, params)
    if located:
        return _located_page(conn, q, params)
    total = int(conn.scalar(statements.total, params))
    if q.offset >= total:
        return ListPage(total, [], [])
    return _sqlite_page(conn, statements.page, params, total)


async def list_calls_async(reader: AsyncReader, account_id: int, q: ListQuery) -> ListPage:
    """:func:`list_calls` on PostgreSQL, awaited on the event loop: the same one statement."""
    statements, params, _ = _prepare(account_id, q, DEEP_OFFSET)
    return _pg_page(await reader.all_rows(statements.combined, params))


def _pg_page(rows: Sequence[Any]) -> ListPage:
    """The combined statement's rows: the page's rows, each ending with the total, or one row of
    NULLs and the total."""
    total = int(rows[0][-1])
    return ListPage(total, [] if rows[0][0] is None else list(rows))


def _prepare(
    account_id: int, q: ListQuery, deep_offset: int
) -> tuple[Statements | phone_list.PhoneStatements, dict[str, Any], bool]:
    """The list's statements and parameters, and whether SQLite locates the page from the counts."""
    first_hour, end_hour = counts.whole_hours(q.start_ts, q.end_ts)
    low_key, high_key = key_prefix_range(q.phone_suffix) if q.phone_suffix is not None else (None, None)
    # Every shape's parameters; each statement binds those it names.
    params = {
        "account_id": account_id,
        "low": q.start_ts,
        "high": q.end_ts,
        "first_hour": first_hour,
        "end_hour": end_hour,
        "bottom_high": first_hour * HOUR,
        "top_low": max(q.start_ts, end_hour * HOUR),
        "direction": q.direction,
        "extension": q.extension,
        "low_key": low_key,
        "high_key": high_key,
        "reach": q.offset + q.per_page,
        "limit": q.per_page,
        "offset": q.offset,
    }
    whole = first_hour < end_hour
    top, bottom = end_hour * HOUR < q.end_ts, q.start_ts < first_hour * HOUR
    if q.extension is None and q.phone_suffix is None:
        deep = q.offset >= deep_offset
        statement = _window_statement(
            bool(q.direction), whole and top, whole and bottom, whole, deep, q.offset == 0
        )
        return statement, params, deep and whole
    if q.extension is None:
        kind = phone_list.kind_of(q.direction)
        return phone_list.phone_statement(kind, whole, top, bottom and first_hour <= end_hour), params, False
    statement = _filtered_statement(bool(q.direction), q.phone_suffix is not None)
    return statement, params, False
