"""Every shortcut of the list (hour counts, located deep pages, disjoint extension halves, key ranges)
gives what the plain definition gives: the exact count and the naive ordered slice.

Random calls are written through the real write path (``upsert_calls``, ``delete_calls``), in
timezones with half-hour and 45-minute offsets and DST, across day and hour boundaries, on SQLite and
on PostgreSQL; then updated (moving start times and directions) and partly deleted. The counts'
own sums (whole UTC days, edge hours, partial hours) are held to a fresh count for windows cut
anywhere, and windows of one day and of the maximum are paged through.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from pbx_cdr.db import engine as db
from pbx_cdr.db.driver import DriverReads
from pbx_cdr.db.queries import call_list, counts, phone_list
from pbx_cdr.db.queries import calls as call_queries
from pbx_cdr.db.tables import call_day_counts, call_hour_counts, calls
from pbx_cdr.domain.call import Call
from pbx_cdr.domain.listing import AccountView, ListQuery, parse_list_query
from pbx_cdr.domain.phone import key_prefix_range, search_key
from tests.api.calls_support import assert_counts_exact, make_call
from tests.conftest import Tenant

# Around Europe's and Lord Howe's DST changes and the seed's day, in zones with odd offsets.
TIMEZONES = (
    "UTC",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Europe/Berlin",
    "America/St_Johns",
    "Australia/Lord_Howe",
)
MOMENTS = (
    datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # Europe springs forward
    datetime(2026, 10, 25, 1, 0, tzinfo=UTC),  # Europe falls back
    datetime(2026, 4, 4, 15, 0, tzinfo=UTC),  # Lord Howe falls back half an hour
    datetime(2026, 6, 27, 0, 0, tzinfo=UTC),
)
EXTENSIONS = ("1001", "1002", "2001", None)
# Two numbers end in 6868: a suffix's range holds several keys of one direction's destinations.
NUMBERS = ("0987654321", "+84987654321", "0281234321", "1001", "0912344321", "*97", "19006868", "0919006868")
COUNTRY = "VN"


calls_strategy = st.lists(
    st.tuples(
        st.sampled_from(MOMENTS),
        st.integers(-3 * 86400, 3 * 86400),
        st.sampled_from(("inbound", "outbound", "internal", "local")),
        st.sampled_from(EXTENSIONS),
        st.sampled_from(EXTENSIONS),
        st.sampled_from(NUMBERS),
        st.sampled_from(NUMBERS),
    ),
    min_size=0,
    max_size=60,
)
# A few seconds apart so many calls share a start time and the id tie-break matters.
SECOND_GRID = 900


def build(raw: list[tuple[Any, ...]]) -> list[Call]:
    return [
        make_call(int(m.timestamp()) + (d // SECOND_GRID) * SECOND_GRID, direction, ext, agent, c, dst)
        for m, d, direction, ext, agent, c, dst in raw
    ]


def reference(engine: Engine, account_id: int, q: ListQuery) -> tuple[list[str], int]:
    """The definition: every row of the account, filtered and sorted in Python."""
    with db.read(engine) as conn:
        rows = conn.execute(select(calls).where(calls.c.account_id == account_id)).all()
    low, high = key_prefix_range(q.phone_suffix) if q.phone_suffix is not None else ("", "")

    def keep(r: Any) -> bool:
        if not q.start_ts <= r.start_ts < q.end_ts or (q.direction and r.direction != q.direction):
            return False
        if q.extension is not None and q.extension not in (r.extension_number, r.agent_extension):
            return False
        if q.phone_suffix is not None:
            keys = (search_key(r.caller_number, COUNTRY), search_key(r.destination_number, COUNTRY))
            return any(low <= k < high for k in keys)
        return True

    kept = sorted((r for r in rows if keep(r)), key=lambda r: (r.start_ts, r.id), reverse=True)
    return [r.uuid for r in kept[q.offset : q.offset + q.per_page]], len(kept)


def ours(engine: Engine, account_id: int, q: ListQuery, deep_offset: int) -> tuple[list[str], int]:
    with db.read(engine) as conn:
        page = call_list.list_calls(conn, account_id, q, deep_offset=deep_offset)
    return page.uuids(), page.total


def ours_unkeyed(engine: Engine, account_id: int, q: ListQuery) -> tuple[list[str], int]:
    """A phone list as SQLite serves one whose suffix matches more number keys than it reads as
    scans of their own (``phone_list.MAX_ARMS``): one ``IN`` over the keys, sorted."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(phone_list, "MAX_ARMS", 0)
        return ours(engine, account_id, q, call_list.DEEP_OFFSET)


queries_strategy = st.lists(
    st.tuples(
        st.sampled_from(MOMENTS),
        st.integers(-4, 3),  # from, in days around the moment
        st.integers(0, 4),  # window length in days
        st.sampled_from((None, "inbound", "outbound", "internal", "local")),
        st.sampled_from((None, "1001", "2001")),
        st.sampled_from((None, "4321", "987654321", "+84987654321", "97", "1001", "6868", "19006868", "1")),
        st.integers(1, 8),  # page
        st.sampled_from((1, 2, 3, 7, 50)),  # per page
    ),
    min_size=1,
    max_size=6,
)


def check(engine: Engine, account_id: int, tz: str, raw_queries: list[tuple[Any, ...]]) -> None:
    view = AccountView(tz, COUNTRY, 31)
    for moment, from_day, days, direction, ext, phone, page, per_page in raw_queries:
        start = moment.date() + timedelta(days=from_day)
        params = {"from": start.isoformat(), "to": (start + timedelta(days=days)).isoformat()}
        params.update({"page": str(page), "per_page": str(per_page)})
        for name, value in (("direction", direction), ("extension", ext), ("phone", phone)):
            if value is not None:
                params[name] = value
        q = parse_list_query(params, view, datetime(2027, 1, 1, tzinfo=UTC).timestamp())
        expected = reference(engine, account_id, q)
        # deep_offset=0 locates every page from the counts; the default takes the plain OFFSET.
        assert ours(engine, account_id, q, deep_offset=0) == expected, params
        assert ours(engine, account_id, q, deep_offset=call_list.DEEP_OFFSET) == expected, params
        if phone is not None:
            assert ours_unkeyed(engine, account_id, q) == expected, params


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    tz=st.sampled_from(TIMEZONES),
    raw=calls_strategy,
    moves=st.lists(st.tuples(st.integers(0, 59), st.integers(-7200, 7200), st.booleans()), max_size=10),
    deletes=st.lists(st.integers(0, 59), max_size=8),
    raw_queries=queries_strategy,
)
def test_pages_and_totals_equal_the_definition(
    engine: Engine,
    make_tenant: Callable[..., Tenant],
    tz: str,
    raw: list[tuple[Any, ...]],
    moves: list[tuple[int, int, bool]],
    deletes: list[int],
    raw_queries: list[tuple[Any, ...]],
) -> None:
    account_id = make_tenant(timezone=tz, country=COUNTRY).id
    batch = build(raw)
    with db.write(engine) as conn:
        call_queries.upsert_calls(conn, account_id, COUNTRY, batch, origin="api", now=1)
    check(engine, account_id, tz, raw_queries)

    if batch:  # updates that move a call to another hour, day or direction
        moved = {}
        for index, shift, flip in moves:
            old = moved.get(index % len(batch), batch[index % len(batch)])
            direction = {"inbound": "outbound"}.get(old.direction, "inbound") if flip else old.direction
            moved[index % len(batch)] = replace(
                old, start_ts=old.start_ts + shift, end_ts=old.start_ts + shift + 30, direction=direction
            )
        with db.write(engine) as conn:
            call_queries.upsert_calls(conn, account_id, COUNTRY, list(moved.values()), origin="api", now=2)
        gone = list({batch[i % len(batch)].uuid for i in deletes})
        with db.write(engine) as conn:
            call_queries.delete_calls(conn, account_id, gone)
    assert_counts_exact(engine, account_id)
    check(engine, account_id, tz, raw_queries)


def test_deep_pages_of_a_busy_account(engine: Engine, make_tenant: Callable[..., Tenant]) -> None:
    """Thousands of calls over many hours, partial edge hours (+05:45): every page boundary agrees."""
    account_id = make_tenant(timezone="Asia/Kathmandu", country=COUNTRY).id
    base = int(datetime(2026, 6, 20, tzinfo=UTC).timestamp())
    batch = [
        make_call(
            base + (i * 7919) % (6 * 86400) // 60 * 60,
            ("inbound", "outbound", "internal")[i % 3],
            EXTENSIONS[i % 4],
            EXTENSIONS[(i // 4) % 4],
            NUMBERS[i % len(NUMBERS)],
            NUMBERS[(i // 7) % len(NUMBERS)],
        )
        for i in range(3000)
    ]
    with db.write(engine) as conn:
        call_queries.upsert_calls(conn, account_id, COUNTRY, batch, origin="api", now=1)
    view = AccountView("Asia/Kathmandu", COUNTRY, 31)
    now = datetime(2026, 6, 27, 12, tzinfo=UTC).timestamp()
    for params in (
        {},
        {"direction": "outbound"},
        {"extension": "1002"},
        {"phone": "4321"},
        {"phone": "6868"},
        {"phone": "1", "direction": "inbound"},
    ):
        for page, per_page in ((1, 50), (7, 200), (14, 200), (31, 97), (2999, 1), (3000, 1), (61, 50)):
            q = parse_list_query({**params, "page": str(page), "per_page": str(per_page)}, view, now)
            expected = reference(engine, account_id, q)
            assert ours(engine, account_id, q, deep_offset=0) == expected, (params, page, per_page)
            assert ours(engine, account_id, q, deep_offset=100) == expected, (params, page, per_page)
            if "phone" in params:
                assert ours_unkeyed(engine, account_id, q) == expected, (params, page, per_page)


def test_route_serves_the_same_page(client: Any, engine: Engine, tenant: Tenant) -> None:
    """Over HTTP, with the tenant's defaults (today - 30 days .. today), a deep page is the naive slice."""
    today = date(2026, 6, 27)
    base = int(datetime(today.year, today.month, today.day, tzinfo=UTC).timestamp())
    batch = [
        make_call(
            base - (i * 3607) % (31 * 86400),
            ("inbound", "outbound")[i % 2],
            "1001",
            None,
            "0987654321",
            "*97",
        )
        for i in range(1500)
    ]
    with db.write(engine) as conn:
        call_queries.upsert_calls(conn, tenant.id, COUNTRY, batch, origin="api", now=1)
    for page in (1, 12, 30, 31):
        body = client.get(f"/api/pbx/cdr?per_page=50&page={page}", headers=tenant.read).json()
        q = parse_list_query(
            {"per_page": "50", "page": str(page)}, AccountView("UTC", COUNTRY, 30), base + 43200
        )
        uuids, total = reference(engine, tenant.id, q)
        assert body["total"] == total
        assert [item["uuid"] for item in body["data"]] == uuids


# Day counts: whole UTC days come from call_day_counts, the hours of the partial days at a window's
# edges from call_hour_counts, the partial hours from the calls. Calls over ten UTC days, windows cut
# anywhere: on whole days, whole hours, half hours, single seconds.
DAY = 86400
SPAN_START = int(datetime(2026, 3, 25, tzinfo=UTC).timestamp())
SPAN = 10 * DAY

spread_strategy = st.lists(
    st.tuples(st.integers(0, SPAN - 1), st.sampled_from(("inbound", "outbound", "internal"))),
    min_size=10,
    max_size=80,
)
# A cut: a day, then an hour and a second inside it, each snapped or not.
cut_strategy = st.tuples(
    st.integers(-1, 11), st.sampled_from((0, 1, 5, 12, 23)), st.sampled_from((0, 1, 1800, 3599))
)


def cut(raw: tuple[int, int, int]) -> int:
    day, hour, second = raw
    return SPAN_START + day * DAY + hour * 3600 + second


def account_rows(engine: Engine, account_id: int) -> list[Any]:
    with db.read(engine) as conn:
        return list(
            conn.execute(
                select(calls.c.start_ts, calls.c.id, calls.c.direction).where(
                    calls.c.account_id == account_id
                )
            )
        )


def check_sums(engine: Engine, account_id: int, windows: list[tuple[int, int]]) -> None:
    """``window_total`` and ``locate`` of each window, against the rows counted in Python."""
    rows = sorted(account_rows(engine, account_id), key=lambda r: (r.start_ts, r.id), reverse=True)
    with db.read(engine) as conn:
        reads = DriverReads.of(conn)
        for low, high in windows:
            for direction in (None, "inbound"):
                starts = [
                    r.start_ts for r in rows if low <= r.start_ts < high and direction in (None, r.direction)
                ]
                assert counts.window_total(conn, account_id, low, high, direction) == len(starts), (low, high)
                for offset in sorted({0, 1, len(starts) // 2, max(len(starts) - 1, 0), len(starts)}):
                    total, cut_at, skip = counts.locate(reads, account_id, low, high, direction, offset)
                    assert total == len(starts), (low, high, direction)
                    if offset < total:
                        # Row ``offset`` is row ``skip`` of the window cut at ``cut_at``.
                        assert sum(1 for s in starts if s >= cut_at) == offset - skip, (low, high, offset)
                        assert 0 <= skip < sum(1 for s in starts if s < cut_at), (low, high, offset)


def test_every_cut_of_a_dense_span(engine: Engine, make_tenant: Callable[..., Tenant]) -> None:
    """Calls every 7 minutes 13 seconds over four UTC days; every window between two cuts from
    midnights, their neighbouring seconds, whole and half hours: within one day, across one
    midnight, across whole days."""
    account_id = make_tenant(timezone="UTC", country=COUNTRY).id
    directions = ("inbound", "outbound", "internal", "local")
    batch = [
        make_call(SPAN_START + i * 433, directions[i % 7 % 4], None, None, "0987654321", "1001")
        for i in range(4 * DAY // 433)
    ]
    with db.write(engine) as conn:
        call_queries.upsert_calls(conn, account_id, COUNTRY, batch, origin="api", now=1)
    assert_counts_exact(engine, account_id)
    points = [
        SPAN_START + day * DAY + at
        for day in (0, 1, 3)
        for at in (-1, 0, 1, 5 * 3600, 5 * 3600 + 1800, 12 * 3600 - 1, 23 * 3600, DAY - 1)
    ]
    check_sums(engine, account_id, [(a, b) for a in points for b in points if a <= b])


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    raw=spread_strategy,
    moves=st.lists(st.tuples(st.integers(0, 79), st.integers(-2 * DAY, 2 * DAY)), max_size=10),
    deletes=st.lists(st.integers(0, 79), max_size=8),
    cuts=st.lists(st.tuples(cut_strategy, cut_strategy), min_size=1, max_size=6),
)
def test_day_and_hour_sums_equal_a_fresh_count(
    engine: Engine,
    make_tenant: Callable[..., Tenant],
    raw: list[tuple[int, str]],
    moves: list[tuple[int, int]],
    deletes: list[int],
    cuts: list[tuple[tuple[int, int, int], tuple[int, int, int]]],
) -> None:
    """Totals and located rows of windows cut anywhere, before and after corrections that move
    calls across UTC days and deletes."""
    account_id = make_tenant(timezone="UTC", country=COUNTRY).id
    batch = [make_call(SPAN_START + at, d, None, None, "0987654321", "1001") for at, d in raw]
    with db.write(engine) as conn:
        call_queries.upsert_calls(conn, account_id, COUNTRY, batch, origin="api", now=1)
    windows = [tuple(sorted((cut(a), cut(b)))) for a, b in cuts]
    assert_counts_exact(engine, account_id)
    check_sums(engine, account_id, windows)  # type: ignore[arg-type]
    if batch:
        moved = {}
        for index, shift in moves:
            old = moved.get(index % len(batch), batch[index % len(batch)])
            moved[index % len(batch)] = replace(
                old, start_ts=old.start_ts + shift, end_ts=old.start_ts + shift + 30
            )
        with db.write(engine) as conn:
            call_queries.upsert_calls(conn, account_id, COUNTRY, list(moved.values()), origin="api", now=2)
        with db.write(engine) as conn:
            call_queries.delete_calls(conn, account_id, list({batch[i % len(batch)].uuid for i in deletes}))
    assert_counts_exact(engine, account_id)
    check_sums(engine, account_id, windows)  # type: ignore[arg-type]


@pytest.mark.parametrize("tz", ["Asia/Kolkata", "Europe/Berlin", "America/St_Johns", "UTC"])
def test_windows_of_one_day_and_of_the_maximum(
    engine: Engine, make_tenant: Callable[..., Tenant], tz: str
) -> None:
    """Calls over 40 days around Europe's spring DST change, some exactly on UTC and local
    midnights; pages and totals of 1-day and 31-day windows, before and after calls are moved
    across days and deleted."""
    account_id = make_tenant(timezone=tz, country=COUNTRY).id
    zone = ZoneInfo(tz)
    first = date(2026, 3, 10)
    midnights = []
    for i in range(40):
        day = first + timedelta(days=i)
        local = int(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp())
        utc = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
        midnights += [local - 1, local, utc - 1, utc, utc + 1800]
    base = int(datetime(2026, 3, 10, tzinfo=UTC).timestamp())
    starts = midnights + [base + (i * 7919 * 13) % (40 * DAY) for i in range(1200)]
    batch = [
        make_call(s, ("inbound", "outbound", "internal")[i % 3], None, None, "0987654321", "1001")
        for i, s in enumerate(starts)
    ]
    with db.write(engine) as conn:
        call_queries.upsert_calls(conn, account_id, COUNTRY, batch, origin="api", now=1)
    view = AccountView(tz, COUNTRY, 31)
    windows = [
        (date(2026, 3, 28), date(2026, 3, 28)),
        (date(2026, 3, 29), date(2026, 3, 29)),  # 23 hours in Berlin
        (date(2026, 3, 30), date(2026, 3, 30)),
        (date(2026, 3, 12), date(2026, 4, 12)),  # the maximum: 31 days after from
        (date(2026, 3, 1), date(2026, 4, 1)),  # starts before the first call
    ]

    def check_windows() -> None:
        for start, end in windows:
            for extra in ({}, {"direction": "outbound"}):
                for page, per_page in ((1, 50), (3, 7), (9, 100), (401, 1), (10_000, 1)):
                    params = {"from": start.isoformat(), "to": end.isoformat(), **extra}
                    params.update(page=str(page), per_page=str(per_page))
                    q = parse_list_query(params, view, datetime(2026, 6, 1, tzinfo=UTC).timestamp())
                    expected = reference(engine, account_id, q)
                    assert ours(engine, account_id, q, deep_offset=0) == expected, params
                    assert ours(engine, account_id, q, deep_offset=call_list.DEEP_OFFSET) == expected, params

    check_windows()
    # Corrections: every 7th call a day and a half later, every 11th 5 hours and a second earlier.
    moved = [
        replace(c, start_ts=c.start_ts + shift, end_ts=c.start_ts + shift + 30)
        for i, c in enumerate(batch)
        for shift in ((DAY + DAY // 2,) if i % 7 == 0 else (-5 * 3600 - 1,) if i % 11 == 0 else ())
    ]
    with db.write(engine) as conn:
        assert set(call_queries.upsert_calls(conn, account_id, COUNTRY, moved, origin="api", now=2)) == {
            "updated"
        }
    with db.write(engine) as conn:
        call_queries.delete_calls(conn, account_id, [c.uuid for c in batch[::5]])
    assert_counts_exact(engine, account_id)
    check_windows()


def test_rebuild_recomputes_hour_and_day_counts(engine: Engine, make_tenant: Callable[..., Tenant]) -> None:
    """``counts.rebuild`` (repair) makes both count tables a fresh count again, whatever they held."""
    account_id, other = make_tenant(country=COUNTRY).id, make_tenant(country=COUNTRY).id
    for owner in (account_id, other):
        batch = [
            make_call(SPAN_START + i * 5003, ("inbound", "local")[i % 2], None, None, "0987654321", "1001")
            for i in range(300)
        ]
        with db.write(engine) as conn:
            call_queries.upsert_calls(conn, owner, COUNTRY, batch, origin="api", now=1)
    with db.write(engine) as conn:  # damage both tables: a wrong, a missing and an extra row
        for table, unit in ((call_hour_counts, "hour"), (call_day_counts, "day")):
            conn.execute(table.update().where(table.c.account_id == account_id).values(n=table.c.n + 1))
            conn.execute(table.delete().where(table.c.account_id == account_id, table.c.direction == "local"))
            conn.execute(table.insert().values(account_id=account_id, direction="outbound", n=9, **{unit: 1}))
    with db.write(engine) as conn:
        counts.rebuild(conn, account_id)
    assert_counts_exact(engine, account_id)
    assert_counts_exact(engine, other)
    with db.read(engine) as conn:
        assert counts.window_total(conn, account_id, SPAN_START, SPAN_START + 300 * 5003, None) == 300


def test_a_deep_page_is_served_even_if_a_day_count_drifted(
    engine: Engine, make_tenant: Callable[..., Tenant]
) -> None:
    """Day counts are written with their hours, so they always agree; were one ever larger than its
    hours, the located page would still be read (from its day's end), never silently empty."""
    account_id = make_tenant(timezone="UTC", country=COUNTRY).id
    base = int(datetime(2026, 6, 20, tzinfo=UTC).timestamp())
    batch = [
        make_call(base + i * 1800, "inbound", "1001", "1002", NUMBERS[0], NUMBERS[1]) for i in range(240)
    ]
    with db.write(engine) as conn:
        call_queries.upsert_calls(conn, account_id, COUNTRY, batch, origin="api", now=1)
        conn.execute(
            call_day_counts.update()
            .where(call_day_counts.c.account_id == account_id)
            .values(n=call_day_counts.c.n + 5)
        )
    view = AccountView("UTC", COUNTRY, 31)
    now = datetime(2026, 6, 27, tzinfo=UTC).timestamp()
    # 48 calls a day, counted as 53: offsets 48-52 of each day fall past its hours.
    for offset in range(95, 110):
        q = parse_list_query({"page": str(offset + 1), "per_page": "1"}, view, now)
        uuids, total = ours(engine, account_id, q, deep_offset=0)
        assert total > 240 and len(uuids) == 1, offset
