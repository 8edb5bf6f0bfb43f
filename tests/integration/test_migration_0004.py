"""Migration 0004 on a database holding data: the (account_id, uuid) key becomes a named unique index
with the same semantics, identifier columns compare bytewise on PostgreSQL, and it downgrades cleanly."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, func, insert, inspect, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from pbx_cdr.db.migrate import current_revision, upgrade
from pbx_cdr.db.queries.recordings import newest_call_with_recording
from pbx_cdr.db.tables import accounts, calls, recordings

BYTEWISE = {("calls", "uuid"), ("calls", "extension_number"), ("calls", "agent_extension")}
BYTEWISE |= {("recordings", "call_uuid")}
_names = itertools.count()


def new_account(conn: Connection, name: str, created_ts: int, timezone: str = "UTC") -> int:
    """An account as every migration since the first can store it (no column added later)."""
    return int(
        conn.execute(
            insert(accounts).returning(accounts.c.id),
            {
                "name": name,
                "timezone": timezone,
                "country": "VN",
                "max_window_days": 31,
                "recording_url_ttl": 1800,
                "rate_limit_per_minute": 0,
                "created_ts": created_ts,
            },
        ).scalar_one()
    )


def call(account_id: int, uuid: str, start: int, extension: str | None = "1001") -> dict[str, Any]:
    return {
        "account_id": account_id,
        "uuid": uuid,
        "direction": "inbound",
        "source_type": "inbound",
        "caller_number": "0901234567",
        "destination_number": "19001234",
        "caller_key": "765432109",
        "destination_key": "43210091",
        "extension_number": extension,
        "agent_extension": extension,
        "start_ts": start,
        "answer_ts": start + 5,
        "end_ts": start + 65,
        "duration": 65,
        "billsec": 60,
        "queue_name": "sales",
        "queue_wait_time": 3,
        "trunk_name": "viettel",
        "transfer_count": 0,
        "result": "answered",
        "hangup_cause": "NORMAL_CLEARING",
        "sip_response_code": None,
        "recording_available": True,
        "origin": "api",
        "created_ts": start + 70,
        "updated_ts": start + 70,
    }


def seed(engine: Engine) -> tuple[int, int]:
    with engine.begin() as conn:
        ids = [
            conn.execute(
                insert(accounts).returning(accounts.c.id),
                {
                    "name": name,
                    "timezone": "Asia/Ho_Chi_Minh",
                    "country": "VN",
                    "max_window_days": 31,
                    "recording_url_ttl": 1800,
                    "rate_limit_per_minute": 0,
                    "created_ts": 1_700_000_000,
                },
            ).scalar_one()
            for name in ("a", "b")
        ]
        shared = "9b2f0c4e-6f1a-4c1e-9d57-0e4b1f2a3c4d"
        conn.execute(
            insert(calls),
            [
                call(ids[0], shared, 1_700_000_000),
                call(ids[1], shared, 1_700_000_100),  # the same uuid in another account
                call(ids[0], "Z-upper-and-lower-z", 1_700_000_200, None),
                call(ids[0], "a-lower-first", 1_700_000_300, "1002"),
            ],
        )
        conn.execute(
            insert(recordings),
            {
                "account_id": ids[0],
                "call_uuid": shared,
                "storage_key": "k",
                "file_size": 1,
                "duration": 60,
                "sha256": "0" * 64,
                "audio_format": "wav",
                "recorded_ts": None,
                "created_ts": 1_700_000_100,
            },
        )
    return ids[0], ids[1]


def key_shape(engine: Engine) -> tuple[list[Any], list[Any]]:
    inspector = inspect(engine)
    unique_indexes = [
        (i["name"], tuple(i["column_names"]))
        for i in inspector.get_indexes("calls")
        if i["unique"] and not i.get("duplicates_constraint")
    ]
    constraints = [(u["name"], tuple(u["column_names"])) for u in inspector.get_unique_constraints("calls")]
    return unique_indexes, constraints


def collations(engine: Engine) -> dict[tuple[str, str], str | None]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT table_name, column_name, collation_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name IN ('calls', 'recordings')"
            )
        )
        return {(r.table_name, r.column_name): r.collation_name for r in rows}


def check_key_semantics(engine: Engine, account: int, other: int, fresh: str) -> None:
    shared = "9b2f0c4e-6f1a-4c1e-9d57-0e4b1f2a3c4d"
    upsert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    with engine.begin() as conn:
        skipped = conn.execute(
            upsert(calls)
            .values(call(account, shared, 1_700_001_000))
            .on_conflict_do_nothing(index_elements=["account_id", "uuid"])
            .returning(calls.c.uuid)
        ).all()
        assert skipped == []
        conn.execute(insert(calls), call(other, fresh, 1_700_001_000))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(calls), call(account, shared, 1_700_002_000))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(calls), call(other, fresh, 1_700_002_000))


def test_0004_on_a_database_with_data(empty_engine: Engine) -> None:
    engine = empty_engine
    upgrade(engine, "0003")
    account, other = seed(engine)
    assert key_shape(engine)[1] == [("uq_calls_account_uuid", ("account_id", "uuid"))]

    upgrade(engine, "0004")
    assert current_revision(engine) == "0004"
    assert key_shape(engine) == ([("uq_calls_account_uuid", ("account_id", "uuid"))], [])
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(calls)).scalar_one() == 4
        uuids = conn.execute(select(calls.c.uuid).where(calls.c.account_id == account)).scalars().all()
        assert sorted(uuids) == sorted(
            ["9b2f0c4e-6f1a-4c1e-9d57-0e4b1f2a3c4d", "Z-upper-and-lower-z", "a-lower-first"]
        )
        # a join between the two uuid columns still matches (one collation on both sides)
        assert newest_call_with_recording(conn, account) == "9b2f0c4e-6f1a-4c1e-9d57-0e4b1f2a3c4d"
        extension = conn.execute(
            select(func.count()).select_from(calls).where(calls.c.extension_number == "1002")
        ).scalar_one()
        assert extension == 1
    if engine.dialect.name == "postgresql":
        got = collations(engine)
        assert {k for k, v in got.items() if v == "C"} == BYTEWISE | {
            ("calls", "caller_key"),
            ("calls", "destination_key"),
        }
    check_key_semantics(engine, account, other, "only-in-b")

    alembic_downgrade(engine, "0003")
    assert key_shape(engine) == ([], [("uq_calls_account_uuid", ("account_id", "uuid"))])
    if engine.dialect.name == "postgresql":
        assert all(collations(engine)[k] is None for k in BYTEWISE)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(calls)).scalar_one() == 5
    upgrade(engine)  # and on to the head, whatever follows 0004
    assert key_shape(engine)[0] == [("uq_calls_account_uuid", ("account_id", "uuid"))]
    check_key_semantics(engine, account, other, "only-in-b-again")


def alembic_downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    from pbx_cdr.db.migrate import alembic_config

    command.downgrade(alembic_config(engine), revision)
