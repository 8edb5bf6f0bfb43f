"""call_day_counts: per-account, per-UTC-day, per-direction call counts, kept with the hour counts

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 06:50:00.000000

A month's total summed up to 720 x 4 hour counts (about 2,900 rows for a busy account at 10M
calls); with day counts it sums about 30 x 4 day rows and the hours of the two partial days at its
edges. Like ``call_hour_counts``, the table keeps a covering index, so sums read only the index.

The backfill groups the existing hour counts by day. ``hour`` is never negative in practice, but
SQL's ``/`` truncates toward zero, so the day is computed as an exact floor for any hour.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_DAY = "(hour - ((hour % 24) + 24) % 24) / 24"


def upgrade() -> None:
    op.create_table(
        "call_day_counts",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id", "day", "direction"),
    )
    with op.batch_alter_table("call_day_counts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_call_day_counts_cover", ["account_id", "day", "direction", "n"], unique=False
        )
    op.execute(
        "INSERT INTO call_day_counts (account_id, day, direction, n) "
        f"SELECT account_id, {_DAY}, direction, SUM(n) FROM call_hour_counts WHERE n != 0 "
        f"GROUP BY account_id, {_DAY}, direction HAVING SUM(n) != 0"
    )


def downgrade() -> None:
    op.drop_table("call_day_counts")
