"""PostgreSQL: the phone search key indexes carry the call's id, so a suffix list reads no table row
to count

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 20:40:00.000000

A phone filter is a prefix range on ``caller_key`` and on ``destination_key`` (reversed digits); the
list gathers the ids and times of the window's matches from both, counts them and keeps the page's
50. Without ``id`` in the indexes, PostgreSQL read every match's table row for it: at 10M calls, a
4-digit suffix that matched 1,880 of the biggest account's calls read 1,677 table pages (p50 2.0 ms,
p99 3.7 ms, above the 3 ms target). With ``INCLUDE (id)`` the matches are read from about 115 index
pages (p50 1.3 ms, p99 1.9 ms). SQLite's indexes already end with the row's id (its rowid).

The indexes are rebuilt without blocking writes (``CREATE INDEX CONCURRENTLY``, outside the
migration's transaction): at 10M calls, about 12 s each. Each step can be run again if a build is
interrupted (an interrupted concurrent build leaves an invalid index, dropped on the next run).
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_COLUMNS = ("caller_key", "destination_key")


def _rebuild(include: str) -> None:
    with op.get_context().autocommit_block():
        for column in _COLUMNS:
            name = f"ix_calls_{column}"
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}_new")
            op.execute(
                f"CREATE INDEX CONCURRENTLY {name}_new ON calls (account_id, {column}, start_ts){include}"
            )
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            op.execute(f"ALTER INDEX {name}_new RENAME TO {name}")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _rebuild(" INCLUDE (id)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _rebuild("")
