"""API tokens, stored only as a hash."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, bindparam, insert, select, update

from pbx_cdr.db import engine as db
from pbx_cdr.db.queries.accounts import Account
from pbx_cdr.db.tables import accounts, api_tokens

if TYPE_CHECKING:
    from pbx_cdr.db.async_pg import AsyncReader

# last_used_ts is written at most this often per token, so reads do not all become writes.
LAST_USED_RESOLUTION = 60


@dataclass(frozen=True)
class TokenRow:
    id: int
    account_id: int
    name: str
    scopes: frozenset[str]
    created_ts: int
    last_used_ts: int | None
    revoked_ts: int | None


def _token(row: object) -> TokenRow:
    return TokenRow(
        id=row.id,  # type: ignore[attr-defined]
        account_id=row.account_id,  # type: ignore[attr-defined]
        name=row.name,  # type: ignore[attr-defined]
        scopes=frozenset(row.scopes.split()),  # type: ignore[attr-defined]
        created_ts=row.created_ts,  # type: ignore[attr-defined]
        last_used_ts=row.last_used_ts,  # type: ignore[attr-defined]
        revoked_ts=row.revoked_ts,  # type: ignore[attr-defined]
    )


def create_token(
    conn: Connection, *, account_id: int, name: str, token_hash: str, scopes: list[str], now: int
) -> TokenRow:
    row = conn.execute(
        insert(api_tokens)
        .values(
            account_id=account_id,
            name=name,
            token_hash=token_hash,
            scopes=" ".join(sorted(set(scopes))),
            created_ts=now,
        )
        .returning(*api_tokens.c)
    ).one()
    return _token(row)


def find_active_token(conn: Connection, token_hash: str) -> TokenRow | None:
    row = conn.execute(
        select(api_tokens).where(api_tokens.c.token_hash == token_hash, api_tokens.c.revoked_ts.is_(None))
    ).one_or_none()
    return _token(row) if row else None


# Built once: every authenticated request runs it, and building the statement cost more than running it.
_TOKEN_AND_ACCOUNT = (
    select(*[c.label(f"t_{c.name}") for c in api_tokens.c], *accounts.c)
    .join_from(api_tokens, accounts, accounts.c.id == api_tokens.c.account_id)
    .where(api_tokens.c.token_hash == bindparam("token_hash"), api_tokens.c.revoked_ts.is_(None))
)


_TOKEN_AND_ACCOUNT_NAMES = tuple(c.name for c in _TOKEN_AND_ACCOUNT.selected_columns)


def find_active_token_and_account(engine: Engine, token_hash: str) -> tuple[TokenRow, Account] | None:
    """The active token with its account, in one query (every authenticated request runs it)."""
    return _token_and_account(db.first_row(engine, _TOKEN_AND_ACCOUNT, {"token_hash": token_hash}))


async def find_active_token_and_account_async(
    reader: AsyncReader, token_hash: str
) -> tuple[TokenRow, Account] | None:
    """:func:`find_active_token_and_account`, awaited on the event loop (PostgreSQL)."""
    return _token_and_account(await reader.first_row(_TOKEN_AND_ACCOUNT, {"token_hash": token_hash}))


def _token_and_account(row: tuple[Any, ...] | None) -> tuple[TokenRow, Account] | None:
    return None if row is None else _parsed(row)


# The same row (same token, same account settings and data version) gives equal, immutable objects:
# every request of a busy client reads the same row, and building them was 6 µs of each request.
@lru_cache(maxsize=1024)
def _parsed(row: tuple[Any, ...]) -> tuple[TokenRow, Account]:
    fields = dict(zip(_TOKEN_AND_ACCOUNT_NAMES, row, strict=True))
    token = TokenRow(
        id=fields["t_id"],
        account_id=fields["t_account_id"],
        name=fields["t_name"],
        scopes=frozenset(fields["t_scopes"].split()),
        created_ts=fields["t_created_ts"],
        last_used_ts=fields["t_last_used_ts"],
        revoked_ts=fields["t_revoked_ts"],
    )
    return token, Account(**{f: fields[f] for f in Account.__dataclass_fields__})


def touch_due(token: TokenRow, now: int) -> bool:
    """Whether ``last_used_ts`` is to be written now (at most once per ``LAST_USED_RESOLUTION``)."""
    return token.last_used_ts is None or now - token.last_used_ts >= LAST_USED_RESOLUTION


def touch_token(conn: Connection, token: TokenRow, now: int) -> None:
    """Keep ``last_used_ts``, at a resolution that spares the database a write per request."""
    if touch_due(token, now):
        conn.execute(update(api_tokens).where(api_tokens.c.id == token.id).values(last_used_ts=now))


def list_tokens(conn: Connection, account_id: int) -> list[TokenRow]:
    rows = conn.execute(
        select(api_tokens).where(api_tokens.c.account_id == account_id).order_by(api_tokens.c.id)
    )
    return [_token(r) for r in rows]


def revoke_token(conn: Connection, token_id: int, now: int) -> bool:
    result = conn.execute(
        update(api_tokens)
        .where(api_tokens.c.id == token_id, api_tokens.c.revoked_ts.is_(None))
        .values(revoked_ts=now)
    )
    return result.rowcount > 0


def get_token(conn: Connection, token_id: int) -> TokenRow | None:
    row = conn.execute(select(api_tokens).where(api_tokens.c.id == token_id)).one_or_none()
    return _token(row) if row else None
