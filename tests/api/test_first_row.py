"""``db.first_row``: the per-request token lookup, straight through the driver on SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, bindparam, select
from sqlalchemy.exc import OperationalError

from pbx_cdr import tokens
from pbx_cdr.db import engine as db
from pbx_cdr.db.engine import make_engine
from pbx_cdr.db.queries import tokens as token_queries
from pbx_cdr.db.tables import accounts
from pbx_cdr.errors import ServiceUnavailable
from tests.conftest import Tenant

BY_NAME = select(accounts.c.id, accounts.c.name, accounts.c.max_window_days).where(
    accounts.c.name == bindparam("name")
)


def test_the_same_row_as_sqlalchemy_reads(engine: Engine, tenant: Tenant) -> None:
    with db.read(engine) as conn:
        expected = conn.execute(BY_NAME, {"name": "acme"}).one()
    assert db.first_row(engine, BY_NAME, {"name": "acme"}) == tuple(expected)
    assert db.first_row(engine, BY_NAME, {"name": "nobody"}) is None


def test_the_token_lookup_finds_active_tokens_only(engine: Engine, tenant: Tenant) -> None:
    found = token_queries.find_active_token_and_account(engine, tokens.hash_token(tenant.read_token))
    assert found is not None
    token, account = found
    assert account.name == "acme" and account.timezone == "UTC"
    assert token.account_id == account.id and "cdr:read" in token.scopes
    assert token_queries.find_active_token_and_account(engine, tokens.hash_token(tokens.new_token())) is None
    with db.write(engine) as conn:
        assert token_queries.revoke_token(conn, token.id, 1)
    assert token_queries.find_active_token_and_account(engine, tokens.hash_token(tenant.read_token)) is None


def test_driver_errors_surface_as_sqlalchemy_errors(tmp_path: Path) -> None:
    # As SQLAlchemy's own errors, the app's handlers and db._unavailable_on_loss see them (503s).
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    try:
        with engine.connect():  # the file, with no tables
            pass
        with pytest.raises(OperationalError, match="no such table"):
            db.first_row(engine, BY_NAME, {"name": "acme"})
    finally:
        engine.dispose()


def test_a_missing_database_file_is_unavailable_and_never_created(tmp_path: Path) -> None:
    path = tmp_path / "gone.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    try:
        with pytest.raises(ServiceUnavailable):
            db.first_row(engine, BY_NAME, {"name": "acme"})
        assert not path.exists()  # the read connection never makes an empty database
    finally:
        engine.dispose()
