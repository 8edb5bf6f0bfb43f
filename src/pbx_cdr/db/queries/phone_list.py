"""The list with a phone filter (and no extension): its page and exact total, without gathering every
call that matches.

A phone filter is a suffix: a prefix range on the reversed-digit search keys, matched on the caller's
or the destination's. Some numbers match a large share of an account's calls: the hotline every
inbound call goes to matched 510,080 of the biggest account's calls in 30 days at 10M calls, and
gathering, counting and sorting them took 300-370 ms a list. So the matches are split in two:

- **counted**: calls of the directions whose destination is one of the account's own numbers
  (``NUMBER_COUNTED``: inbound, to a hotline; local, to an IVR or feature code) whose destination
  matches. ``call_number_counts`` holds them per destination key and UTC hour, so their total is a
  sum of count rows, and the destination index (direction, key, time) gives one number's calls in
  time order. The keys in the suffix's range are found one index probe each (a recursive "next key"
  walk over the counts), as few as the account's own numbers that end so.
- **gathered**: every other match (a caller's number that matches; an outbound or internal call's
  destination), read whole from the two key indexes, as the filter did before. These are customers'
  and extensions' numbers: a few calls to thousands.

The two are disjoint: a gathered call whose destination also matches is left to the counted part. The
total is their sum. For the page, the hours of the window are walked newest first (the counted
calls' hour counts plus the gathered calls' hours): the hours that hold rows ``offset`` to
``offset + per_page`` bound the time range read, so the counted side reads only its page's hours,
whatever the page, and of each key's calls there only the newest ``skip + per_page``, in the
destination index's order. Partial hours at the window's edges (half-hour zones) are counted
exactly. PostgreSQL runs it as one statement, reading the keys' counts and calls key by key; SQLite
as two, then merges one index scan per key for the page (:class:`PhoneStatements`).
``tests/api/test_list_consistency.py`` holds it to the naive query.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    func,
    literal_column,
    not_,
    select,
    true,
    tuple_,
    union_all,
)
from sqlalchemy.ext.compiler import compiles

from pbx_cdr.db.queries.counts import HOUR, greatest, least
from pbx_cdr.db.queries.list_statements import LIMIT, OFFSET, ORDER, compose, item_page
from pbx_cdr.db.tables import NUMBER_COUNTED, call_number_counts, calls
from pbx_cdr.domain.values import DIRECTIONS

_ACCOUNT: Any = bindparam("account_id")
_LOW = bindparam("low", type_=BigInteger)
_HIGH = bindparam("high", type_=BigInteger)
_TOP_LOW = bindparam("top_low", type_=BigInteger)  # max(low, end_hour * HOUR)
_BOTTOM_HIGH = bindparam("bottom_high", type_=BigInteger)  # first_hour * HOUR
_FIRST_HOUR = bindparam("first_hour", type_=BigInteger)
_END_HOUR = bindparam("end_hour", type_=BigInteger)
_LOW_KEY: Any = bindparam("low_key")
_HIGH_KEY: Any = bindparam("high_key")
_DIRECTION: Any = bindparam("direction")
_LOWER = bindparam("lower", type_=BigInteger)
_UPPER = bindparam("upper", type_=BigInteger)
_SKIP = bindparam("skip", type_=Integer)


def _named(names: tuple[str, ...]) -> list[Any]:
    """Directions written into the statement (one plan for all): ``IN ('inbound', 'local')``."""
    return [literal_column(f"'{name}'") for name in names]


class _Unindexed(ColumnElement[Any]):
    """A column SQLite must not look up by an index: ``+column`` there (its documented way to take a
    term out of index selection), the plain column elsewhere."""

    inherit_cache = True

    def __init__(self, column: Any) -> None:
        self.column = column
        self.type = column.type


@compiles(_Unindexed)
def _plain(element: _Unindexed, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.column, **kw))


@compiles(_Unindexed, "sqlite")
def _plus(element: _Unindexed, compiler: Any, **kw: Any) -> str:
    return "+" + str(compiler.process(element.column, **kw))


def kind_of(direction: str | None) -> str:
    """The statement's shape for a direction filter: ``all``, ``counted`` or ``other``."""
    if direction is None:
        return "all"
    return "counted" if direction in NUMBER_COUNTED else "other"


def _keys(counted: list[Any]) -> Any:
    """The destination keys in the filter's range that the account's number counts know, for each
    counted direction: ``(direction, k)``, found a probe each ("the next key after this one")."""
    nc = call_number_counts

    def next_key(direction: Any, after: Any | None) -> Any:
        start = nc.c.number_key >= _LOW_KEY if after is None else nc.c.number_key > after
        where = [nc.c.account_id == _ACCOUNT, nc.c.direction == direction, start, nc.c.number_key < _HIGH_KEY]
        return select(func.min(nc.c.number_key)).where(*where).scalar_subquery()

    if len(counted) > 1:
        each = union_all(*(select(d.label("direction")) for d in counted)).subquery("counted")
        seed = select(each.c.direction, next_key(each.c.direction, None).label("k"))
    else:
        seed = select(counted[0].label("direction"), next_key(counted[0], None).label("k"))
    keys = seed.cte("keys", recursive=True)
    step = select(keys.c.direction, next_key(keys.c.direction, keys.c.k)).where(keys.c.k.is_not(None))
    return keys.union_all(step)


def _counted(kind: str) -> list[Any]:
    """The counted directions a shape reads: both (``all``), the one asked, or none."""
    if kind == "all":
        return _named(NUMBER_COUNTED)
    return [_DIRECTION] if kind == "counted" else []


def _gathered(kind: str) -> Any:
    """The gathered calls of the window, ``(id, start_ts)``: callers that match (but not a counted
    call whose destination matches too), and the destinations of the directions not counted (but
    not a call whose caller matched)."""
    others = tuple(d for d in DIRECTIONS if d not in NUMBER_COUNTED)
    direction = calls.c.direction
    if kind == "all":
        asked: Any = direction.in_(_named(DIRECTIONS))
        gathered_to: Any = direction.in_(_named(others))
    else:
        asked = direction == _DIRECTION
        gathered_to = None if kind == "counted" else asked
    # The gathered calls come from the key indexes; on SQLite, whose planner guesses a range's size,
    # the window's time range would otherwise draw it to the direction's index (every call of the
    # window read: 3.3 s at 10M calls).
    start_ts = _Unindexed(calls.c.start_ts)
    window = [calls.c.account_id == _ACCOUNT, start_ts >= _LOW, start_ts < _HIGH]
    caller_in = and_(calls.c.caller_key >= _LOW_KEY, calls.c.caller_key < _HIGH_KEY)
    to_in = and_(calls.c.destination_key >= _LOW_KEY, calls.c.destination_key < _HIGH_KEY)
    by_caller = [*window, asked, caller_in]
    if kind == "all":
        by_caller.append(not_(and_(direction.in_(_named(NUMBER_COUNTED)), to_in)))
    elif kind == "counted":
        by_caller.append(not_(to_in))
    parts = [select(calls.c.id, calls.c.start_ts).where(*by_caller)]
    if gathered_to is not None:
        parts.append(select(calls.c.id, calls.c.start_ts).where(*window, gathered_to, to_in, not_(caller_in)))
    return (union_all(*parts) if len(parts) > 1 else parts[0]).cte("gathered")


def _gathered_in(gathered: Any, lower: Any, upper: Any) -> Select[Any]:
    """The gathered calls in ``[lower, upper)``. Unindexed: pushed into the gathered calls' scans, a
    time range would draw SQLite to the window's indexes again."""
    at = _Unindexed(gathered.c.start_ts)
    return select(gathered.c.id, gathered.c.start_ts).where(at >= lower, at < upper)


@dataclass(frozen=True)
class PhoneStatements:
    """A phone list, two ways: ``combined`` (PostgreSQL), or ``located`` then ``page`` (SQLite).

    ``located`` gives ``(total, lower, upper, skip, keys)``, ``keys`` the number keys found as a
    JSON array of ``[direction, key]``; ``page`` takes ``lower``, ``upper`` and ``skip`` as
    parameters and writes each item's JSON, as the other lists' SQLite pages do.
    """

    kind: str
    combined: Select[Any]
    located: Select[Any]
    page: Select[Any]

    def sqlite_page(self, keys: list[tuple[str, str]]) -> tuple[Select[Any], dict[str, Any]]:
        """The page for the number keys ``located`` found, and the keys' parameters: one merged
        index scan per key (:func:`keyed_page`), or, past ``MAX_ARMS`` keys, ``page``."""
        if len(keys) > MAX_ARMS:
            return self.page, {}
        bound: dict[str, Any] = {}
        for i, (direction, key) in enumerate(keys):
            bound |= {f"direction_{i}": direction, f"key_{i}": key}
        return keyed_page(self.kind, len(keys)), bound


def _key_hours(keys: Any, *, lateral: bool) -> Select[Any]:
    """The keys' whole hours in ``[first_hour, end_hour)``: ``(hour, n)``.

    ``lateral`` (PostgreSQL): read key by key. A generic plan otherwise joined every number's hours
    of the account to the keys: 25 ms a list for an account with 200 numbers, against 1 ms. The
    ``OFFSET 0`` keeps PostgreSQL from pulling the subquery up into that same join.
    """
    nc = call_number_counts
    where = [nc.c.account_id == _ACCOUNT, nc.c.direction == keys.c.direction, nc.c.number_key == keys.c.k]
    in_window = [nc.c.hour >= _FIRST_HOUR, nc.c.hour < _END_HOUR]
    if not lateral:
        return select(nc.c.hour, nc.c.n).select_from(keys.join(nc, and_(*where))).where(*in_window)
    each = select(nc.c.hour, nc.c.n).where(*where, *in_window).offset(0).lateral("key_hours")
    return select(each.c.hour, each.c.n).select_from(keys.join(each, true()))


def _key_calls(keys: Any, low: Any, high: Any, *, lateral: bool, reach: Any = None) -> Select[Any]:
    """The counted calls of the keys in ``[low, high)``: ``(id, start_ts)``, each key's one range
    of the destination index.

    ``lateral`` (PostgreSQL): key by key, and with ``reach``, only each key's newest ``reach``
    calls, read in the index's order. Otherwise (SQLite) an ``IN`` over the keys: as a join,
    SQLite built a Bloom filter over all of ``calls``.
    """
    where = [calls.c.account_id == _ACCOUNT, calls.c.start_ts >= low, calls.c.start_ts < high]
    if not lateral:
        of_keys = tuple_(calls.c.direction, calls.c.destination_key).in_(select(keys.c.direction, keys.c.k))
        return select(calls.c.id, calls.c.start_ts).where(*where, of_keys)
    each = select(calls.c.id, calls.c.start_ts).where(
        *where, calls.c.direction == keys.c.direction, calls.c.destination_key == keys.c.k
    )
    if reach is not None:
        each = each.order_by(*ORDER).limit(reach)
    found = each.lateral("key_calls")
    return select(found.c.id, found.c.start_ts).select_from(keys.join(found, true()))


def _cut(hours: list[Any]) -> Any:
    """Where the page lies, from the window's hours ``(hour, n)``: one row ``(lower, upper, skip,
    total)``.

    The page's rows lie in ``[lower, upper)``: ``upper`` ends the hour that holds row ``offset``,
    ``lower`` starts the one that holds row ``offset + limit - 1`` (the window's ends if none);
    ``skip`` rows of the page's hours come before it.
    """
    # The running count over the hours, newest first (peers share it: no grouping needed). It only
    # grows as the hours get older, so each cut is a max over the rows: one pass, no sort but the
    # window's.
    every = union_all(*hours).subquery("every")
    through = func.sum(every.c.n).over(order_by=every.c.hour.desc())
    run = select(every.c.hour, through.label("through")).cte("run")
    held = select(
        func.max(run.c.hour).filter(run.c.through > OFFSET).label("upper_hour"),
        func.max(run.c.hour).filter(run.c.through >= OFFSET + LIMIT).label("lower_hour"),
        func.coalesce(func.max(run.c.through).filter(run.c.through <= OFFSET), 0).label("before"),
        func.coalesce(func.max(run.c.through), 0).label("total"),
    ).subquery("held")
    return select(
        greatest(_LOW, func.coalesce(held.c.lower_hour * HOUR, _LOW)).label("lower"),
        least(_HIGH, func.coalesce((held.c.upper_hour + 1) * HOUR, _HIGH)).label("upper"),
        (OFFSET - held.c.before).label("skip"),
        held.c.total,
    ).cte("cut")


@lru_cache(maxsize=32)
def phone_statement(kind: str, whole: bool, top: bool, bottom: bool) -> PhoneStatements:
    """The phone list for a direction shape (:func:`kind_of`), built once and bound per request.

    ``whole``: the window holds whole hours ``[first_hour, end_hour)``; ``top``: it ends inside an
    hour (``[top_low, high)``, counted as hour ``end_hour``); ``bottom``: it starts inside one
    (``[low, bottom_high)``, counted as hour ``first_hour - 1``). Parameters: ``account_id``,
    ``low``, ``high``, ``first_hour``, ``end_hour``, ``top_low``, ``bottom_high``, ``low_key``,
    ``high_key``, ``direction``, ``limit``, ``offset``.
    """
    counted = _counted(kind)
    gathered = _gathered(kind)
    keys = _keys(counted) if counted else None

    def hours(*, lateral: bool) -> list[Any]:
        """The window's hours: each gathered call's, the keys' whole hours, the partial edges'."""
        rows: list[Any] = [
            select((gathered.c.start_ts // HOUR).label("hour"), literal_column("1").label("n"))
        ]
        if keys is None:
            return rows

        def exact(hour: Any, low: Any, high: Any) -> Any:
            n = select(func.count()).select_from(_key_calls(keys, low, high, lateral=lateral).subquery())
            return select(hour.label("hour"), n.scalar_subquery().label("n"))

        if whole:
            rows.append(_key_hours(keys, lateral=lateral))
        if top:
            rows.append(exact(_END_HOUR, _TOP_LOW, _HIGH))
        if bottom:
            rows.append(exact(_FIRST_HOUR - 1, _LOW, _BOTTOM_HIGH))
        return rows

    def in_bounds(lower: Any, upper: Any, *, lateral: bool, reach: Any = None) -> list[Any]:
        """The gathered calls in ``[lower, upper)``, and the keys' (:func:`_key_calls`)."""
        rows = [_gathered_in(gathered, lower, upper)]
        if keys is not None:
            rows.append(_key_calls(keys, lower, upper, lateral=lateral, reach=reach))
        return rows

    # PostgreSQL: one statement; the bounds are evaluated once (init plans), then bound each index
    # range of the page's hours, from which each key gives only the newest ``skip + limit`` calls.
    cut = _cut(hours(lateral=True))
    skip = select(cut.c.skip).scalar_subquery()
    bounds = (select(cut.c.lower).scalar_subquery(), select(cut.c.upper).scalar_subquery())
    on_page = union_all(*in_bounds(*bounds, lateral=True, reach=skip + LIMIT)).subquery("found")
    ids = select(on_page.c.id).order_by(on_page.c.start_ts.desc(), on_page.c.id.desc()).limit(LIMIT)
    combined = compose(select(cut.c.total).scalar_subquery(), ids, OFFSET, skip).combined
    # SQLite: where the page lies (and the keys found), then the page from plain bounds. (In one
    # statement its planner evaluated the bounds' subqueries, and the running count under them,
    # again for every gathered call: 20 ms for 73 calls.)
    cut = _cut(hours(lateral=False))
    found_keys: Any = literal_column("'[]'")
    if keys is not None:
        pair = func.json_array(keys.c.direction, keys.c.k)
        found_keys = select(func.json_group_array(pair)).where(keys.c.k.is_not(None)).scalar_subquery()
    located = select(cut.c.total, cut.c.lower, cut.c.upper, cut.c.skip, found_keys)
    plain = union_all(*in_bounds(_LOWER, _UPPER, lateral=False)).subquery("found")
    ids = select(plain.c.id).order_by(plain.c.start_ts.desc(), plain.c.id.desc()).limit(LIMIT)
    page = compose(literal_column("0"), ids, OFFSET, _SKIP).page
    return PhoneStatements(kind, combined, located, page)


MAX_ARMS = 16
"""SQLite reads at most this many number keys as index scans of their own (:func:`keyed_page`)."""


@lru_cache(maxsize=64)
def keyed_page(kind: str, arms: int) -> Select[Any]:
    """SQLite's page when the number keys are known: the gathered calls in ``[lower, upper)``, and
    each key's calls there, read from the destination index in its order (direction, key, time).

    SQLite merges the scans (its compound ``ORDER BY``) and stops at the page's last row: a page
    deep in a busy hour reads ``skip + limit`` of the hour's calls, not all of them and a sort
    (0.9 -> 0.14 ms for the biggest account's hotline at 10M calls). Parameters: those of
    ``located``'s page, and ``direction_i`` and ``key_i`` for each key.
    """
    parts = [_gathered_in(_gathered(kind), _LOWER, _UPPER)]
    for i in range(arms):
        parts.append(
            select(calls.c.id, calls.c.start_ts).where(
                calls.c.account_id == _ACCOUNT,
                calls.c.direction == bindparam(f"direction_{i}"),
                calls.c.destination_key == bindparam(f"key_{i}"),
                calls.c.start_ts >= _LOWER,
                calls.c.start_ts < _UPPER,
            )
        )
    newest: tuple[Any, ...] = (literal_column("start_ts").desc(), literal_column("id").desc())
    ids = union_all(*parts).order_by(*newest).limit(LIMIT).offset(_SKIP).subquery("ids")
    return item_page(ids)
