"""accounts.data_version: raised by every change to an account's calls

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 07:10:00.000000

A list page is cached per process under the account's data version it was read at
(``api/list_cache.py``); the version is read with the token on every request, and every write to
the account's calls raises it in the same transaction, so a cached page is served only while
nothing it shows has changed.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN, not a batch operation: on SQLite a batch rebuilds ``accounts`` (copy, drop,
    # rename), and with foreign keys on, dropping it would cascade into every call and token.
    op.add_column(
        "accounts", sa.Column("data_version", sa.BigInteger(), server_default=sa.text("0"), nullable=False)
    )


def downgrade() -> None:
    op.drop_column("accounts", "data_version")  # SQLite >= 3.35 drops a column in place too
