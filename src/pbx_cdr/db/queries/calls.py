"""Calls: idempotent upsert, detail, and the list with its exact total."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Integer,
    Row,
    String,
    Text,
    and_,
    any_,
    bindparam,
    func,
    select,
    text,
    union,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from pbx_cdr.db.queries import counts
from pbx_cdr.db.tables import AGENT_ONLY, calls, recordings
from pbx_cdr.domain.call import Call
from pbx_cdr.domain.listing import ListQuery
from pbx_cdr.domain.phone import key_prefix_range, search_key

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


# Below this offset a plain OFFSET is as cheap as locating the hour from the counts.
DEEP_OFFSET = 1000
_ORDER = (calls.c.start_ts.desc(), calls.c.id.desc())
# The unfiltered page, without and with a direction: built once (building it cost more than SQLite
# took to run it), bound per request.
_WINDOW = (
    calls.c.account_id == bindparam("account_id"),
    calls.c.start_ts >= bindparam("low"),
    calls.c.start_ts < bindparam("high"),
)


def _window_page(*where: Any) -> Any:
    """The page's ids from the covering window index (an OFFSET skips index entries, not table rows:
    up to an hour's calls, which at 10M calls cost SQLite 4 ms of row reads), then their rows."""
    ids = (
        select(calls.c.id)
        .where(*where)
        .order_by(*_ORDER)
        .limit(bindparam("limit", type_=Integer))
        .offset(bindparam("offset", type_=Integer))
        .subquery()
    )
    return select(*API_COLUMNS).join_from(ids, calls, calls.c.id == ids.c.id).order_by(*_ORDER)


_WINDOW_PAGE = (_window_page(*_WINDOW), _window_page(*_WINDOW, calls.c.direction == bindparam("direction")))


def _snapshot(conn: Connection) -> None:
    """On PostgreSQL, one snapshot for the total and the page (READ COMMITTED takes one per statement).

    Only when the transaction has run nothing yet: afterwards the isolation level can no longer change,
    and the caller's own choice stands.
    """
    if conn.dialect.name != "postgresql":
        return
    raw = conn.connection.dbapi_connection
    info = getattr(raw, "info", None)
    # psycopg prepares a statement after its fifth run, and PostgreSQL then may switch to a generic
    # plan made without the LIMIT and the filter values: for the extension page that plan walked the
    # window in time order (10 ms instead of 0.5 ms at 1M calls). Custom plans only, for this list.
    custom = "SET LOCAL plan_cache_mode = force_custom_plan"
    if info is not None and info.transaction_status == 0:  # psycopg's IDLE: nothing sent yet
        conn.exec_driver_sql(f"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY; {custom}")
    else:
        conn.exec_driver_sql(custom)


def _branches(account_id: int, q: ListQuery, low: int, high: int) -> tuple[list[Any], bool]:
    """The filter as conditions each served by one index, and whether they are pairwise disjoint.

    ``extension`` is the extension column, or the agent column where it differs from the extension
    (the partial index ``ix_calls_agent_only``): disjoint halves. A phone suffix is a prefix range on
    either search key; a call can match both.
    """
    window = [calls.c.account_id == account_id, calls.c.start_ts >= low, calls.c.start_ts < high]
    if q.direction:
        window.append(calls.c.direction == q.direction)
    ext_parts: list[list[Any]] = [[]]
    if q.extension is not None:
        ext_parts = [
            [calls.c.extension_number == q.extension],
            [calls.c.agent_extension == q.extension, text(AGENT_ONLY)],
        ]
    phone_parts: list[list[Any]] = [[]]
    if q.phone_suffix is not None:
        low_key, high_key = key_prefix_range(q.phone_suffix)
        phone_parts = [
            [calls.c.caller_key >= low_key, calls.c.caller_key < high_key],
            [calls.c.destination_key >= low_key, calls.c.destination_key < high_key],
        ]
    branches = [and_(*window, *e, *p) for e in ext_parts for p in phone_parts]
    return branches, q.phone_suffix is None


def _count(conn: Connection, branches: list[Any], disjoint: bool) -> int:
    if disjoint:  # a sum of index counts; no set of ids is ever built
        return sum(
            int(conn.execute(select(func.count()).select_from(calls).where(b)).scalar_one()) for b in branches
        )
    ids = union(*(select(calls.c.id).where(b) for b in branches)).subquery()
    return int(conn.execute(select(func.count()).select_from(ids)).scalar_one())


def _filtered_page(conn: Connection, branches: list[Any], disjoint: bool, q: ListQuery) -> list[Any]:
    """The page's ids from the branches' index scans, then their rows.

    Disjoint extension halves are each read in index order, only their newest ``offset + per_page``
    ids, and merged. Phone branches are key ranges, in no time order: their (few) ids are gathered
    whole, so no planner is tempted to walk the whole window in time order instead.
    """
    if disjoint:
        reach = q.offset + q.per_page
        arms = [
            select(calls.c.id, calls.c.start_ts).where(b).order_by(*_ORDER).limit(reach).subquery().select()
            for b in branches
        ]
        merged = union_all(*arms).subquery()
    else:
        merged = union(*(select(calls.c.id, calls.c.start_ts).where(b) for b in branches)).subquery()
    top = (
        select(merged.c.id)
        .order_by(merged.c.start_ts.desc(), merged.c.id.desc())
        .limit(q.per_page)
        .offset(q.offset)
        .subquery()
    )
    page = select(*API_COLUMNS).join_from(top, calls, calls.c.id == top.c.id).order_by(*_ORDER)
    return list(conn.execute(page).all())


def list_calls(
    conn: Connection, account_id: int, q: ListQuery, *, deep_offset: int = DEEP_OFFSET
) -> tuple[list[Any], int]:
    """One page, newest first (ties by id), and the exact total of the whole filtered window.

    Without ``extension`` or ``phone`` the total comes from the hour counts, and a deep page starts
    at the hour the counts locate, so no query ever skips more than an hour's calls. With them, the
    total counts index entries and a page merges ordered index scans.
    """
    _snapshot(conn)
    if q.extension is None and q.phone_suffix is None:
        total = counts.window_total(conn, account_id, q.start_ts, q.end_ts, q.direction)
        if q.offset >= total:
            return [], total
        high, skip = q.end_ts, q.offset
        if q.offset >= deep_offset:
            high, skip = counts.locate(conn, account_id, q.start_ts, q.end_ts, q.direction, q.offset)
        params = {
            "account_id": account_id,
            "low": q.start_ts,
            "high": high,
            "direction": q.direction,
            "limit": q.per_page,
            "offset": skip,
        }
        return list(conn.execute(_WINDOW_PAGE[bool(q.direction)], params).all()), total

    branches, disjoint = _branches(account_id, q, q.start_ts, q.end_ts)
    total = _count(conn, branches, disjoint)
    if q.offset >= total:
        return [], total
    return _filtered_page(conn, branches, disjoint, q), total


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
