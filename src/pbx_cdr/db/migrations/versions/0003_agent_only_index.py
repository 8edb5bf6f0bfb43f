"""agent-only partial index for the extension filter; covering index for the hour counts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 03:40:00.000000

The ``extension`` filter matches ``extension_number`` or ``agent_extension``. Nearly every call with
an agent has it as its extension too, so the calls the agent column adds are few: indexing only
those makes the two halves of the filter disjoint, so the total is two index counts and a page is a
merge of two ordered index scans, with no de-duplication.

A window's total sums up to 24 x 31 x 4 hour counts; on SQLite the counts table keeps its primary
key in a separate index, so without a covering index each of those rows is a table lookup.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

AGENT_ONLY = (
    "agent_extension IS NOT NULL AND (extension_number IS NULL OR extension_number != agent_extension)"
)


def upgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_index("ix_calls_agent")
        batch_op.create_index(
            "ix_calls_agent_only",
            ["account_id", "agent_extension", "start_ts", "id"],
            unique=False,
            sqlite_where=sa.text(AGENT_ONLY),
            postgresql_where=sa.text(AGENT_ONLY),
        )
    with op.batch_alter_table("call_hour_counts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_call_hour_counts_cover", ["account_id", "hour", "direction", "n"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("call_hour_counts", schema=None) as batch_op:
        batch_op.drop_index("ix_call_hour_counts_cover")
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_index("ix_calls_agent_only")
        batch_op.create_index("ix_calls_agent", ["account_id", "agent_extension", "start_ts"], unique=False)
