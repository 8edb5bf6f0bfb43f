"""Calls: idempotent upsert, detail, deletion, re-keying. The list lives in ``call_list.py``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    Row,
    String,
    any_,
    bindparam,
    select,
    update,
)
from sqlalchemy.dialects import postgresql

from pbx_cdr.db.driver import SqliteWrites
from pbx_cdr.db.queries import counts
from pbx_cdr.db.queries.accounts import bump_data_version
from pbx_cdr.db.tables import NUMBER_COUNTED, calls
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


def _number_key(call: Call, country: str) -> str:
    """The destination's search key where its direction is counted per number (else unused)."""
    return search_key(call.destination_number, country) if call.direction in NUMBER_COUNTED else ""


@dataclass
class AccountChanges:
    """What a transaction's upserts owe their accounts: count deltas and data-version bumps.

    Applied once, at the end, in one order for every transaction: the count rows of the accounts
    (hours, days, then numbers), then the accounts' rows by id. A transaction that applied each
    upsert's share as it went (a group commit holds several upserts of one account when their
    requests' times differ) could hold an account's row while it waited for count rows held by
    another transaction waiting for that row: PostgreSQL found such a deadlock under concurrent
    batch posts.
    """

    deltas: dict[int, Counter[counts.Bucket]] = field(default_factory=dict)
    changed: set[int] = field(default_factory=set)

    def add(self, account_id: int, deltas: Counter[counts.Bucket], *, changed: bool) -> None:
        self.deltas.setdefault(account_id, Counter()).update(deltas)
        if changed:
            self.changed.add(account_id)

    def apply(self, conn: Connection) -> None:
        for account_id in sorted(self.deltas):
            counts.adjust(conn, account_id, self.deltas[account_id])
        for account_id in sorted(self.changed):
            bump_data_version(conn, account_id)
        self.deltas.clear()
        self.changed.clear()


def upsert_calls(
    conn: Connection,
    account_id: int,
    country: str,
    batch: Sequence[Call],
    *,
    origin: str,
    now: int,
    owed: AccountChanges | None = None,
) -> list[str]:
    """Insert new calls, update changed ones; one status per call: created, updated or unchanged.

    Idempotent by (account, uuid): a retried post never makes a second row. Hour counts move with
    the rows in the same transaction: at once, or added to ``owed`` for the caller to apply when
    its transaction has made all its upserts.

    Every call is offered to one insert that skips the uuids already there (``ON CONFLICT DO
    NOTHING``) and reports the rows it made; only the others are read back and compared. New calls,
    by far the common case, cost one insert and one count update, whatever the batch's size; the
    statements' text never changes, so both databases keep them prepared. The uuids of a batch
    must be distinct.
    """
    if not batch:
        return []
    if len({c.uuid for c in batch}) != len(batch):
        raise ValueError("a batch names a call's uuid more than once")
    changes = owed if owed is not None else AccountChanges()
    if conn.dialect.name == "postgresql":
        created = _insert_new_pg(conn, account_id, country, batch, origin, now)
    else:
        created = _insert_new_sqlite(conn, account_id, country, batch, origin, now)
    deltas: Counter[counts.Bucket] = counts.hour_deltas(
        (c.start_ts, c.direction, _number_key(c, country)) for c in batch if c.uuid in created
    )
    statuses = ["created"] * len(batch)
    changed: list[dict[str, Any]] = []
    if len(created) != len(batch):  # when every call is new, nothing is read back
        existing = _existing(conn, account_id, [c.uuid for c in batch if c.uuid not in created])
        for i, call in enumerate(batch):
            if call.uuid in created:
                continue
            old = existing[call.uuid]
            if all(getattr(old, f) == getattr(call, f) for f in _CALL_FIELDS):
                statuses[i] = "unchanged"
                continue
            statuses[i] = "updated"
            changed.append({**_values(call, country), "b_id": old.id, "origin": origin, "updated_ts": now})
            deltas.update(counts.hour_deltas([(old.start_ts, old.direction, old.destination_key)], -1))
            deltas.update(counts.hour_deltas([(call.start_ts, call.direction, _number_key(call, country))]))
        if changed:
            conn.execute(_UPDATE, changed)
    # An all-unchanged retry changes nothing a cached page shows.
    changes.add(account_id, deltas, changed=bool(created or changed))
    if owed is None:
        changes.apply(conn)
    return statuses


# The columns an insert writes, in the order of the parameters below: the call's own fields, the
# two search keys, then what the batch shares (account, origin, created and updated time).
_KEYS = ("caller_key", "destination_key")
_SHARED = ("account_id", "origin", "created_ts", "updated_ts")
_row_of = attrgetter(*_CALL_FIELDS)  # a call's fields as a tuple, in C
_uuid_of = itemgetter(_CALL_FIELDS.index("uuid"))  # of such a tuple


def _rows(batch: Sequence[Call], country: str) -> list[tuple[Any, ...]]:
    return [
        (*_row_of(c), search_key(c.caller_number, country), search_key(c.destination_number, country))
        for c in batch
    ]


# SQLite: one prepared INSERT run for every call by the driver (a loop in C). The writer holds
# SQLite's write lock from BEGIN IMMEDIATE, so no other writer can add a uuid between the read of
# the existing ones and this insert: the calls it is given are exactly the new ones.
_N_OWN = len(_CALL_FIELDS) + len(_KEYS)
_SQLITE_INSERT = (
    f"INSERT INTO calls ({', '.join((*_CALL_FIELDS, *_KEYS, *_SHARED, 'recording_available'))}) "
    f"VALUES ({', '.join(f'?{i}' for i in range(1, _N_OWN + 1))}, "
    f"?{_N_OWN + 1}, ?{_N_OWN + 2}, ?{_N_OWN + 3}, ?{_N_OWN + 3}, "
    f"EXISTS (SELECT 1 FROM recordings WHERE account_id = ?{_N_OWN + 1} AND call_uuid = ?1))"
)
_SQLITE_EXISTING_UUIDS = (
    "SELECT uuid FROM calls WHERE account_id = ? AND uuid IN (SELECT value FROM json_each(?))"
)


def _insert_new_sqlite(
    conn: Connection, account_id: int, country: str, batch: Sequence[Call], origin: str, now: int
) -> set[str]:
    driver = SqliteWrites(conn)
    uuids = [c.uuid for c in batch]
    there = {r[0] for r in driver.rows(_SQLITE_EXISTING_UUIDS, (account_id, orjson.dumps(uuids).decode()))}
    fresh = [c for c in batch if c.uuid not in there] if there else batch
    if not fresh:
        return set()
    shared = (account_id, origin, now)
    driver.run_many(_SQLITE_INSERT, [(*row, *shared) for row in _rows(fresh, country)])
    return {c.uuid for c in fresh}


# PostgreSQL: one statement per batch, its calls one JSON array of rows (its text, and so its plan,
# is the same for any number of calls: a 1000-row multi-VALUES was 26,000 placeholders, re-parsed per
# batch). orjson writes a 1000-call batch in 0.1 ms; psycopg's dumping of one array per column took
# 16 ms, more than the server spent inserting. Strings reach their varchar(n) columns by assignment,
# which refuses an over-long value instead of cutting it; JSON null is SQL NULL.
def _pg_value(name: str, position: int) -> str:
    text_value = f"r->>{position}"
    return text_value if isinstance(calls.c[name].type, String) else f"({text_value})::bigint"


_OWN = (*_CALL_FIELDS, *_KEYS)
_PG_INSERT = f"""
INSERT INTO calls ({", ".join((*_OWN, *_SHARED, "recording_available"))})
SELECT t.*, %(account_id)s::integer, %(origin)s::text, %(now)s::bigint, %(now)s::bigint,
       EXISTS (SELECT 1 FROM recordings r
               WHERE r.account_id = %(account_id)s::integer AND r.call_uuid = t.uuid)
FROM (SELECT {", ".join(f"{_pg_value(n, i)} AS {n}" for i, n in enumerate(_OWN))}
      FROM jsonb_array_elements(%(rows)s::jsonb) AS r) AS t
ON CONFLICT (account_id, uuid) DO NOTHING
RETURNING uuid
"""


def _insert_new_pg(
    conn: Connection, account_id: int, country: str, batch: Sequence[Call], origin: str, now: int
) -> set[str]:
    # Sorted by uuid: two writers inserting overlapping uuids take their index entries in one order.
    rows = sorted(_rows(batch, country), key=_uuid_of)
    params = {"rows": orjson.dumps(rows).decode(), "account_id": account_id, "origin": origin, "now": now}
    return {r[0] for r in conn.exec_driver_sql(_PG_INSERT, params)}


_UPDATE = (
    update(calls)
    .where(calls.c.id == bindparam("b_id"))
    .values(**{name: bindparam(name) for name in (*_OWN, "origin", "updated_ts")})
)


def _in(column: Any, values: Sequence[str], conn: Connection) -> Any:
    """``column IN values``; on PostgreSQL ``= ANY(array)``, one parameter whatever the count."""
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))
    return column.in_(values)


def _existing(conn: Connection, account_id: int, uuids: Sequence[str]) -> dict[str, Row[Any]]:
    if not uuids:
        return {}
    rows = conn.execute(
        select(calls.c.id, calls.c.destination_key, *(calls.c[f] for f in _CALL_FIELDS)).where(
            calls.c.account_id == account_id, _in(calls.c.uuid, uuids, conn)
        )
    )
    return {r.uuid: r for r in rows}


def get_call(conn: Connection, account_id: int, uuid: str) -> Any:
    return conn.execute(
        select(*API_COLUMNS).where(calls.c.account_id == account_id, calls.c.uuid == uuid)
    ).one_or_none()


def set_recording_available(conn: Connection, account_id: int, uuid: str, available: bool) -> None:
    result = conn.execute(
        update(calls)
        .where(calls.c.account_id == account_id, calls.c.uuid == uuid)
        .values(recording_available=available)
    )
    if result.rowcount:
        bump_data_version(conn, account_id)


def delete_calls(conn: Connection, account_id: int, uuids: Sequence[str]) -> int:
    """Remove calls and their share of the hour counts."""
    rows = conn.execute(
        select(calls.c.id, calls.c.start_ts, calls.c.direction, calls.c.destination_key).where(
            calls.c.account_id == account_id, calls.c.uuid.in_(uuids)
        )
    ).all()
    if not rows:
        return 0
    conn.execute(calls.delete().where(calls.c.id.in_([r.id for r in rows])))
    deltas = counts.hour_deltas(((r.start_ts, r.direction, r.destination_key) for r in rows), -1)
    counts.adjust(conn, account_id, deltas)
    bump_data_version(conn, account_id)
    return len(rows)


def rekey_numbers(conn: Connection, account_id: int, country: str, batch_size: int = 5000) -> int:
    """Recompute the phone search keys of an account's calls for a new default country."""
    bump_data_version(conn, account_id)  # phone searches may now find other calls
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
            counts.rebuild_numbers(conn, account_id)  # counted by destination key
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
