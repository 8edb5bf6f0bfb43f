"""Per-account, per-direction call counts by UTC hour and by UTC day, kept on every write.

An exact total of a window is the sum of the whole UTC days inside it, of the whole hours at its two
edges that do not fill a day, and an exact count of the two partial hours at its very edges (none
when the window starts on a whole hour, as it does in every timezone with a whole-hour offset). A
month of a busy account is about 30 x 4 day rows and 2 x 12 x 4 hour rows, instead of 720 x 4 hours.

Both tables move together in :func:`adjust`; ``tests/api/calls_support.assert_counts_exact`` holds
them equal to a fresh count of the calls after every write the tests make.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Select,
    Table,
    bindparam,
    case,
    cast,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    type_coerce,
    union_all,
)

from pbx_cdr.db.driver import DriverReads, SqliteWrites
from pbx_cdr.db.queries.accounts import bump_data_version
from pbx_cdr.db.tables import NUMBER_COUNTED, call_day_counts, call_hour_counts, call_number_counts, calls

HOUR = 3600
DAY_HOURS = 24
DAY = DAY_HOURS * HOUR

_24 = literal_column(str(DAY_HOURS), BigInteger)

# What a write changes, per (UTC hour, direction, number key): the key is the destination's search
# key for the directions counted per number (``NUMBER_COUNTED``), else None.
Bucket = tuple[int, str, str | None]


def _range(table: Table, unit: str, low: Any, high: Any, direction: Any | None) -> list[Any]:
    """The account's count rows with ``unit`` (``hour`` or ``day``) in ``[low, high)``."""
    where = [table.c.account_id == bindparam("account_id"), table.c[unit] >= low, table.c[unit] < high]
    if direction is not None:
        where.append(table.c.direction == direction)
    return where


def least(a: Any, b: Any) -> Any:
    """The smaller of two SQL expressions (a portable ``LEAST``)."""
    return case((a < b, a), else_=b)


def greatest(a: Any, b: Any) -> Any:
    """The larger of two SQL expressions (a portable ``GREATEST``)."""
    return case((a > b, a), else_=b)


def _whole_hour_ranges(first_hour: Any, end_hour: Any) -> tuple[tuple[Any, Any], ...]:
    """SQL bounds for the whole hours ``[first_hour, end_hour)`` as count rows read them: the whole
    UTC days among them (in days), then the hours before the first whole day and those of the day
    holding ``end_hour`` (in hours). The modulo is made non-negative because SQL's ``%`` and ``/``
    truncate toward zero; ``//`` then divides exact multiples of 24 only. When no whole day fits,
    the first day is past the last: the early hours are then the whole window, the late ones empty.
    """
    fh, eh = type_coerce(first_hour, BigInteger), type_coerce(end_hour, BigInteger)
    days_from = fh + (_24 - fh % _24) % _24  # the first hour of the first whole day
    days_to = eh - (eh % _24 + _24) % _24  # the first hour of the day holding end_hour
    return (
        (days_from // _24, days_to // _24),
        (fh, least(days_from, eh)),
        (greatest(days_to, days_from), eh),
    )


def hours_sum(first_hour: Any, end_hour: Any, direction: Any | None) -> Select[Any]:
    """The calls counted in the whole hours ``[first_hour, end_hour)`` (SQL expressions or bind
    parameters): the whole UTC days among them from the day counts, the rest from the hour counts.

    The day bounds are SQL arithmetic on the hour bounds (:func:`_whole_hour_ranges`), so a statement
    built once with bind parameters stays one statement (and one generic plan).
    """
    days, early, late = _whole_hour_ranges(first_hour, end_hour)
    # One sum over the three ranges' rows: a sum of three sums had cost PostgreSQL two more
    # aggregates to set up on every list (about 7 µs of a small account's).
    rows = union_all(
        select(call_day_counts.c.n).where(*_range(call_day_counts, "day", *days, direction)),
        select(call_hour_counts.c.n).where(*_range(call_hour_counts, "hour", *early, direction)),
        select(call_hour_counts.c.n).where(*_range(call_hour_counts, "hour", *late, direction)),
    ).subquery("counted")
    return select(func.coalesce(func.sum(rows.c.n), 0))


def rows_count(low: Any, high: Any, direction: Any | None) -> Select[Any]:
    """The account's calls with ``start_ts`` in ``[low, high)``, counted row by row."""
    where = [calls.c.account_id == bindparam("account_id"), calls.c.start_ts >= low, calls.c.start_ts < high]
    if direction is not None:
        where.append(calls.c.direction == direction)
    return select(func.count()).select_from(calls).where(*where)


# Built once, with bind parameters: they run on every list request, and building a statement cost
# more than SQLite took to run it. Indexed by whether a direction is given.
_DIRECTIONS: tuple[Any, Any] = (None, bindparam("direction"))
_HOURS_SUM = tuple(hours_sum(bindparam("first_hour"), bindparam("end_hour"), d) for d in _DIRECTIONS)
_ROWS_COUNT = tuple(rows_count(bindparam("low"), bindparam("high"), d) for d in _DIRECTIONS)


# SQLite: one prepared upsert per table, run for every row by the driver (a loop in C).
_SQLITE_ADD = (
    "INSERT INTO call_hour_counts (account_id, hour, direction, n) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (account_id, hour, direction) DO UPDATE SET n = n + excluded.n",
    "INSERT INTO call_day_counts (account_id, day, direction, n) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (account_id, day, direction) DO UPDATE SET n = n + excluded.n",
    "INSERT INTO call_number_counts (account_id, direction, number_key, hour, n) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (account_id, direction, number_key, hour) DO UPDATE SET n = n + excluded.n",
)
# PostgreSQL: one statement, one round trip, whatever the number of rows (arrays, as the calls'
# insert). The day rows are gated on the hour rows' CTE and the number rows on the day rows': every
# hour row is locked before any day row, every day row before any number row, and each table's rows
# in the arrays' (sorted) order, so concurrent writers take their locks in one order. (A
# data-modifying CTE runs to completion even when nothing reads it; reading it here fixes *when*:
# the one-time filter runs it before the first row of the next table is produced.)
_PG_HOURS = """
WITH hours AS (
    INSERT INTO call_hour_counts AS c (account_id, hour, direction, n)
    SELECT %(account_id)s::integer, t.hour, t.direction, t.n
    FROM unnest(%(hours)s::integer[], %(hour_directions)s::text[], %(hour_n)s::integer[])
        AS t(hour, direction, n)
    ON CONFLICT (account_id, hour, direction) DO UPDATE SET n = c.n + excluded.n
    RETURNING 1
)"""
_PG_DAYS = """
    INSERT INTO call_day_counts AS c (account_id, day, direction, n)
    SELECT %(account_id)s::integer, t.day, t.direction, t.n
    FROM unnest(%(days)s::integer[], %(day_directions)s::text[], %(day_n)s::integer[])
        AS t(day, direction, n)
    WHERE (SELECT count(*) FROM hours) >= 0
    ON CONFLICT (account_id, day, direction) DO UPDATE SET n = c.n + excluded.n
"""
_PG_NUMBERS = """
INSERT INTO call_number_counts AS c (account_id, direction, number_key, hour, n)
SELECT %(account_id)s::integer, t.direction, t.number_key, t.hour, t.n
FROM unnest(%(number_directions)s::text[], %(number_keys)s::text[], %(number_hours)s::integer[],
    %(number_n)s::integer[]) AS t(direction, number_key, hour, n)
WHERE (SELECT count(*) FROM days) >= 0
ON CONFLICT (account_id, direction, number_key, hour) DO UPDATE SET n = c.n + excluded.n
"""
# Without number rows (outbound and internal calls only), the statement stops at the day rows.
_PG_ADD = (_PG_HOURS + _PG_DAYS, _PG_HOURS + ",\ndays AS (" + _PG_DAYS + "    RETURNING 1\n)" + _PG_NUMBERS)


def adjust(conn: Connection, account_id: int, deltas: Counter[Bucket]) -> None:
    """Add ``deltas`` (negative for removed calls) to the hour counts, their days' counts and the
    number counts, in the caller's transaction.

    Hour rows first, then day rows, then number rows, each in its key's order: concurrent writers
    take the count rows' locks in one order. A row whose deltas cancel out (a call moved within it)
    is not written.
    """
    per_hour: Counter[tuple[int, str]] = Counter()
    per_number: Counter[tuple[str, str, int]] = Counter()
    for (hour, direction, key), n in deltas.items():
        per_hour[(hour, direction)] += n
        if key is not None:
            per_number[(direction, key, hour)] += n
    hours = sorted((k, n) for k, n in per_hour.items() if n)
    numbers = sorted((k, n) for k, n in per_number.items() if n)
    if not hours and not numbers:
        return
    days = sorted((key, n) for key, n in days_of(hours).items() if n)
    if conn.dialect.name == "postgresql":
        params: dict[str, Any] = {
            "account_id": account_id,
            "hours": [h for (h, _), _ in hours],
            "hour_directions": [d for (_, d), _ in hours],
            "hour_n": [n for _, n in hours],
            "days": [day for (day, _), _ in days],
            "day_directions": [d for (_, d), _ in days],
            "day_n": [n for _, n in days],
        }
        if numbers:
            params["number_directions"] = [d for (d, _, _), _ in numbers]
            params["number_keys"] = [k for (_, k, _), _ in numbers]
            params["number_hours"] = [h for (_, _, h), _ in numbers]
            params["number_n"] = [n for _, n in numbers]
        conn.exec_driver_sql(_PG_ADD[bool(numbers)], params)
        return
    driver = SqliteWrites(conn)
    hour_sql, day_sql, number_sql = _SQLITE_ADD
    for sql, rows in ((hour_sql, hours), (day_sql, days)):
        if rows:
            driver.run_many(sql, [(account_id, unit, d, n) for (unit, d), n in rows])
    if numbers:
        driver.run_many(number_sql, [(account_id, d, k, h, n) for (d, k, h), n in numbers])


def hour_deltas(items: Iterable[tuple[int, str, str]], sign: int = 1) -> Counter[Bucket]:
    """Count (start_ts, direction, destination key) triples into their buckets (:data:`Bucket`)."""
    out: Counter[Bucket] = Counter()
    for start_ts, direction, key in items:
        out[(start_ts // HOUR, direction, key if direction in NUMBER_COUNTED else None)] += sign
    return out


def days_of(hour_counts: Iterable[tuple[tuple[int, str], int]]) -> Counter[tuple[int, str]]:
    """``((hour, direction), n)`` pairs summed into (UTC day, direction) buckets."""
    out: Counter[tuple[int, str]] = Counter()
    for (hour, direction), n in hour_counts:
        out[(hour // DAY_HOURS, direction)] += n
    return out


def whole_hours(start_ts: int, end_ts: int) -> tuple[int, int]:
    """``[first, end)``: the hours that lie wholly inside the window ``[start_ts, end_ts)``."""
    return -(-start_ts // HOUR), end_ts // HOUR


def window_total(conn: Connection, account_id: int, start_ts: int, end_ts: int, direction: str | None) -> int:
    """Exact number of the account's calls with ``start_ts`` in ``[start_ts, end_ts)``."""
    first_whole, end_whole = whole_hours(start_ts, end_ts)
    reads = DriverReads.of(conn)
    total = 0
    if first_whole < end_whole:
        params = {
            "account_id": account_id,
            "first_hour": first_whole,
            "end_hour": end_whole,
            "direction": direction,
        }
        total += reads.scalar(_HOURS_SUM[bool(direction)], params)
        edges = [(start_ts, first_whole * HOUR), (end_whole * HOUR, end_ts)]
    else:
        edges = [(start_ts, end_ts)]
    for low, high in edges:
        if low < high:
            total += _count_rows(reads, account_id, low, high, direction)
    return int(total)


# Offsets past every whole hour land in the window's first, partial hour (or past the window's end,
# where the page is empty anyway): that segment takes any remainder.
_REST = 2**62


def locate_segment(
    top_low: Any, high: Any, bottom_high: Any, direction: Any | None, offset: Any, *, top: bool
) -> Any:
    """Where row ``offset`` (newest first) of a window lies, as a one-row subquery ``(high, skip)``.

    The window is cut into segments, newest first: the partial hour at its end ``[top_low, high)``
    when ``top``, the whole hours ``[first_hour, end_hour)`` from the counts, then the partial hour
    at its start, which ends at ``bottom_high``. Exactly ``offset - skip`` of the window's calls
    start at or after ``high``, so row ``offset`` is row ``skip`` of the window cut at ``high``;
    ``skip`` is less than a segment's calls. The whole hours are walked as SQLite's :func:`locate`
    walks them: whole UTC days from the day counts with the edge days' hours, then, when the row
    lies in a whole day, that day's 24 hours (about 80 + 24 count rows per direction, where walking
    every hour of a month read 720).
    """
    days, early, late = _whole_hour_ranges(bindparam("first_hour"), bindparam("end_hour"))
    d, h = call_day_counts, call_hour_counts
    day_upper = (cast(d.c.day, BigInteger) + 1) * DAY
    hour_upper = (cast(h.c.hour, BigInteger) + 1) * HOUR
    whole_day = literal(DAY_HOURS)

    def hours(low: Any, high_hour: Any) -> Any:
        return (
            select(hour_upper.label("upper"), func.sum(h.c.n).label("n"), literal(1).label("span"))
            .where(*_range(h, "hour", low, high_hour, direction))
            .group_by(hour_upper)
        )

    segments: list[Any] = [
        select(day_upper.label("upper"), func.sum(d.c.n).label("n"), whole_day.label("span"))
        .where(*_range(d, "day", *days, direction))
        .group_by(day_upper),
        hours(*early),
        hours(*late),
    ]
    if top:
        top_n = rows_count(top_low, high, direction).scalar_subquery()
        segments.append(select(high.label("upper"), top_n.label("n"), literal(0).label("span")))
    segments.append(select(bottom_high.label("upper"), literal(_REST).label("n"), literal(0).label("span")))
    seg = union_all(*segments).subquery("seg")
    found = _first_reaching(seg, offset, seg.c.span).cte("found")
    # The found day's hours (none unless the row lies in a whole day), walked the same way.
    day_end = found.c.upper // HOUR
    day_hours = (
        select(hour_upper.label("upper"), func.sum(h.c.n).label("n"))
        .where(found.c.span == whole_day, *_range(h, "hour", day_end - DAY_HOURS, day_end, direction))
        .group_by(hour_upper)
        .subquery("day_hours")
    )
    in_day = _first_reaching(day_hours, select(found.c.skip).scalar_subquery()).cte("in_day")
    # The day itself when no hour of it holds the row: never, while a day's count is the sum of
    # its hours (written together); the page is then still right, only read from the day's end.
    return union_all(
        select(in_day.c.upper.label("high"), in_day.c.skip),
        select(found.c.upper, found.c.skip).where(
            or_(found.c.span != whole_day, ~exists(select(in_day.c.upper)))
        ),
    ).cte("loc")


def _first_reaching(seg: Any, offset: Any, *extra: Any) -> Select[Any]:
    """The newest segment of ``seg`` (``upper``, ``n``) that holds row ``offset`` counted from the
    newest: ``(upper, skip, *extra)``, ``skip`` being the row's place inside it."""
    run = select(
        seg.c.upper, seg.c.n, *extra, func.sum(seg.c.n).over(order_by=seg.c.upper.desc()).label("through")
    ).subquery()
    return (
        select(
            run.c.upper, (offset - (run.c.through - run.c.n)).label("skip"), *(run.c[e.name] for e in extra)
        )
        .where(run.c.through > offset)
        .order_by(run.c.upper.desc())
        .limit(1)
    )


def _newest_first() -> tuple[Any, ...]:
    """Two statements per direction shape (none, or a bound ``direction``), rows newest first.

    ``segments``: ``(first hour, hours, n)`` for each whole UTC day in ``[first_day, end_day)``
    (24 hours) and each hour in ``[first_hour, early_end)`` and ``[late_start, end_hour)`` (1 hour):
    the window's whole hours, read from about 30 x 4 day rows and at most 2 x 23 x 4 hour rows.
    ``hours``: ``(hour, n)`` for each hour in ``[low, high)``, in the covering index's order.
    """
    out: list[Any] = []
    for direction in _DIRECTIONS:
        d, h = call_day_counts, call_hour_counts
        days = (
            select(
                (d.c.day * DAY_HOURS).label("lo"),
                literal_column(str(DAY_HOURS)).label("span"),
                func.sum(d.c.n),
            )
            .where(*_range(d, "day", bindparam("first_day"), bindparam("end_day"), direction))
            .group_by(d.c.day)
        )
        edges = [
            select(h.c.hour, literal_column("1"), func.sum(h.c.n))
            .where(*_range(h, "hour", bindparam(low), bindparam(high), direction))
            .group_by(h.c.hour)
            for low, high in (("first_hour", "early_end"), ("late_start", "end_hour"))
        ]
        out.append(union_all(days, *edges).order_by(literal_column("lo").desc()))
        hours = select(h.c.hour, func.sum(h.c.n)).where(
            *_range(h, "hour", bindparam("low"), bindparam("high"), direction)
        )
        out.append(hours.group_by(h.c.hour).order_by(h.c.hour.desc()))
    return tuple(out)


_NEWEST_FIRST = _newest_first()
_SEGMENTS_DESC, _HOURS_DESC = _NEWEST_FIRST[0::2], _NEWEST_FIRST[1::2]


def locate(
    reads: DriverReads, account_id: int, start_ts: int, end_ts: int, direction: str | None, offset: int
) -> tuple[int, int, int]:
    """The window's exact total, and where row ``offset`` (newest first) lies: ``(total, high, skip)``.

    ``high`` and ``skip`` as :func:`locate_segment` says them, found here in Python: the day sums
    and edge hours (which also give the total), then the hours of the one day that holds the row.
    For SQLite, where reading rows costs no round trip and its window functions were the slow part
    (4 ms for a month of hours at 10M calls); its statements run straight through the driver. Run it
    inside one read transaction: the days and hours must agree.
    """
    first_whole, end_whole = whole_hours(start_ts, end_ts)
    if first_whole >= end_whole:  # no whole hour inside: nothing to skip by
        return _count_rows(reads, account_id, start_ts, end_ts, direction), end_ts, offset
    top = (
        _count_rows(reads, account_id, end_whole * HOUR, end_ts, direction)
        if end_whole * HOUR < end_ts
        else 0
    )
    bottom = (
        _count_rows(reads, account_id, start_ts, first_whole * HOUR, direction)
        if start_ts < first_whole * HOUR
        else 0
    )
    first_day, end_day = -(-first_whole // DAY_HOURS), end_whole // DAY_HOURS
    params = {
        "account_id": account_id,
        "direction": direction,
        "first_day": first_day,
        "end_day": end_day,
        "first_hour": first_whole,
        "early_end": min(first_day * DAY_HOURS, end_whole),
        "late_start": max(end_day, first_day) * DAY_HOURS,
        "end_hour": end_whole,
    }
    segments = [(int(f), int(s), int(n)) for f, s, n in reads.rows(_SEGMENTS_DESC[bool(direction)], params)]
    total = top + sum(n for _, _, n in segments) + bottom
    if offset < top:
        return total, end_ts, offset
    remaining = offset - top
    for first, span, n in segments:
        if remaining >= n:
            remaining -= n
            continue
        if span == 1:
            return total, (first + 1) * HOUR, remaining
        hours = reads.rows(_HOURS_DESC[bool(direction)], {**params, "low": first, "high": first + span})
        for hour, m in hours:
            if remaining < m:
                return total, (int(hour) + 1) * HOUR, remaining
            remaining -= int(m)
        return total, first * HOUR, remaining  # not reached while the hours add up to their day
    # Past every whole hour: in the partial hour at the window's start (or past the window's end).
    return total, first_whole * HOUR, remaining


def _count_rows(reads: DriverReads, account_id: int, low: int, high: int, direction: str | None) -> int:
    params = {"account_id": account_id, "low": low, "high": high, "direction": direction}
    return int(reads.scalar(_ROWS_COUNT[bool(direction)], params))


def rebuild(conn: Connection, account_id: int) -> None:
    """Recompute an account's hour, day and number counts from its calls (repair, or after a bulk
    load)."""
    for table in (call_hour_counts, call_day_counts):
        conn.execute(table.delete().where(table.c.account_id == account_id))
    hour = calls.c.start_ts // HOUR
    rows = conn.execute(
        select(hour.label("hour"), calls.c.direction, func.count().label("n"))
        .where(calls.c.account_id == account_id)
        .group_by(hour, calls.c.direction)
    ).all()
    if rows:
        per_day = days_of(((int(r.hour), r.direction), r.n) for r in rows)
        conn.execute(
            call_hour_counts.insert(),
            [
                {"account_id": account_id, "hour": int(r.hour), "direction": r.direction, "n": r.n}
                for r in rows
            ],
        )
        conn.execute(
            call_day_counts.insert(),
            [
                {"account_id": account_id, "day": day, "direction": d, "n": n}
                for (day, d), n in per_day.items()
            ],
        )
    rebuild_numbers(conn, account_id)


def recount(conn: Connection, account_id: int) -> int:
    """:func:`rebuild` with writes to ``calls`` held off until the caller's transaction ends (on
    PostgreSQL a ``SHARE`` lock, which waits for the writes under way; SQLite's writer holds the
    database already), and the account's cached pages made stale. The account's calls counted."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE calls IN SHARE MODE")
    rebuild(conn, account_id)
    bump_data_version(conn, account_id)
    total = conn.execute(select(func.count()).select_from(calls).where(calls.c.account_id == account_id))
    return int(total.scalar_one())


def rebuild_numbers(conn: Connection, account_id: int) -> None:
    """Recompute an account's number counts from its calls (after its search keys changed)."""
    nc = call_number_counts
    conn.execute(nc.delete().where(nc.c.account_id == account_id))
    hour = calls.c.start_ts // HOUR
    conn.execute(
        nc.insert().from_select(
            ["account_id", "direction", "number_key", "hour", "n"],
            select(calls.c.account_id, calls.c.direction, calls.c.destination_key, hour, func.count())
            .where(calls.c.account_id == account_id, calls.c.direction.in_(NUMBER_COUNTED))
            .group_by(calls.c.account_id, calls.c.direction, calls.c.destination_key, hour),
        )
    )
