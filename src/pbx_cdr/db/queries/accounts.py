"""Accounts: the tenants. Every call, recording and token belongs to one."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, insert, select, update

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
    if changes:
        conn.execute(update(accounts).where(accounts.c.id == account_id).values(**changes))
    return get_account(conn, account_id)
