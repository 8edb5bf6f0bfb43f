"""Accounts: the tenants. Every call, recording and token belongs to one."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, insert, select, update

from pbx_cdr.db.driver import SqliteWrites
from pbx_cdr.db.tables import accounts


@dataclass(frozen=True)
class Account:
    id: int
    name: str
    timezone: str
    country: str
    max_window_days: int
    recording_url_ttl: int
    rate_limit_per_minute: int
    created_ts: int
    data_version: int = 0  # raised by every change to the account's calls (bump_data_version)


def _account(row: object) -> Account:
    return Account(**{field: getattr(row, field) for field in Account.__dataclass_fields__})


def create_account(
    conn: Connection,
    *,
    name: str,
    timezone: str,
    country: str,
    max_window_days: int,
    recording_url_ttl: int,
    rate_limit_per_minute: int,
    now: int,
) -> Account:
    row = conn.execute(
        insert(accounts)
        .values(
            name=name,
            timezone=timezone,
            country=country,
            max_window_days=max_window_days,
            recording_url_ttl=recording_url_ttl,
            rate_limit_per_minute=rate_limit_per_minute,
            created_ts=now,
        )
        .returning(*accounts.c)
    ).one()
    return _account(row)


def get_account(conn: Connection, account_id: int) -> Account | None:
    row = conn.execute(select(accounts).where(accounts.c.id == account_id)).one_or_none()
    return _account(row) if row else None


def list_accounts(conn: Connection) -> list[Account]:
    return [_account(r) for r in conn.execute(select(accounts).order_by(accounts.c.id))]


def find_account_by_name(conn: Connection, name: str) -> Account | None:
    row = conn.execute(
        select(accounts).where(accounts.c.name == name).order_by(accounts.c.id).limit(1)
    ).one_or_none()
    return _account(row) if row else None


def update_account(conn: Connection, account_id: int, **changes: object) -> Account | None:
    if changes:  # a new timezone or country can change what a list shows: cached pages go
        conn.execute(
            update(accounts)
            .where(accounts.c.id == account_id)
            .values(**changes, data_version=accounts.c.data_version + 1)
        )
    return get_account(conn, account_id)


_BUMP = (
    update(accounts)
    .where(accounts.c.id == bindparam("b_id"))
    .values(data_version=accounts.c.data_version + 1)
)


def bump_data_version(conn: Connection, account_id: int) -> None:
    """Mark the account's calls as changed, in the transaction that changes them.

    A list page cached at an older version is then never served again (``api/list_cache.py``); the
    version commits with the change, so no reader sees the new version with the old calls.
    """
    if conn.dialect.name == "sqlite":  # the hot path of every ingest group (db/driver.py)
        SqliteWrites(conn).run(_BUMP, {"b_id": account_id})
    else:
        conn.execute(_BUMP, {"b_id": account_id})
