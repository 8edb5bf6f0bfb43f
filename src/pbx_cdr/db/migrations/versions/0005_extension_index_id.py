"""ix_calls_extension carries the id: the extension page is an index scan in the list's order

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 05:05:00.000000

The list orders by ``(start_ts, id)``. With ``id`` in the index (as ``ix_calls_window``,
``ix_calls_direction`` and ``ix_calls_agent_only`` already have it), an extension page is read
straight from the index in that order under any plan. Without it, PostgreSQL had to sort each
second's calls by id, and a generic (cached) plan, made without the values and expecting a single
row, sorted the extension's whole window instead: 6 ms instead of 1 for a busy agent at 10M calls.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_index("ix_calls_extension")
        batch_op.create_index(
            "ix_calls_extension", ["account_id", "extension_number", "start_ts", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_index("ix_calls_extension")
        batch_op.create_index(
            "ix_calls_extension", ["account_id", "extension_number", "start_ts"], unique=False
        )
