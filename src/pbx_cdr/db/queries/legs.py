"""Raw FreeSWITCH legs (``cdr_legs``): kept compressed, linked to the A-leg of their call.

Every leg row names the call it folds into (``call_uuid``). While a leg's A-leg has not arrived,
that is the uuid of the highest ancestor seen so far; when the missing leg arrives, the legs that
waited for it are re-pointed (:func:`repoint`). Writers of one call are serialized by
:func:`lock_calls`: advisory transaction locks on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already
lets one writer in at a time.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, and_, bindparam, func, insert, select, text, update

from pbx_cdr.db.tables import cdr_legs

COMPRESSION_LEVEL = 6


@dataclass(frozen=True)
class StoredLeg:
    leg_uuid: str
    call_uuid: str
    role: str
    body: bytes  # the leg's JSON, as FreeSWITCH wrote it
    received_ts: int


def compress(body: bytes) -> bytes:
    """gzip with no timestamp in its header, so the same leg always compresses to the same bytes."""
    return gzip.compress(body, compresslevel=COMPRESSION_LEVEL, mtime=0)


def decompress(blob: bytes) -> bytes:
    return gzip.decompress(blob)


def lock_key(account_id: int, call_uuid: str) -> int:
    """A signed 64-bit advisory-lock key for one call of one account."""
    digest = hashlib.blake2b(f"pbx-cdr:{account_id}:{call_uuid}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_calls(conn: Connection, account_id: int, uuids: Sequence[str]) -> None:
    """Hold, until the transaction ends, a lock on each of these (leg or call) uuids, in this order.

    Writers lock from the leaf up: the leg, its parent, then the call it resolves to. Every
    writer walks the same tree in the same direction, so none waits for a lock held by a writer
    that waits for one of its own.
    """
    if conn.dialect.name != "postgresql":
        return
    for key in dict.fromkeys(lock_key(account_id, u) for u in uuids):
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def call_uuid_of(conn: Connection, account_id: int, leg_uuid: str) -> str | None:
    """The call a stored leg folds into, or None when the leg is not stored."""
    value = conn.execute(
        select(cdr_legs.c.call_uuid).where(
            cdr_legs.c.account_id == account_id, cdr_legs.c.leg_uuid == leg_uuid
        )
    ).scalar_one_or_none()
    return str(value) if value is not None else None


def calls_of_legs(conn: Connection, account_id: int, leg_uuids: Sequence[str]) -> dict[str, str]:
    """The call each of these stored legs folds into now."""
    found: dict[str, str] = {}
    for start in range(0, len(leg_uuids), 500):
        rows = conn.execute(
            select(cdr_legs.c.leg_uuid, cdr_legs.c.call_uuid).where(
                cdr_legs.c.account_id == account_id,
                cdr_legs.c.leg_uuid.in_(list(leg_uuids[start : start + 500])),
            )
        )
        found.update({r.leg_uuid: r.call_uuid for r in rows})
    return found


def save_leg(
    conn: Connection, account_id: int, leg_uuid: str, call_uuid: str, role: str, body: bytes, now: int
) -> str:
    """Insert the leg, or replace a different body for the same leg: created, updated or unchanged."""
    blob = compress(body)
    row = conn.execute(
        select(cdr_legs.c.id, cdr_legs.c.body_gz, cdr_legs.c.call_uuid).where(
            cdr_legs.c.account_id == account_id, cdr_legs.c.leg_uuid == leg_uuid
        )
    ).one_or_none()
    if row is None:
        conn.execute(
            insert(cdr_legs).values(
                account_id=account_id,
                leg_uuid=leg_uuid,
                call_uuid=call_uuid,
                role=role,
                body_gz=blob,
                received_ts=now,
            )
        )
        return "created"
    if bytes(row.body_gz) == blob and row.call_uuid == call_uuid:
        return "unchanged"
    conn.execute(
        update(cdr_legs)
        .where(cdr_legs.c.id == row.id)
        .values(call_uuid=call_uuid, role=role, body_gz=blob, received_ts=now)
    )
    return "updated"


def repoint(conn: Connection, account_id: int, old_call_uuid: str, new_call_uuid: str) -> int:
    """Legs that waited under ``old_call_uuid`` (a leg that has now arrived) fold into ``new_call_uuid``."""
    result = conn.execute(
        update(cdr_legs)
        .where(cdr_legs.c.account_id == account_id, cdr_legs.c.call_uuid == old_call_uuid)
        .values(call_uuid=new_call_uuid)
    )
    return int(result.rowcount or 0)


def legs_of_calls(conn: Connection, account_id: int, call_uuids: Sequence[str]) -> dict[str, list[StoredLeg]]:
    """Every stored leg of these calls, by call uuid."""
    found: dict[str, list[StoredLeg]] = {u: [] for u in call_uuids}
    if not call_uuids:
        return found
    rows = conn.execute(
        select(
            cdr_legs.c.leg_uuid,
            cdr_legs.c.call_uuid,
            cdr_legs.c.role,
            cdr_legs.c.body_gz,
            cdr_legs.c.received_ts,
        )
        .where(cdr_legs.c.account_id == account_id, cdr_legs.c.call_uuid.in_(list(call_uuids)))
        .order_by(cdr_legs.c.leg_uuid)
    )
    for r in rows:
        found[r.call_uuid].append(
            StoredLeg(r.leg_uuid, r.call_uuid, r.role, decompress(bytes(r.body_gz)), r.received_ts)
        )
    return found


def set_roles(conn: Connection, account_id: int, changes: Mapping[str, str]) -> None:
    if not changes:
        return
    conn.execute(
        update(cdr_legs)
        .where(and_(cdr_legs.c.account_id == account_id, cdr_legs.c.leg_uuid == bindparam("b_leg")))
        .values(role=bindparam("b_role")),
        [{"b_leg": leg, "b_role": role} for leg, role in changes.items()],
    )


def calls_with_a_leg(conn: Connection, account_id: int, call_uuids: Sequence[str]) -> set[str]:
    """Those of these calls whose A-leg is stored (the others still wait for it)."""
    if not call_uuids:
        return set()
    rows = conn.execute(
        select(cdr_legs.c.leg_uuid).where(
            cdr_legs.c.account_id == account_id,
            cdr_legs.c.leg_uuid.in_(list(call_uuids)),
            cdr_legs.c.call_uuid == cdr_legs.c.leg_uuid,
        )
    )
    return {r.leg_uuid for r in rows}


def accounts_with_legs(conn: Connection) -> list[int]:
    return [
        int(r[0])
        for r in conn.execute(select(cdr_legs.c.account_id).distinct().order_by(cdr_legs.c.account_id))
    ]


def call_uuids_page(
    conn: Connection, account_id: int, *, since_ts: int | None, after: str, limit: int
) -> list[str]:
    """The next ``limit`` calls (in uuid order, after ``after``) with a leg received since ``since_ts``."""
    query = select(cdr_legs.c.call_uuid).where(
        cdr_legs.c.account_id == account_id, cdr_legs.c.call_uuid > after
    )
    if since_ts is not None:
        query = query.where(cdr_legs.c.received_ts >= since_ts)
    query = query.group_by(cdr_legs.c.call_uuid).order_by(cdr_legs.c.call_uuid).limit(limit)
    return [str(r[0]) for r in conn.execute(query)]


def count_calls(conn: Connection, account_id: int, *, since_ts: int | None) -> int:
    query = select(func.count(func.distinct(cdr_legs.c.call_uuid))).where(cdr_legs.c.account_id == account_id)
    if since_ts is not None:
        query = query.where(cdr_legs.c.received_ts >= since_ts)
    return int(conn.execute(query).scalar_one())
