"""Migration 0009: on PostgreSQL, the calls' account is checked by triggers, once a statement.

The foreign key's every rule must still hold, on both databases (SQLite keeps the declared key):
no call names an account that does not exist, however it is written; a deleted account takes its
calls; an account's id does not change under its calls. On PostgreSQL, also what only a server with
concurrent transactions can show: an account deleted while its calls are being inserted.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError

from pbx_cdr.db.migrate import alembic_config, current_revision, upgrade
from pbx_cdr.db.queries.calls import upsert_calls
from pbx_cdr.db.tables import accounts, calls
from pbx_cdr.ingest.json_cdr import parse_payload
from tests.conftest import cdr
from tests.integration.test_migration_0004 import call, new_account

TRIGGERS = {
    ("pbx_cdr_calls_inserted", "calls"),
    ("pbx_cdr_calls_account_changed", "calls"),
    ("pbx_cdr_accounts_deleted", "accounts"),
    ("pbx_cdr_accounts_rekeyed", "accounts"),
    ("pbx_cdr_accounts_truncated", "accounts"),
}
START = 1_782_000_000
FOREIGN_KEY_VIOLATION = "23503"


def triggers(engine: Engine) -> set[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT tgname, tgrelid::regclass::text FROM pg_trigger"
                " WHERE NOT tgisinternal AND tgname NOT LIKE 'pbx_cdr_auth_%'"
            )
        )
        return {(name, table) for name, table in rows}


def calls_foreign_keys(engine: Engine) -> list[str]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            return list(
                conn.execute(
                    text(
                        "SELECT conname FROM pg_constraint"
                        " WHERE conrelid = 'calls'::regclass AND contype = 'f'"
                    )
                ).scalars()
            )
    with engine.connect() as conn:
        return [row[2] for row in conn.exec_driver_sql("PRAGMA foreign_key_list(calls)")]


def calls_of(engine: Engine, account_id: int) -> int:
    with engine.connect() as conn:
        query = select(func.count()).select_from(calls).where(calls.c.account_id == account_id)
        return int(conn.execute(query).scalar_one())


def refused(exc: pytest.ExceptionInfo[IntegrityError], engine: Engine, key: int | None = None) -> None:
    """The foreign key's own error, whichever rule refused: on PostgreSQL its SQLSTATE and name."""
    assert "foreign key" in str(exc.value).lower()
    if engine.dialect.name == "postgresql":
        assert getattr(exc.value.orig, "sqlstate", None) == FOREIGN_KEY_VIOLATION
        diag = exc.value.orig.diag  # type: ignore[union-attr]
        assert diag.constraint_name == "calls_account_id_fkey"
        assert (diag.message_detail or "").startswith("Key (")
        if key is not None:
            assert f"=({key})" in (diag.message_detail or "")


@pytest.fixture
def migrated(empty_engine: Engine) -> Engine:
    upgrade(empty_engine)
    return empty_engine


def test_0009_up_and_down(empty_engine: Engine) -> None:
    engine = empty_engine
    upgrade(engine, "0009")
    assert current_revision(engine) == "0009"
    if engine.dialect.name == "sqlite":
        assert calls_foreign_keys(engine) == ["accounts"]  # SQLite keeps the declared key
        return
    assert calls_foreign_keys(engine) == []
    assert triggers(engine) == TRIGGERS
    with engine.begin() as conn:
        account = new_account(conn, "a", START)
        conn.execute(insert(calls), [call(account, f"call-{i}", START + i) for i in range(3)])
    command.downgrade(alembic_config(engine), "0008")
    assert calls_foreign_keys(engine) == ["calls_account_id_fkey"]
    with engine.connect() as conn:
        definition = conn.execute(
            text(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'calls_account_id_fkey'"
            )
        ).scalar_one()
    assert definition == "FOREIGN KEY (account_id) REFERENCES accounts(id) ON DELETE CASCADE"
    assert triggers(engine) == set()
    assert calls_of(engine, account) == 3
    upgrade(engine, "0009")
    assert triggers(engine) == TRIGGERS
    assert calls_of(engine, account) == 3


def test_no_call_names_an_account_that_does_not_exist(migrated: Engine) -> None:
    engine = migrated
    with engine.begin() as conn:
        account = new_account(conn, "a", START)
    unknown = [call(account + 1, "c-1", START)]
    one_of_two_unknown = [call(account, "c-2", START), call(account + 7, "c-3", START)]
    for rows, missing in ((unknown, account + 1), (one_of_two_unknown, account + 7)):
        with pytest.raises(IntegrityError) as exc, engine.begin() as conn:
            conn.execute(insert(calls), rows)
        refused(exc, engine, missing)
    # Ingest's own statement (on PostgreSQL one INSERT ... SELECT of a batch, ON CONFLICT DO NOTHING).
    batch, _ = parse_payload({"data": [cdr(f"00000000-0000-4000-8000-00000000000{i}") for i in range(3)]})
    with pytest.raises(IntegrityError) as exc, engine.begin() as conn:
        upsert_calls(conn, account + 1, "VN", batch, origin="api", now=START)
    refused(exc, engine, account + 1)
    with engine.begin() as conn:
        assert upsert_calls(conn, account, "VN", batch, origin="api", now=START) == ["created"] * 3
        assert upsert_calls(conn, account, "VN", batch, origin="api", now=START) == ["unchanged"] * 3
    assert calls_of(engine, account) == 3
    assert calls_of(engine, account + 1) == calls_of(engine, account + 7) == 0


def test_a_call_moves_only_to_an_account_that_exists(migrated: Engine) -> None:
    engine = migrated
    with engine.begin() as conn:
        a, b = new_account(conn, "a", START), new_account(conn, "b", START)
        conn.execute(insert(calls), [call(a, "c-1", START), call(a, "c-2", START)])
    with pytest.raises(IntegrityError) as exc, engine.begin() as conn:
        conn.execute(update(calls).where(calls.c.uuid == "c-1").values(account_id=b + 1))
    refused(exc, engine, b + 1)
    with engine.begin() as conn:
        conn.execute(update(calls).where(calls.c.uuid == "c-1").values(account_id=b))
        conn.execute(update(calls).values(duration=99))  # other columns: nothing to check
    assert (calls_of(engine, a), calls_of(engine, b)) == (1, 1)


def test_a_deleted_account_takes_its_calls_and_only_its_own(migrated: Engine) -> None:
    engine = migrated
    with engine.begin() as conn:
        a, b = new_account(conn, "a", START), new_account(conn, "b", START)
        conn.execute(insert(calls), [call(a, f"a-{i}", START + i) for i in range(5)])
        conn.execute(insert(calls), [call(b, f"b-{i}", START + i) for i in range(2)])
    with engine.begin() as conn:
        conn.execute(delete(accounts).where(accounts.c.id == a))
    assert (calls_of(engine, a), calls_of(engine, b)) == (0, 2)


def test_an_account_keeps_its_id_while_calls_name_it(migrated: Engine) -> None:
    engine = migrated
    with engine.begin() as conn:
        a, b = new_account(conn, "a", START), new_account(conn, "b", START)
        conn.execute(insert(calls), [call(a, "c-1", START)])
    with pytest.raises(IntegrityError) as exc, engine.begin() as conn:
        conn.execute(update(accounts).where(accounts.c.id == a).values(id=b + 100))
    refused(exc, engine, a)
    with engine.begin() as conn:  # no calls: free to change
        conn.execute(update(accounts).where(accounts.c.id == b).values(id=b + 100))
    assert calls_of(engine, a) == 1


def test_truncating_accounts_truncates_calls(migrated: Engine) -> None:
    engine = migrated
    if engine.dialect.name != "postgresql":
        return  # SQLite has no TRUNCATE
    for statement in ("TRUNCATE accounts CASCADE", "TRUNCATE accounts, calls CASCADE"):
        with engine.begin() as conn:
            conn.execute(insert(calls), [call(new_account(conn, "a", START), "c-1", START)])
        with engine.begin() as conn:
            conn.execute(text(statement))  # what the key's ON DELETE CASCADE allowed
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(calls)).scalar_one() == 0


def test_accounts_are_deleted_or_rekeyed_in_read_committed_only(migrated: Engine) -> None:
    """An older snapshot could miss calls committed since; the key failed there too."""
    engine = migrated
    if engine.dialect.name != "postgresql":
        return  # SQLite's transactions are serializable, with one writer at a time
    with engine.begin() as conn:
        account = new_account(conn, "a", START)
        conn.execute(insert(calls), [call(account, "c-1", START)])
    for change in (
        delete(accounts).where(accounts.c.id == account),
        update(accounts).where(accounts.c.id == account).values(id=account + 100),
    ):
        with (
            pytest.raises(OperationalError, match="READ COMMITTED"),
            engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn,
            conn.begin(),
        ):
            conn.execute(change)
    assert calls_of(engine, account) == 1


def test_the_checks_find_their_tables_whatever_the_search_path(migrated: Engine) -> None:
    engine = migrated
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        account = new_account(conn, "a", START)
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL search_path = pg_catalog"))
        conn.execute(
            text(
                "INSERT INTO public.calls (account_id, uuid, direction, source_type, caller_number,"
                " destination_number, caller_key, destination_key, start_ts, end_ts, duration, billsec,"
                " transfer_count, result, hangup_cause, recording_available, origin, created_ts, updated_ts)"
                " VALUES (:a, 'c-1', 'inbound', 'inbound', '1', '2', '1', '2', 0, 0, 0, 0, 0, 'answered',"
                " 'NORMAL_CLEARING', false, 'api', 0, 0)"
            ),
            {"a": account},
        )
        conn.execute(text("DELETE FROM public.accounts WHERE id = :a"), {"a": account})
    assert calls_of(engine, account) == 0


def _in_thread(work: Any) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(work())
        except Exception as exc:  # the test's assertion shows it
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _wait_until_blocked(engine: Engine, thread: threading.Thread) -> None:
    """Until a session of this test's own database waits for a lock."""
    deadline = time.monotonic() + 30
    while thread.is_alive() and time.monotonic() < deadline:
        with engine.connect() as conn:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        if waiting:
            return
        time.sleep(0.02)
    raise AssertionError("the other transaction never waited")


def test_an_account_deleted_while_its_calls_go_in_takes_them_or_refuses_them(migrated: Engine) -> None:
    engine = migrated
    if engine.dialect.name != "postgresql":
        return  # SQLite has one writer at a time: nothing can interleave
    with engine.begin() as conn:
        first, second = new_account(conn, "first", START), new_account(conn, "second", START)

    def delete_account(account_id: int) -> int:
        with engine.begin() as conn:
            return conn.execute(delete(accounts).where(accounts.c.id == account_id)).rowcount

    # Inserted first: the delete waits for the insert's commit, then takes the new calls with it.
    with engine.connect() as inserting:
        tx = inserting.begin()
        inserting.execute(insert(calls), [call(first, f"c-{i}", START + i) for i in range(3)])
        thread, outcome = _in_thread(lambda: delete_account(first))
        _wait_until_blocked(engine, thread)
        tx.commit()
    thread.join(30)
    assert outcome == [1]
    assert calls_of(engine, first) == 0

    # Deleted first: the insert waits for the delete's commit, then is refused.
    with engine.connect() as deleting:
        tx = deleting.begin()
        deleting.execute(delete(accounts).where(accounts.c.id == second))

        def insert_calls() -> None:
            with engine.begin() as conn:
                conn.execute(insert(calls), [call(second, "d-1", START)])

        thread, outcome = _in_thread(insert_calls)
        _wait_until_blocked(engine, thread)
        tx.commit()
    thread.join(30)
    [error] = outcome
    assert isinstance(error, IntegrityError)
    assert getattr(error.orig, "sqlstate", None) == FOREIGN_KEY_VIOLATION
    assert calls_of(engine, second) == 0
