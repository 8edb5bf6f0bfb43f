"""Migration 0011: ``call_number_counts`` made and backfilled from the calls there are; the phone key
indexes rebuilt to lead with the direction (on PostgreSQL concurrently);
repeatable after an interrupted build, and reversible. The phone list then equals the naive one."""

from __future__ import annotations

import time
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, insert, text

from pbx_cdr.db.migrate import alembic_config, current_revision, upgrade
from pbx_cdr.db.queries.call_list import list_calls, reader
from pbx_cdr.db.tables import calls
from pbx_cdr.domain.listing import AccountView, parse_list_query
from tests.api.calls_support import assert_number_counts_exact
from tests.integration.test_migration_0004 import call, new_account
from tests.integration.test_migration_0010 import KEYS, definitions

NOW = int(time.time())


def has_counts_table(engine: Engine) -> bool:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            found = conn.execute(text("SELECT to_regclass('call_number_counts') IS NOT NULL")).scalar_one()
        else:
            found = conn.execute(
                text("SELECT count(*) FROM sqlite_master WHERE name = 'call_number_counts'")
            ).scalar_one()
    return bool(found)


def rows(account: int) -> list[dict[str, Any]]:
    """Inbound calls to two hotlines that end in 6868, local calls to an IVR code, and outbound
    calls to a customer whose number ends in 6868 too, over three hours."""
    out = []
    for i in range(36):
        row = call(account, f"call-{i}", NOW - 4 * 3600 + i * 317)
        kind = i % 4
        if kind == 1:
            row.update(destination_number="19006868", destination_key="86860091")
        elif kind == 2:
            row.update(direction="local", destination_number="9999", destination_key="9999")
        elif kind == 3:
            row.update(direction="outbound", caller_number="1001", caller_key="1001")
            row.update(destination_number="0919006868", destination_key="868600919")
        else:
            row.update(destination_number="0286868", destination_key="8686820")
        out.append(row)
    return out


def phone_list(engine: Engine, account: int, phone: str) -> tuple[int, list[str]]:
    view = AccountView("UTC", "VN", 31)
    with reader(engine) as conn:
        page = list_calls(conn, account, parse_list_query({"phone": phone, "per_page": "7"}, view, NOW))
    return page.total, page.uuids()


def test_0011_up_down_and_again(empty_engine: Engine) -> None:
    engine = empty_engine
    upgrade(engine, "0010")
    before = definitions(engine)
    with engine.begin() as conn:
        account = new_account(conn, "a", NOW - 86_400)
        conn.execute(insert(calls), rows(account))

    upgrade(engine)
    assert current_revision(engine) == "0011"
    assert_number_counts_exact(engine, account)  # the backfill counted the inbound and local calls
    after = definitions(engine)
    assert set(after) == set(KEYS)  # no index left behind under a temporary name
    for name, key in zip(KEYS, ("caller_key", "destination_key"), strict=True):
        assert after[name].endswith(f"(account_id, direction, {key}, start_ts, id)")
    # 6868: both hotlines (18 inbound) and the customer of 9 outbound calls (0919006868, which also
    # ends in 19006868); 9999: 9 local calls.
    listed = {phone: phone_list(engine, account, phone) for phone in ("6868", "9999", "19006868")}
    assert {phone: found[0] for phone, found in listed.items()} == {"6868": 27, "9999": 9, "19006868": 18}
    newest = sorted(rows(account), key=lambda r: r["start_ts"], reverse=True)
    assert listed["9999"][1] == [r["uuid"] for r in newest if r["direction"] == "local"][:7]

    command.downgrade(alembic_config(engine), "0010")
    assert definitions(engine) == before
    assert not has_counts_table(engine)
    upgrade(engine)
    assert definitions(engine) == after
    assert {phone: phone_list(engine, account, phone) for phone in listed} == listed


@pytest.mark.parametrize(
    "empty_engine", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_0011_finishes_a_rebuild_that_was_interrupted(empty_engine: Engine) -> None:
    """The counts made and committed, then a build cut short (an index left under its temporary name,
    the old one of the other key already dropped): running the migration again completes it, and
    leaves the counts as they were."""
    engine = empty_engine
    upgrade(engine, "0010")
    with engine.begin() as conn:
        account = new_account(conn, "a", NOW - 86_400)
        conn.execute(insert(calls), rows(account))
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM alembic_version"))
        conn.execute(text("INSERT INTO alembic_version VALUES ('0010')"))
        conn.execute(text("CREATE INDEX ix_calls_caller_key_new ON calls (account_id)"))
        conn.execute(text("DROP INDEX ix_calls_destination_key"))
    upgrade(engine)
    after = definitions(engine)
    assert set(after) == set(KEYS)
    assert all("(account_id, direction, " in definition for definition in after.values())
    assert_number_counts_exact(engine, account)
    assert phone_list(engine, account, "6868")[0] == 27
