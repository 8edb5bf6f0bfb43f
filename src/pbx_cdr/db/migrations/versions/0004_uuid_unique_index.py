"""calls' (account_id, uuid) key as a named unique index; identifier columns compared bytewise

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 04:40:00.000000

SQLite keeps a table's UNIQUE constraint in an automatic index that cannot be dropped, so a bulk
load had to grow it row by row, at random (a uuid is random): past the page cache every row cost a
disk read. As a named ``CREATE UNIQUE INDEX`` it has the same semantics (``ON CONFLICT (account_id,
uuid)`` still infers it) and can be dropped and built once, sorted. PostgreSQL gets the same index
so both databases describe the key alike.

On PostgreSQL, ``uuid``, ``extension_number``, ``agent_extension`` and ``recordings.call_uuid`` are
only ever compared for equality, never ordered for a user: with the ``"C"`` collation (as the phone
keys already have) they compare as bytes instead of through the locale's ``strcoll``, which made
building their indexes about 40% slower for uuids. ``recordings.call_uuid`` follows ``calls.uuid``:
the two are joined, and a join under one collation cannot use an index built under another.
Equality is the same under both collations (both are deterministic), so no result changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# (table, column, length, nullable): the columns that move to the "C" collation on PostgreSQL.
BYTEWISE = (
    ("calls", "uuid", 36, False),
    ("calls", "extension_number", 32, True),
    ("calls", "agent_extension", 32, True),
    ("recordings", "call_uuid", 36, False),
)


def _collate(collation: str | None) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite compares text as bytes already (BINARY)
    for table, column, length, nullable in BYTEWISE:
        op.alter_column(
            table,
            column,
            type_=sa.String(length, collation=collation),
            existing_type=sa.String(length),
            existing_nullable=nullable,
        )


def upgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_constraint("uq_calls_account_uuid", type_="unique")
    # Indexes on a column are rebuilt when its collation changes: with the key dropped first, the
    # unique index is built once, below.
    _collate("C")
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.create_index("uq_calls_account_uuid", ["account_id", "uuid"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_index("uq_calls_account_uuid")
    _collate(None)
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_calls_account_uuid", ["account_id", "uuid"])
