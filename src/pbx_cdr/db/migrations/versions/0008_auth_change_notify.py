"""PostgreSQL: notify ``pbx_cdr_auth`` on every change to a token or to an account's settings

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 16:50:00.000000

A server process on PostgreSQL keeps the token lookups it made (``api/token_cache.py``) for as long
as it hears, on the ``pbx_cdr_auth`` channel, of no change that could alter them
(``db/auth_changes.py``). The notification comes from triggers, in the transaction of the change,
so a change made any way at all (the CLI, another process, plain SQL) is heard as it commits.

Not every column: ``api_tokens.last_used_ts`` is written once a minute by the requests themselves
and ``accounts.data_version`` by every ingest; neither changes what a token may do. SQLite has no
notifications, and no cache to tell: nothing to do there.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

CHANNEL = "pbx_cdr_auth"  # db/auth_changes.CHANNEL; a migration keeps its own copy of what it wrote
TOKEN_COLUMNS = ", ".join(("id", "account_id", "name", "token_hash", "scopes", "created_ts", "revoked_ts"))
ACCOUNT_COLUMNS = ", ".join(
    (
        "id",
        "name",
        "timezone",
        "country",
        "max_window_days",
        "recording_url_ttl",
        "rate_limit_per_minute",
        "created_ts",
    )
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE FUNCTION pbx_cdr_auth_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);
            RETURN NULL;
        END
        $$
        """
    )
    # One notification a statement (PostgreSQL folds identical ones within a transaction).
    op.execute(
        f"""
        CREATE TRIGGER pbx_cdr_auth_tokens
        AFTER UPDATE OF {TOKEN_COLUMNS} OR DELETE OR TRUNCATE ON api_tokens
        FOR EACH STATEMENT EXECUTE FUNCTION pbx_cdr_auth_changed()
        """
    )
    op.execute(
        f"""
        CREATE TRIGGER pbx_cdr_auth_accounts
        AFTER UPDATE OF {ACCOUNT_COLUMNS} OR DELETE OR TRUNCATE ON accounts
        FOR EACH STATEMENT EXECUTE FUNCTION pbx_cdr_auth_changed()
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER pbx_cdr_auth_accounts ON accounts")
    op.execute("DROP TRIGGER pbx_cdr_auth_tokens ON api_tokens")
    op.execute("DROP FUNCTION pbx_cdr_auth_changed()")
