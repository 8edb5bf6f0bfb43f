"""Helpers shared by the tests that write calls straight through the query layer."""

from __future__ import annotations

import itertools
import uuid as uuidlib
from collections import Counter

from sqlalchemy import Engine, select

from pbx_cdr.db import engine as db
from pbx_cdr.db.queries import counts
from pbx_cdr.db.tables import call_day_counts, call_hour_counts, call_number_counts, calls
from pbx_cdr.domain.call import Call

_uuids = itertools.count(1)


def make_call(start: int, direction: str, ext: str | None, agent: str | None, caller: str, dest: str) -> Call:
    """An unanswered 30-second call with a fresh uuid (unique within the test run)."""
    return Call(
        uuid=str(uuidlib.UUID(int=next(_uuids))),
        direction=direction,
        source_type="internal",
        caller_number=caller,
        destination_number=dest,
        extension_number=ext,
        agent_extension=agent,
        start_ts=start,
        answer_ts=None,
        end_ts=start + 30,
        duration=30,
        billsec=0,
        queue_name=None,
        queue_wait_time=None,
        trunk_name=None,
        transfer_count=0,
        result="no_answer",
        hangup_cause="NO_ANSWER",
        sip_response_code=None,
    )


def assert_counts_exact(engine: Engine, account_id: int) -> None:
    """The kept hour, day and number counts equal a fresh count of the account's rows (zero rows
    aside)."""
    with db.read(engine) as conn:
        hours = {
            (r.hour, r.direction): r.n
            for r in conn.execute(select(call_hour_counts).where(call_hour_counts.c.account_id == account_id))
            if r.n
        }
        days = {
            (r.day, r.direction): r.n
            for r in conn.execute(select(call_day_counts).where(call_day_counts.c.account_id == account_id))
            if r.n
        }
        rows = conn.execute(
            select(calls.c.start_ts, calls.c.direction).where(calls.c.account_id == account_id)
        ).all()
    fresh: Counter[tuple[int, str]] = Counter((r.start_ts // counts.HOUR, r.direction) for r in rows)
    assert hours == dict(fresh)
    assert days == {k: n for k, n in counts.days_of(fresh.items()).items() if n}
    assert_number_counts_exact(engine, account_id)


def assert_number_counts_exact(engine: Engine, account_id: int) -> None:
    """The kept number counts equal a fresh count of the account's inbound and local calls by
    destination key and hour."""
    nc = call_number_counts
    with db.read(engine) as conn:
        numbers = {
            (r.hour, r.direction, r.number_key): r.n
            for r in conn.execute(select(nc).where(nc.c.account_id == account_id))
            if r.n
        }
        rows = conn.execute(
            select(calls.c.start_ts, calls.c.direction, calls.c.destination_key).where(
                calls.c.account_id == account_id
            )
        ).all()
    fresh = counts.hour_deltas((r.start_ts, r.direction, r.destination_key) for r in rows)
    assert numbers == {k: n for k, n in fresh.items() if n and k[2] is not None}
