"""In-process list benchmarks: each shape of the list query next to the naive query it replaces.

The naive query is what a Laravel-style paginator runs: an exact ``COUNT(*)`` of the filtered window,
``extension`` as an ``OR`` over two columns, a phone suffix as ``LIKE '%1234'``, deep pages through
``OFFSET``. Ours runs as the route runs it: on SQLite in a read transaction on the event loop
thread's connection, on PostgreSQL awaited over the API's own reader (``db/async_pg.py``), on an
event loop of its own (each run includes the loop's round of about 20 µs).
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import uvloop
from fastapi.encoders import jsonable_encoder
from sqlalchemy import Connection, Engine, and_, func, or_, select

from pbx_cdr.db import engine as db
from pbx_cdr.db.async_pg import AsyncReader
from pbx_cdr.db.queries.call_list import ListPage, list_calls, list_calls_async, reader
from pbx_cdr.db.queries.calls import API_COLUMNS
from pbx_cdr.db.tables import calls
from pbx_cdr.domain.call import api_item
from pbx_cdr.domain.listing import AccountView, ListQuery, parse_list_query

DEEP_PAGE = 10_000


@dataclass(frozen=True)
class Shape:
    name: str
    params: dict[str, str]


@dataclass
class Figure:
    label: str
    p50_ms: float
    p99_ms: float
    base_p50_ms: float
    base_p99_ms: float
    total: int


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000


WARM_UP = 10


def timed(fn: Callable[[], Any], repeat: int, warm_up: int = 1) -> tuple[float, float]:
    for _ in range(warm_up):  # not counted
        fn()
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return percentiles(samples)


def naive_list(
    conn: Connection, account_id: int, q: ListQuery, raw_phone: str | None
) -> tuple[list[Any], int]:
    where: list[Any] = [
        calls.c.account_id == account_id,
        calls.c.start_ts >= q.start_ts,
        calls.c.start_ts < q.end_ts,
    ]
    if q.direction:
        where.append(calls.c.direction == q.direction)
    if q.extension:
        where.append(or_(calls.c.extension_number == q.extension, calls.c.agent_extension == q.extension))
    if raw_phone:
        pattern = "%" + (q.phone_suffix or raw_phone)
        where.append(or_(calls.c.caller_number.like(pattern), calls.c.destination_number.like(pattern)))
    total = conn.execute(select(func.count()).select_from(calls).where(and_(*where))).scalar_one()
    rows = conn.execute(
        select(*API_COLUMNS)
        .where(and_(*where))
        .order_by(calls.c.start_ts.desc(), calls.c.id.desc())
        .limit(q.per_page)
        .offset(q.offset)
    ).all()
    return list(rows), int(total)


def shapes_for(engine: Engine, account_id: int, start_ts: int) -> list[Shape]:
    """The issue's shapes, with a busy extension and a real customer number of this account, and the
    heaviest phone filter there is: the account's hotline."""
    with db.read(engine) as conn:
        ext = conn.execute(
            select(calls.c.extension_number)
            .where(calls.c.account_id == account_id, calls.c.start_ts >= start_ts)
            .where(calls.c.extension_number.is_not(None))
            .group_by(calls.c.extension_number)
            .order_by(func.count().desc())
            .limit(1)
        ).scalar_one()
        recent = conn.execute(
            select(calls.c.caller_number, calls.c.destination_number)
            .where(calls.c.account_id == account_id, calls.c.direction == "inbound")
            .where(calls.c.start_ts >= start_ts)
            .order_by(calls.c.start_ts.desc())
            .limit(500)
        ).all()
    number = recent[0].caller_number  # the latest inbound caller
    # The number most recent inbound calls went to (the others are the account's campaign numbers).
    hotline = Counter(r.destination_number for r in recent).most_common(1)[0][0]
    shapes = [
        Shape("no filter", {}),
        Shape("direction", {"direction": "inbound"}),
        Shape("extension", {"extension": ext}),
        Shape("exact phone", {"phone": number}),
        Shape("4-digit suffix", {"phone": number[-4:]}),
        # The account's own number, which every inbound call goes to: half its calls match.
        Shape("hotline", {"phone": hotline}),
        Shape("hotline's 4-digit suffix", {"phone": hotline[-4:]}),
    ]
    deep = [Shape(f"{s.name}, page {DEEP_PAGE:,}", {**s.params, "page": str(DEEP_PAGE)}) for s in shapes]
    return [*shapes, *deep]


@contextmanager
def route_reads(engine: Engine, account_id: int) -> Iterator[Callable[[ListQuery], ListPage]]:
    """A list as the route reads it (see the module's docstring)."""
    if db.is_sqlite(engine):

        def read(q: ListQuery) -> ListPage:
            with reader(engine) as conn:
                return list_calls(conn, account_id, q)

        yield read
        return
    loop = uvloop.new_event_loop()
    awaited = AsyncReader(engine, 1)
    try:
        yield lambda q: loop.run_until_complete(list_calls_async(awaited, account_id, q))
    finally:
        loop.run_until_complete(awaited.close())
        loop.close()


def bench_lists(
    engine: Engine, account: AccountView, account_id: int, now: float, *, repeat: int, base_repeat: int
) -> list[Figure]:
    with route_reads(engine, account_id) as read:
        return _bench_lists(engine, read, account, account_id, now, repeat=repeat, base_repeat=base_repeat)


def _bench_lists(
    engine: Engine,
    read: Callable[[ListQuery], ListPage],
    account: AccountView,
    account_id: int,
    now: float,
    *,
    repeat: int,
    base_repeat: int,
) -> list[Figure]:
    figures = []
    first = parse_list_query({}, account, now)
    for shape in shapes_for(engine, account_id, first.start_ts):
        q = parse_list_query(shape.params, account, now)

        def ours(q: ListQuery = q) -> int:
            return read(q).total

        def naive(q: ListQuery = q, phone: str | None = shape.params.get("phone")) -> int:
            with db.read(engine) as conn:
                return naive_list(conn, account_id, q, phone)[1]

        total = ours()
        # Ours in the steady state a server is in: psycopg prepares a statement at its 5th run, and
        # PostgreSQL settles on its plan over the 5 executions after that.
        p50, p99 = timed(ours, repeat, WARM_UP)
        b50, b99 = timed(naive, base_repeat)
        figures.append(Figure(shape.name, p50, p99, b50, b99, total))
    return figures


def bench_serialization(engine: Engine, account_id: int, q: ListQuery, repeat: int) -> Figure:
    """A 50-row page: orjson straight to bytes, next to FastAPI's jsonable_encoder + json."""
    import json

    with db.read(engine) as conn:
        total = list_calls(conn, account_id, q).total
        rows = naive_list(conn, account_id, q, None)[0]  # full rows, on either database
    body = {"current_page": 1, "data": [api_item(r) for r in rows], "total": total}
    p50, p99 = timed(lambda: orjson.dumps(body), repeat)
    b50, b99 = timed(lambda: json.dumps(jsonable_encoder(body)).encode(), repeat)
    return Figure("serialize a 50-row page", p50, p99, b50, b99, total)
