"""Migration 0006 on a database holding calls and hour counts made at 0005: the day counts it
backfills equal a fresh count of the calls (zero rows left out), on SQLite and PostgreSQL; the
list's totals read them; it downgrades cleanly and upgrades again."""

from __future__ import annotations

import itertools
from collections import Counter

from alembic import command
from sqlalchemy import Engine, insert, inspect, select

from pbx_cdr.db.migrate import alembic_config, current_revision, upgrade
from pbx_cdr.db.queries import counts
from pbx_cdr.db.tables import call_day_counts, call_hour_counts, calls
from tests.integration.test_migration_0004 import call, new_account

_names = itertools.count()
START = 1_782_000_000  # 2026-06-21T00:00:00Z
DIRECTIONS = ("inbound", "outbound", "internal", "local")


def seed_at_0005(engine: Engine) -> list[int]:
    """Two accounts' calls over eight UTC days, with the hour counts 0005's code kept: including
    rows left at zero by deleted calls, and a whole day of them."""
    with engine.begin() as conn:
        ids = [new_account(conn, name, START, timezone="Asia/Kolkata") for name in ("a", "b")]
        rows = []
        for i in range(700):
            row = call(ids[i % 2], f"call-{i}", START + (i * 7919) % (8 * 86400))
            row["direction"] = DIRECTIONS[i % 7 % 4]
            rows.append(row)
        conn.execute(insert(calls), rows)
        hours = Counter((r["account_id"], r["start_ts"] // 3600, r["direction"]) for r in rows)
        hours[(ids[0], START // 3600 + 5, "inbound")] += 0  # a deleted call's hour
        hours.update({(ids[1], START // 3600 - 24 + h, "outbound"): 0 for h in range(24)})  # a day of them
        conn.execute(
            insert(call_hour_counts),
            [{"account_id": a, "hour": h, "direction": d, "n": n} for (a, h, d), n in hours.items()],
        )
    return ids


def fresh_days(engine: Engine) -> dict[tuple[int, int, str], int]:
    with engine.connect() as conn:
        rows = conn.execute(select(calls.c.account_id, calls.c.start_ts, calls.c.direction)).all()
    return dict(Counter((r.account_id, r.start_ts // counts.DAY, r.direction) for r in rows))


def kept_days(engine: Engine) -> dict[tuple[int, int, str], int]:
    with engine.connect() as conn:
        return {(r.account_id, r.day, r.direction): r.n for r in conn.execute(select(call_day_counts))}


def test_0006_backfills_day_counts_from_the_hour_counts(empty_engine: Engine) -> None:
    engine = empty_engine
    upgrade(engine, "0005")
    ids = seed_at_0005(engine)
    assert "call_day_counts" not in inspect(engine).get_table_names()

    upgrade(engine, "0006")
    assert current_revision(engine) == "0006"
    fresh = fresh_days(engine)
    assert len({day for _, day, _ in fresh}) >= 8
    assert kept_days(engine) == fresh
    indexes = {i["name"]: i["column_names"] for i in inspect(engine).get_indexes("call_day_counts")}
    assert indexes["ix_call_day_counts_cover"] == ["account_id", "day", "direction", "n"]
    with engine.connect() as conn:
        for account_id in ids:
            for low, high in ((START, START + 8 * 86400), (START + 3 * 3600 + 1800, START + 6 * 86400 + 1)):
                for direction in (None, "inbound"):
                    rows = conn.execute(
                        select(calls.c.start_ts, calls.c.direction).where(calls.c.account_id == account_id)
                    ).all()
                    naive = sum(
                        1 for r in rows if low <= r.start_ts < high and direction in (None, r.direction)
                    )
                    assert counts.window_total(conn, account_id, low, high, direction) == naive

    command.downgrade(alembic_config(engine), "0005")
    assert "call_day_counts" not in inspect(engine).get_table_names()
    assert current_revision(engine) == "0005"
    upgrade(engine, "0006")  # and up again
    assert kept_days(engine) == fresh
