"""Per-account, per-UTC-hour, per-direction call counts, kept on every write.

An exact total of a window is the sum of the whole hours inside it plus an exact count of the two
partial hours at its edges (none when the window starts on a whole hour, as it does in every
timezone with a whole-hour offset).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite

from pbx_cdr.db.tables import call_hour_counts, calls

HOUR = 3600


def _with_direction(table: Table, *where: ColumnElement[bool]) -> tuple[list[Any], list[Any]]:
    """The conditions without and with ``direction = :direction``."""
    return list(where), [*where, table.c.direction == bindparam("direction")]


# Built once, with bind parameters: they run on every list request, and building a statement cost
# more than SQLite took to run it. Indexed by whether a direction is given.
_HOURS_SUM = tuple(
    select(func.coalesce(func.sum(call_hour_counts.c.n), 0)).where(*where)
    for where in _with_direction(
        call_hour_counts,
        call_hour_counts.c.account_id == bindparam("account_id"),
        call_hour_counts.c.hour >= bindparam("low"),
        call_hour_counts.c.hour < bindparam("high"),
    )
)
_ROWS_COUNT = tuple(
    select(func.count()).select_from(calls).where(*where)
    for where in _with_direction(
        calls,
        calls.c.account_id == bindparam("account_id"),
        calls.c.start_ts >= bindparam("low"),
        calls.c.start_ts < bindparam("high"),
    )
)


def adjust(conn: Connection, account_id: int, deltas: Counter[tuple[int, str]]) -> None:
    """Add ``deltas[(hour, direction)]`` to the counts (negative for removed calls)."""
    rows = [
        {"account_id": account_id, "hour": hour, "direction": direction, "n": n}
        for (hour, direction), n in sorted(deltas.items())
        if n
    ]
    if not rows:
        return
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    stmt = dialect.insert(call_hour_counts)
    stmt = stmt.on_conflict_do_update(
        index_elements=["account_id", "hour", "direction"],
        set_={"n": call_hour_counts.c.n + stmt.excluded.n},
    )
    conn.execute(stmt, rows)


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


def locate(
    conn: Connection, account_id: int, start_ts: int, end_ts: int, direction: str | None, offset: int
) -> tuple[int, int]:
    """Where row ``offset`` (newest first) of a window lies: ``(high, skip)``.

    Exactly ``offset - skip`` of the window's calls start at or after ``high``, so row ``offset`` is
    row ``skip`` of ``[start_ts, high)``; ``skip`` is less than an hour's calls. The hours are walked
    from the newest, in SQL, over the counts alone.
    """
    first_whole = -(-start_ts // HOUR)
    end_whole = end_ts // HOUR
    if first_whole >= end_whole:  # no whole hour inside: nothing to skip by
        return end_ts, offset
    top = 0
    if end_whole * HOUR < end_ts:
        top = _count_rows(conn, account_id, end_whole * HOUR, end_ts, direction)
    if offset < top:
        return end_ts, offset
    remaining = offset - top
    where = [
        call_hour_counts.c.account_id == account_id,
        call_hour_counts.c.hour >= first_whole,
        call_hour_counts.c.hour < end_whole,
    ]
    if direction:
        where.append(call_hour_counts.c.direction == direction)
    per_hour = (
        select(call_hour_counts.c.hour, func.sum(call_hour_counts.c.n).label("n"))
        .where(*where)
        .group_by(call_hour_counts.c.hour)
        .subquery()
    )
    running = select(
        per_hour.c.hour,
        per_hour.c.n,
        func.sum(per_hour.c.n).over(order_by=per_hour.c.hour.desc()).label("through"),
    ).subquery()
    found = conn.execute(
        select(running.c.hour, running.c.through - running.c.n)
        .where(running.c.through > remaining)
        .order_by(running.c.hour.desc())
        .limit(1)
    ).one_or_none()
    if found is None:  # past every whole hour: in the partial hour at the window's start
        whole = conn.execute(select(func.coalesce(func.sum(per_hour.c.n), 0))).scalar_one()
        return first_whole * HOUR, remaining - int(whole)
    hour, before = found
    return (int(hour) + 1) * HOUR, remaining - int(before)


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
