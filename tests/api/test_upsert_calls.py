"""``upsert_calls``: insert first, read back only the calls that were already there (SQLite, PostgreSQL).

New calls are inserted by one statement that skips the uuids already stored and reports the rows it
made; only the rest are read back and compared; every hour-count change is applied once, sorted.
These tests hold each branch to the statuses, rows and counts of the definition.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import DataError

from pbx_cdr.db import engine as db
from pbx_cdr.db.queries import counts
from pbx_cdr.db.queries.calls import upsert_calls
from pbx_cdr.db.tables import calls, recordings
from pbx_cdr.domain.call import Call
from pbx_cdr.ingest.json_cdr import parse_payload
from tests.api.calls_support import assert_counts_exact
from tests.conftest import Tenant, cdr

HOUR = 3600


def uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def call(n: int, hour: int = 8, **fields: Any) -> Call:
    day = "2026-06-27T"
    [parsed], _ = parse_payload(
        cdr(
            uid(n),
            start_time=f"{day}{hour:02d}:15:42+00:00",
            answer_time=f"{day}{hour:02d}:15:50+00:00",
            end_time=f"{day}{hour:02d}:16:56+00:00",
            **fields,
        )
    )
    return parsed


def upsert(engine: Engine, account_id: int, batch: list[Call], now: int = 100) -> list[str]:
    with db.write(engine) as conn:
        return upsert_calls(conn, account_id, "VN", batch, origin="api", now=now)


def stored(engine: Engine, account_id: int) -> dict[str, Any]:
    with db.read(engine) as conn:
        rows = conn.execute(select(calls).where(calls.c.account_id == account_id)).all()
    return {r.uuid: r for r in rows}


def test_new_unchanged_and_updated_calls_in_one_batch(engine: Engine, tenant: Tenant) -> None:
    assert upsert(engine, tenant.id, [call(1), call(2), call(3)], now=100) == ["created"] * 3
    moved = call(2, hour=11, direction="inbound", caller_number="0987654321", destination_number="1002")
    batch = [call(4, hour=23), call(1), moved, call(5, hour=0), call(3, queue_name="sales")]
    assert upsert(engine, tenant.id, batch, now=200) == [
        "created",
        "unchanged",
        "updated",
        "created",
        "updated",
    ]
    rows = stored(engine, tenant.id)
    assert len(rows) == 5
    assert (rows[uid(1)].updated_ts, rows[uid(4)].created_ts, rows[uid(4)].updated_ts) == (100, 200, 200)
    assert (rows[uid(2)].created_ts, rows[uid(2)].updated_ts) == (100, 200)
    assert (rows[uid(2)].direction, rows[uid(2)].start_ts // HOUR) == ("inbound", moved.start_ts // HOUR)
    assert rows[uid(2)].caller_key == "123456789"  # the search keys follow an update
    assert rows[uid(3)].queue_name == "sales"
    assert_counts_exact(engine, tenant.id)


def test_every_field_and_key_of_a_new_call_is_stored(engine: Engine, tenant: Tenant) -> None:
    new = call(1, queue_name="sales", queue_wait_time=7, trunk_name="vnpt", sip_response_code="200")
    assert upsert(engine, tenant.id, [new], now=123) == ["created"]
    row = stored(engine, tenant.id)[uid(1)]
    assert {f.name: getattr(row, f.name) for f in dataclasses.fields(Call)} == dataclasses.asdict(new)
    assert (row.origin, row.created_ts, row.updated_ts, row.recording_available) == ("api", 123, 123, False)
    assert (row.caller_key, row.destination_key) == ("1001", "123456789")


def test_a_recording_that_came_first_marks_the_new_call(engine: Engine, tenant: Tenant) -> None:
    with db.write(engine) as conn:
        conn.execute(
            insert(recordings).values(
                account_id=tenant.id,
                call_uuid=uid(2),
                storage_key="k",
                file_size=1,
                duration=1,
                sha256="0" * 64,
                audio_format="wav",
                created_ts=1,
            )
        )
    assert upsert(engine, tenant.id, [call(1), call(2)]) == ["created", "created"]
    rows = stored(engine, tenant.id)
    assert (rows[uid(1)].recording_available, rows[uid(2)].recording_available) == (False, True)


def test_a_batch_across_many_hours_counts_each(engine: Engine, tenant: Tenant) -> None:
    batch = [call(n, hour=n % 24, direction=("inbound", "outbound")[n % 2]) for n in range(100)]
    assert upsert(engine, tenant.id, batch) == ["created"] * 100
    assert upsert(engine, tenant.id, batch[::-1]) == ["unchanged"] * 100
    assert_counts_exact(engine, tenant.id)


@pytest.fixture
def second_engine(engine: Engine) -> Iterator[Engine]:
    other = db.make_engine(engine.url.render_as_string(hide_password=False), sqlite_synchronous="NORMAL")
    yield other
    other.dispose()


def test_a_call_another_writer_inserts_meanwhile_is_not_inserted_twice(
    engine: Engine, second_engine: Engine, tenant: Tenant
) -> None:
    """Two transactions insert the same uuid; the later one finds it made and reads it back."""
    done: list[list[str]] = []
    with db.write(engine) as conn:
        assert upsert_calls(conn, tenant.id, "VN", [call(1)], origin="api", now=100) == ["created"]
        # The other writer's insert waits for this uncommitted row (PostgreSQL: on the unique index;
        # SQLite: for the write lock), whichever moment it reaches it.
        other = threading.Thread(
            target=lambda: done.append(upsert(second_engine, tenant.id, [call(1), call(2)]))
        )
        other.start()
    other.join(60)
    assert done == [["unchanged", "created"]]
    assert len(stored(engine, tenant.id)) == 2
    assert_counts_exact(engine, tenant.id)


# SQLite does not bound a text column's length: PostgreSQL only.
@pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_an_over_long_value_is_refused_not_cut(engine: Engine, tenant: Tenant) -> None:
    too_long = dataclasses.replace(call(1), caller_number="1" * 65)
    with pytest.raises(DataError, match="too long"):
        upsert(engine, tenant.id, [too_long])
    assert stored(engine, tenant.id) == {}


def test_a_batch_naming_a_uuid_twice_is_refused(engine: Engine, tenant: Tenant) -> None:
    with pytest.raises(ValueError, match="more than once"):
        upsert(engine, tenant.id, [call(1), call(2), call(1, hour=9)])
    assert stored(engine, tenant.id) == {}


def on_day(c: Call, days: int) -> Call:
    """The call ``days`` UTC days later."""
    shift = days * 24 * HOUR
    answer = None if c.answer_ts is None else c.answer_ts + shift
    return dataclasses.replace(c, start_ts=c.start_ts + shift, answer_ts=answer, end_ts=c.end_ts + shift)


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
# (hour, day) of: the two calls stored first, then a's new and moved call, then b's.
@pytest.mark.parametrize(
    "at",
    [
        ((20, 0), (5, 0), (10, 0), (21, 0), (21, 0), (10, 0)),  # hour counts cross
        ((20, 1), (5, 1), (10, 0), (21, 2), (22, 2), (11, 0)),  # only day counts cross
    ],
    ids=["hours", "days"],
)
def test_crossing_new_and_moved_calls_do_not_deadlock(
    engine: Engine,
    second_engine: Engine,
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
    at: tuple[tuple[int, int], ...],
) -> None:
    """Two transactions, each a new call in one hour and a call moved into the other's hour; or,
    in hours of their own, a new call on one UTC day and a call moved into the other's day.

    Both reach their count updates together (a barrier). Count rows are locked in one sorted
    order per transaction, hours before days, so neither waits for the other in a cycle
    (PostgreSQL would abort one with "deadlock detected" when a transaction's new and moved calls
    took their locks in two statements).
    """
    first, second, new_a, moved_a, new_b, moved_b = (on_day(call(0, hour=h), d) for h, d in at)
    a = [dataclasses.replace(new_a, uuid=uid(3)), dataclasses.replace(moved_a, uuid=uid(1))]
    b = [dataclasses.replace(new_b, uuid=uid(4)), dataclasses.replace(moved_b, uuid=uid(2))]
    upsert(
        engine, tenant.id, [dataclasses.replace(first, uuid=uid(1)), dataclasses.replace(second, uuid=uid(2))]
    )
    barrier = threading.Barrier(2, timeout=30)
    adjust = counts.adjust

    def together(*args: Any) -> None:
        barrier.wait()
        adjust(*args)

    monkeypatch.setattr(counts, "adjust", together)
    jobs = {
        "a": (engine, a),
        "b": (second_engine, b),
    }
    outcome: dict[str, Any] = {}

    def run(name: str) -> None:
        on, batch = jobs[name]
        try:
            outcome[name] = upsert(on, tenant.id, batch)
        except Exception as exc:  # the deadlock surfaced as an OperationalError
            outcome[name] = repr(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert outcome == {"a": ["created", "updated"], "b": ["created", "updated"]}
    monkeypatch.setattr(counts, "adjust", adjust)
    assert_counts_exact(engine, tenant.id)
