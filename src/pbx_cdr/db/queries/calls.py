"""Calls: idempotent upsert, detail, deletion, re-keying. The list lives in ``call_list.py``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    String,
    Text,
    any_,
    bindparam,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from pbx_cdr.db.queries import counts
from pbx_cdr.db.tables import calls, recordings
from pbx_cdr.domain.call import Call
from pbx_cdr.domain.phone import search_key

# The columns the API shows (keys and bookkeeping stay inside).
API_COLUMNS = (
    calls.c.id,
    calls.c.uuid,
    calls.c.direction,
    calls.c.source_type,
    calls.c.caller_number,
    calls.c.destination_number,
    calls.c.extension_number,
    calls.c.agent_extension,
    calls.c.start_ts,
    calls.c.answer_ts,
    calls.c.end_ts,
    calls.c.duration,
    calls.c.billsec,
    calls.c.queue_name,
    calls.c.queue_wait_time,
    calls.c.trunk_name,
    calls.c.transfer_count,
    calls.c.result,
    calls.c.hangup_cause,
    calls.c.sip_response_code,
    calls.c.recording_available,
    calls.c.created_ts,
)
_CALL_FIELDS = tuple(Call.__dataclass_fields__)


def _values(call: Call, country: str) -> dict[str, Any]:
    # A shallow copy of the fields: every field is a plain value, and asdict's deep copy cost
    # a third of a 1000-call batch's time.
    values = {name: getattr(call, name) for name in _CALL_FIELDS}
    values["caller_key"] = search_key(call.caller_number, country)
    values["destination_key"] = search_key(call.destination_number, country)
    return values


def upsert_calls(
    conn: Connection, account_id: int, country: str, batch: Sequence[Call], *, origin: str, now: int
) -> list[str]:
    """Insert new calls, update changed ones; one status per call: created, updated or unchanged.

    Idempotent by (account, uuid): a retried post never makes a second row. Hour counts move with
    the rows in the same transaction.
    """
    uuids = [c.uuid for c in batch]
    existing = _existing(conn, account_id, uuids)
    with_recording = _uuids_with_recording(conn, account_id, uuids)
    fresh = [c for c in batch if c.uuid not in existing]
    created: set[str] = set()
    if fresh:
        dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
        stmt = (
            dialect.insert(calls)
            .on_conflict_do_nothing(index_elements=["account_id", "uuid"])
            .returning(calls.c.uuid)
        )
        rows = [
            {
                **_values(c, country),
                "account_id": account_id,
                "recording_available": c.uuid in with_recording,
                "origin": origin,
                "created_ts": now,
                "updated_ts": now,
            }
            for c in fresh
        ]
        if conn.dialect.name == "postgresql":
            created = {r.uuid for r in conn.execute(_PG_INSERT_ARRAYS, _as_arrays(rows))}
        else:
            created = {r.uuid for r in conn.execute(stmt, rows)}
        lost_race = [c.uuid for c in fresh if c.uuid not in created]
        if lost_race:  # another writer inserted them between our read and our insert
            existing.update(_existing(conn, account_id, lost_race))

    deltas: Counter[tuple[int, str]] = counts.hour_deltas(
        (c.start_ts, c.direction) for c in batch if c.uuid in created
    )
    statuses: list[str] = []
    changed: list[dict[str, Any]] = []
    for call in batch:
        if call.uuid in created:
            statuses.append("created")
            continue
        old = existing[call.uuid]
        if all(getattr(old, f) == getattr(call, f) for f in _CALL_FIELDS):
            statuses.append("unchanged")
            continue
        statuses.append("updated")
        changed.append({**_values(call, country), "b_id": old.id, "origin": origin, "updated_ts": now})
        deltas[(old.start_ts // counts.HOUR, old.direction)] -= 1
        deltas[(call.start_ts // counts.HOUR, call.direction)] += 1
    if changed:
        fields: dict[str, Any] = {name: bindparam(name) for name in changed[0] if name != "b_id"}
        conn.execute(update(calls).where(calls.c.id == bindparam("b_id")).values(**fields), changed)
    counts.adjust(conn, account_id, deltas)
    return statuses


# PostgreSQL takes a batch as one array per column: the statement's text is the same for any number
# of calls, so psycopg parses it once and the server plans it once. A multi-row VALUES of 1000 calls
# was 26,000 placeholders, too long for psycopg's query cache: re-parsing it on every batch cost a
# third of the ingest's time.
_INSERTED = (*_CALL_FIELDS, "caller_key", "destination_key", "account_id", "recording_available")
_INSERTED += ("origin", "created_ts", "updated_ts")


def _array_of(name: str) -> Any:
    # Strings as text[]: an explicit cast to varchar(n)[] would cut a long value silently, where the
    # column's own assignment cast refuses it, as a plain INSERT does.
    kind = calls.c[name].type
    return postgresql.ARRAY(Text() if isinstance(kind, String) else kind)


_PG_INSERT_ARRAYS = (
    postgresql.insert(calls)
    .from_select(
        list(_INSERTED),
        select(*(func.unnest(bindparam(name, type_=_array_of(name))) for name in _INSERTED)),
    )
    .on_conflict_do_nothing(index_elements=["account_id", "uuid"])
    .returning(calls.c.uuid)
)


def _as_arrays(rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    return {name: [row[name] for row in rows] for name in _INSERTED}


def _in(column: Any, values: Sequence[str], conn: Connection) -> Any:
    """``column IN values``; on PostgreSQL ``= ANY(array)``, one parameter whatever the count."""
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))
    return column.in_(values)


def _existing(conn: Connection, account_id: int, uuids: Sequence[str]) -> dict[str, Row[Any]]:
    if not uuids:
        return {}
    rows = conn.execute(
        select(calls.c.id, *(calls.c[f] for f in _CALL_FIELDS)).where(
            calls.c.account_id == account_id, _in(calls.c.uuid, uuids, conn)
        )
    )
    return {r.uuid: r for r in rows}


def _uuids_with_recording(conn: Connection, account_id: int, uuids: Sequence[str]) -> set[str]:
    rows = conn.execute(
        select(recordings.c.call_uuid).where(
            recordings.c.account_id == account_id, _in(recordings.c.call_uuid, uuids, conn)
        )
    )
    return {r.call_uuid for r in rows}


def get_call(conn: Connection, account_id: int, uuid: str) -> Any:
    return conn.execute(
        select(*API_COLUMNS).where(calls.c.account_id == account_id, calls.c.uuid == uuid)
    ).one_or_none()


def set_recording_available(conn: Connection, account_id: int, uuid: str, available: bool) -> None:
    conn.execute(
        update(calls)
        .where(calls.c.account_id == account_id, calls.c.uuid == uuid)
        .values(recording_available=available)
    )


def delete_calls(conn: Connection, account_id: int, uuids: Sequence[str]) -> int:
    """Remove calls and their share of the hour counts."""
    rows = conn.execute(
        select(calls.c.id, calls.c.start_ts, calls.c.direction).where(
            calls.c.account_id == account_id, calls.c.uuid.in_(uuids)
        )
    ).all()
    if not rows:
        return 0
    conn.execute(calls.delete().where(calls.c.id.in_([r.id for r in rows])))
    counts.adjust(conn, account_id, counts.hour_deltas(((r.start_ts, r.direction) for r in rows), -1))
    return len(rows)


def rekey_numbers(conn: Connection, account_id: int, country: str, batch_size: int = 5000) -> int:
    """Recompute the phone search keys of an account's calls for a new default country."""
    done = 0
    last_id = 0
    while True:
        rows = conn.execute(
            select(calls.c.id, calls.c.caller_number, calls.c.destination_number)
            .where(calls.c.account_id == account_id, calls.c.id > last_id)
            .order_by(calls.c.id)
            .limit(batch_size)
        ).all()
        if not rows:
            return done
        conn.execute(
            update(calls)
            .where(calls.c.id == bindparam("b_id"))
            .values(caller_key=bindparam("ck"), destination_key=bindparam("dk")),
            [
                {
                    "b_id": r.id,
                    "ck": search_key(r.caller_number, country),
                    "dk": search_key(r.destination_number, country),
                }
                for r in rows
            ],
        )
        done += len(rows)
        last_id = rows[-1].id
