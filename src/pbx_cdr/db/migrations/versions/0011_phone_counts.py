"""Phone filters that match many calls: counts per destination number, and key indexes by direction

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 22:30:00.000000

A phone filter gathered every call that matched from the two search-key indexes, then counted and
sorted them. At 10M calls, the hotline every inbound call of the biggest account goes to matched
510,080 calls in 30 days: 300-370 ms a list. Two changes let such a list read only what its page
needs (``db/queries/phone_list.py``):

- ``call_number_counts``: calls per account, direction, destination search key and UTC hour, for
  the directions whose destination is one of the account's own numbers (inbound: a hotline; local: an
  IVR or feature code). Few numbers per account, so a batch of calls updates a few rows, as it does
  the hour counts. Backfilled here from ``calls``.
- The two search-key indexes now lead with the direction and end with the id: a direction's matches
  are one range, one number's calls are in time order. They are rebuilt like 0010's: concurrently on
  PostgreSQL, outside the migration's transaction, repeatable if interrupted.

The backfill runs with ``calls`` locked against writes (``SHARE``), so no call is missed or counted
twice. Processes of the previous release do not keep the new counts: stop them before the upgrade, or
run ``pbx-cdr accounts recount`` once the roll is done (docs/deployment.md).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_KEYS = ("caller_key", "destination_key")
_BACKFILL = (
    "INSERT INTO call_number_counts (account_id, direction, number_key, hour, n) "
    "SELECT account_id, direction, destination_key, {hour}, COUNT(*) FROM calls "
    "WHERE direction IN ('inbound', 'local') GROUP BY account_id, direction, destination_key, {hour}"
)
# ``start_ts`` is never negative in practice; a floor all the same (SQL's ``/`` truncates toward zero).
_HOUR = "(start_ts - ((start_ts % 3600) + 3600) % 3600) / 3600"


def _pg_rebuild(columns: str, include: str) -> None:
    with op.get_context().autocommit_block():
        for key in _KEYS:
            name = f"ix_calls_{key}"
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}_new")
            op.execute(f"CREATE INDEX CONCURRENTLY {name}_new ON calls ({columns.format(key=key)}){include}")
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            op.execute(f"ALTER INDEX {name}_new RENAME TO {name}")


def _sqlite_rebuild(columns: str) -> None:
    for key in _KEYS:
        op.execute(f"DROP INDEX IF EXISTS ix_calls_{key}")
        op.execute(f"CREATE INDEX ix_calls_{key} ON calls ({columns.format(key=key)})")


def upgrade() -> None:
    bind = op.get_bind()
    postgresql = bind.dialect.name == "postgresql"
    # The table and its backfill commit together, before the index builds: a run interrupted
    # during the builds finds the table made, and goes on with the builds.
    if not sa.inspect(bind).has_table("call_number_counts"):
        _create_and_backfill(postgresql)
    columns = "account_id, direction, {key}, start_ts, id"
    if postgresql:
        _pg_rebuild(columns, "")
    else:
        _sqlite_rebuild(columns)


def _create_and_backfill(postgresql: bool) -> None:
    op.create_table(
        "call_number_counts",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column(
            "number_key",
            sa.String(length=32).with_variant(sa.String(length=32, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("hour", sa.Integer(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id", "direction", "number_key", "hour"),
    )
    op.create_index(
        "ix_call_number_counts_cover",
        "call_number_counts",
        ["account_id", "direction", "number_key", "hour", "n"],
    )
    if postgresql:
        op.execute("LOCK TABLE calls IN SHARE MODE")
    op.execute(_BACKFILL.format(hour=_HOUR))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _pg_rebuild("account_id, {key}, start_ts", " INCLUDE (id)")
    else:
        _sqlite_rebuild("account_id, {key}, start_ts")
    op.drop_table("call_number_counts")
