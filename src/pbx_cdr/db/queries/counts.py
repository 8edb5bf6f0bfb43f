"""Per-account, per-UTC-hour, per-direction call counts, kept on every write.

An exact total of a window is the sum of the whole hours inside it plus an exact count of the two
partial hours at its edges (none when the window starts on a whole hour, as it does in every
timezone with a whole-hour offset).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Select,
    bindparam,
    cast,
    func,
    literal,
    select,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite

from pbx_cdr.db.tables import call_hour_counts, calls

HOUR = 3600


def _hour_range(low: Any, high: Any, direction: Any | None) -> list[Any]:
    """The account's hour counts with ``hour`` in ``[low, high)`` (and ``direction`` when given)."""
    where = [
        call_hour_counts.c.account_id == bindparam("account_id"),
        call_hour_counts.c.hour >= low,
        call_hour_counts.c.hour < high,
    ]
    if direction is not None:
        where.append(call_hour_counts.c.direction == direction)
    return where


def hours_sum(low: Any, high: Any, direction: Any | None) -> Select[Any]:
    """The calls counted in the whole hours ``[low, high)`` (SQL expressions or bind parameters)."""
    return select(func.coalesce(func.sum(call_hour_counts.c.n), 0)).where(*_hour_range(low, high, direction))


def rows_count(low: Any, high: Any, direction: Any | None) -> Select[Any]:
    """The account's calls with ``start_ts`` in ``[low, high)``, counted row by row."""
    where = [calls.c.account_id == bindparam("account_id"), calls.c.start_ts >= low, calls.c.start_ts < high]
    if direction is not None:
        where.append(calls.c.direction == direction)
    return select(func.count()).select_from(calls).where(*where)


# Built once, with bind parameters: they run on every list request, and building a statement cost
# more than SQLite took to run it. Indexed by whether a direction is given.
_DIRECTIONS: tuple[Any, Any] = (None, bindparam("direction"))
_HOURS_SUM = tuple(hours_sum(bindparam("low"), bindparam("high"), d) for d in _DIRECTIONS)
_ROWS_COUNT = tuple(rows_count(bindparam("low"), bindparam("high"), d) for d in _DIRECTIONS)


def _add_counts(dialect: Any) -> Any:
    stmt = dialect.insert(call_hour_counts)
    return stmt.on_conflict_do_update(
        index_elements=["account_id", "hour", "direction"],
        set_={"n": call_hour_counts.c.n + stmt.excluded.n},
    )


# Built once per dialect: building it (``excluded`` makes a column collection) cost more than the
# write itself, on every ingest.
_ADD_COUNTS = {"sqlite": _add_counts(sqlite), "postgresql": _add_counts(postgresql)}


def adjust(conn: Connection, account_id: int, deltas: Counter[tuple[int, str]]) -> None:
    """Add ``deltas[(hour, direction)]`` to the counts (negative for removed calls).

    In (hour, direction) order, so concurrent writers take the count rows' locks in one order.
    """
    rows = [
        {"account_id": account_id, "hour": hour, "direction": direction, "n": n}
        for (hour, direction), n in sorted(deltas.items())
        if n
    ]
    if rows:
        conn.execute(_ADD_COUNTS[conn.dialect.name], rows)


def hour_deltas(items: Iterable[tuple[int, str]], sign: int = 1) -> Counter[tuple[int, str]]:
    """Count (start_ts, direction) pairs into (hour, direction) buckets."""
    out: Counter[tuple[int, str]] = Counter()
    for start_ts, direction in items:
        out[(start_ts // HOUR, direction)] += sign
    return out


def window_total(conn: Connection, account_id: int, start_ts: int, end_ts: int, direction: str | None) -> int:
    """Exact number of the account's calls with ``start_ts`` in ``[start_ts, end_ts)``."""
    first_whole = -(-start_ts // HOUR)  # the first hour that starts inside the window
    end_whole = end_ts // HOUR  # the first hour that is not whole inside the window
    total = 0
    if first_whole < end_whole:
        params = {"account_id": account_id, "low": first_whole, "high": end_whole, "direction": direction}
        total += conn.execute(_HOURS_SUM[bool(direction)], params).scalar_one()
        edges = [(start_ts, first_whole * HOUR), (end_whole * HOUR, end_ts)]
    else:
        edges = [(start_ts, end_ts)]
    for low, high in edges:
        if low < high:
            total += _count_rows(conn, account_id, low, high, direction)
    return int(total)


# Offsets past every whole hour land in the window's first, partial hour (or past the window's end,
# where the page is empty anyway): that segment takes any remainder.
_REST = 2**62


def locate_segment(
    top_low: Any, high: Any, bottom_high: Any, direction: Any | None, offset: Any, *, top: bool
) -> Any:
    """Where row ``offset`` (newest first) of a window lies, as a one-row subquery ``(high, skip)``.

    The window is cut into segments, newest first: the partial hour at its end ``[top_low, high)``
    when ``top``, each whole hour from the counts, then the partial hour at its start, which ends at
    ``bottom_high``. Exactly ``offset - skip`` of the window's calls start at or after ``high``, so
    row ``offset`` is row ``skip`` of the window cut at ``high``; ``skip`` is less than a segment's
    calls. The hours are walked from the newest with a running sum, over the counts alone.
    """
    where = _hour_range(bindparam("first_hour"), bindparam("end_hour"), direction)
    upper = (cast(call_hour_counts.c.hour, BigInteger) + 1) * HOUR
    segments: list[Any] = [
        select(upper.label("upper"), func.sum(call_hour_counts.c.n).label("n")).where(*where).group_by(upper)
    ]
    if top:
        top_n = rows_count(top_low, high, direction).scalar_subquery()
        segments.append(select(high.label("upper"), top_n.label("n")))
    segments.append(select(bottom_high.label("upper"), literal(_REST).label("n")))
    seg = union_all(*segments).subquery("seg")
    run = select(
        seg.c.upper, seg.c.n, func.sum(seg.c.n).over(order_by=seg.c.upper.desc()).label("through")
    ).subquery("run")
    return (
        select(run.c.upper.label("high"), (offset - (run.c.through - run.c.n)).label("skip"))
        .where(run.c.through > offset)
        .order_by(run.c.upper.desc())
        .limit(1)
        .cte("loc")
    )


def _newest_first(unit: int) -> tuple[Any, Any]:
    """Calls per ``unit`` hours of the whole-hour range ``[low, high)``, newest first: (bucket, n).

    Per hour, the sums stream in the covering index's order (no sort); days group those hourly sums,
    so SQLite sorts a month's 720 hours, not their 2,900 (hour, direction) rows. Indexed by whether a
    direction is given."""
    statements = []
    for direction in _DIRECTIONS:
        where = _hour_range(bindparam("low"), bindparam("high"), direction)
        hours = select(call_hour_counts.c.hour, func.sum(call_hour_counts.c.n).label("n")).where(*where)
        if unit == 1:
            statements.append(
                hours.group_by(call_hour_counts.c.hour).order_by(call_hour_counts.c.hour.desc())
            )
            continue
        per_hour = hours.group_by(call_hour_counts.c.hour).subquery()
        bucket = per_hour.c.hour // unit
        statements.append(select(bucket, func.sum(per_hour.c.n)).group_by(bucket).order_by(bucket.desc()))
    return statements[0], statements[1]


_DAYS_DESC = _newest_first(24)
_HOURS_DESC = _newest_first(1)


def locate(
    conn: Connection, account_id: int, start_ts: int, end_ts: int, direction: str | None, offset: int
) -> tuple[int, int, int]:
    """The window's exact total, and where row ``offset`` (newest first) lies: ``(total, high, skip)``.

    ``high`` and ``skip`` as :func:`locate_segment` says them, found here in Python: the day sums
    (which also give the total), then the hours of the one day that holds the row. For SQLite, where
    reading rows costs no round trip and its window functions were the slow part (4 ms for a month of
    hours at 10M calls). Run it inside one read transaction: the days and hours must agree.
    """
    first_whole = -(-start_ts // HOUR)
    end_whole = end_ts // HOUR
    if first_whole >= end_whole:  # no whole hour inside: nothing to skip by
        return _count_rows(conn, account_id, start_ts, end_ts, direction), end_ts, offset
    top = (
        _count_rows(conn, account_id, end_whole * HOUR, end_ts, direction) if end_whole * HOUR < end_ts else 0
    )
    bottom = (
        _count_rows(conn, account_id, start_ts, first_whole * HOUR, direction)
        if start_ts < first_whole * HOUR
        else 0
    )
    params = {"account_id": account_id, "low": first_whole, "high": end_whole, "direction": direction}
    days = [(int(day), int(n)) for day, n in conn.execute(_DAYS_DESC[bool(direction)], params)]
    total = top + sum(n for _, n in days) + bottom
    if offset < top:
        return total, end_ts, offset
    remaining = offset - top
    for day, n in days:
        if remaining >= n:
            remaining -= n
            continue
        low, high = max(first_whole, day * 24), min(end_whole, (day + 1) * 24)
        for hour, m in conn.execute(_HOURS_DESC[bool(direction)], {**params, "low": low, "high": high}):
            if remaining < m:
                return total, (int(hour) + 1) * HOUR, remaining
            remaining -= int(m)
        return total, low * HOUR, remaining  # not reached while the hours add up to their day
    # Past every whole hour: in the partial hour at the window's start (or past the window's end).
    return total, first_whole * HOUR, remaining


def _count_rows(conn: Connection, account_id: int, low: int, high: int, direction: str | None) -> int:
    params = {"account_id": account_id, "low": low, "high": high, "direction": direction}
    return int(conn.execute(_ROWS_COUNT[bool(direction)], params).scalar_one())


def rebuild(conn: Connection, account_id: int) -> None:
    """Recompute an account's counts from its calls (repair, or after a bulk load)."""
    conn.execute(call_hour_counts.delete().where(call_hour_counts.c.account_id == account_id))
    hour = calls.c.start_ts // HOUR
    rows = conn.execute(
        select(hour.label("hour"), calls.c.direction, func.count().label("n"))
        .where(calls.c.account_id == account_id)
        .group_by(hour, calls.c.direction)
    ).all()
    if rows:
        conn.execute(
            call_hour_counts.insert(),
            [
                {"account_id": account_id, "hour": int(r.hour), "direction": r.direction, "n": r.n}
                for r in rows
            ],
        )
