"""The schema, as SQLAlchemy Core tables. Alembic migrations make it; this module describes it.

Times are integer epoch seconds (UTC): compact, fast to compare, the same on every dialect.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

AGENT_ONLY = (
    "agent_extension IS NOT NULL AND (extension_number IS NULL OR extension_number != agent_extension)"
)

# SQLite's BIGINT is not an alias of the rowid; INTEGER is. PostgreSQL gets a real BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def bytewise(length: int) -> String:
    """Text compared byte by byte ("C") on PostgreSQL: only ever compared for equality (migration
    0004), or ranges of digits (search keys)."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


# Phone search keys are compared as byte strings: under a linguistic collation ':' would sort
# among digits and break the suffix ranges.
SearchKey = bytewise(32)


accounts = Table(
    "accounts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("country", String(2), nullable=False),
    Column("max_window_days", Integer, nullable=False),
    Column("recording_url_ttl", Integer, nullable=False),
    Column("rate_limit_per_minute", Integer, nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    # Raised by every change to the account's calls (db/queries/accounts.bump_data_version): what
    # a cached list page was read at (api/list_cache.py).
    Column("data_version", BigInteger, nullable=False, server_default=text("0")),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("scopes", String(200), nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    Column("last_used_ts", BigInteger),
    Column("revoked_ts", BigInteger),
    Index("ix_api_tokens_account", "account_id"),
)

calls = Table(
    "calls",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    # On PostgreSQL, triggers keep this key's rules once a statement instead of once a row
    # (migration 0009); SQLite declares it.
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("uuid", bytewise(36), nullable=False),
    Column("direction", String(8), nullable=False),
    Column("source_type", String(24), nullable=False),
    Column("caller_number", String(64), nullable=False),
    Column("destination_number", String(64), nullable=False),
    Column("caller_key", SearchKey, nullable=False),
    Column("destination_key", SearchKey, nullable=False),
    Column("extension_number", bytewise(32)),
    Column("agent_extension", bytewise(32)),
    Column("start_ts", BigInteger, nullable=False),
    Column("answer_ts", BigInteger),
    Column("end_ts", BigInteger, nullable=False),
    Column("duration", Integer, nullable=False),
    Column("billsec", Integer, nullable=False),
    Column("queue_name", String(128)),
    Column("queue_wait_time", Integer),
    Column("trunk_name", String(128)),
    Column("transfer_count", Integer, nullable=False),
    Column("result", String(16), nullable=False),
    Column("hangup_cause", String(64), nullable=False),
    Column("sip_response_code", String(3)),
    Column("recording_available", Boolean, nullable=False),
    Column("origin", String(16), nullable=False),  # 'api' or 'freeswitch': who wrote the row
    Column("created_ts", BigInteger, nullable=False),
    Column("updated_ts", BigInteger, nullable=False),
    # A unique index, not a constraint, so a bulk load can drop it on SQLite too (migration 0004).
    Index("uq_calls_account_uuid", "account_id", "uuid", unique=True),
    Index("ix_calls_window", "account_id", "start_ts", "id"),
    Index("ix_calls_direction", "account_id", "direction", "start_ts", "id"),
    Index("ix_calls_extension", "account_id", "extension_number", "start_ts", "id"),
    # Only the calls whose agent is not also their extension (migration 0003 says why).
    Index(
        "ix_calls_agent_only",
        "account_id",
        "agent_extension",
        "start_ts",
        "id",
        sqlite_where=text(AGENT_ONLY),
        postgresql_where=text(AGENT_ONLY),
    ),
    # Phone filters (migration 0011): by direction, then key, so a direction's matches are one range
    # and one key's are in time order.
    Index("ix_calls_caller_key", "account_id", "direction", "caller_key", "start_ts", "id"),
    Index("ix_calls_destination_key", "account_id", "direction", "destination_key", "start_ts", "id"),
)


def _counts(name: str, unit: str) -> Table:
    """Calls per account, ``unit`` and direction; sums read only the covering index (0003, 0006)."""
    return Table(
        name,
        metadata,
        Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
        Column(unit, Integer, primary_key=True),
        Column("direction", String(8), primary_key=True),
        Column("n", Integer, nullable=False),
        Index(f"ix_{name}_cover", "account_id", unit, "direction", "n"),
    )


# Kept on every write in the same transaction, per UTC hour (start_ts // 3600) and per UTC day
# (start_ts // 86400): an exact total sums whole days, the whole hours at the window's two edges,
# and counts only the partial hours there.
call_hour_counts = _counts("call_hour_counts", "hour")
call_day_counts = _counts("call_day_counts", "day")

# The directions whose destination is one of the account's own numbers (a hotline, an IVR or feature
# code): few per account, so the calls to each can be counted per hour at little cost to ingest.
NUMBER_COUNTED = ("inbound", "local")

# Calls per account, direction (``NUMBER_COUNTED`` only), destination search key and UTC hour, kept
# on every write in the same transaction as the hour counts: a phone filter that matches a hotline's
# hundreds of thousands of calls sums these instead of counting them (migration 0011).
call_number_counts = Table(
    "call_number_counts",
    metadata,
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("direction", String(8), primary_key=True),
    Column("number_key", SearchKey, primary_key=True),
    Column("hour", Integer, primary_key=True),
    Column("n", Integer, nullable=False),
    Index("ix_call_number_counts_cover", "account_id", "direction", "number_key", "hour", "n"),
)

recordings = Table(
    "recordings",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    # By uuid, not by call id: a recording may arrive before its call.
    Column("call_uuid", bytewise(36), nullable=False),
    Column("storage_key", String(200), nullable=False),
    Column("file_size", BigInteger, nullable=False),
    Column("duration", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("audio_format", String(16), nullable=False),
    Column("recorded_ts", BigInteger),  # null: take the call's answer, else start time
    Column("created_ts", BigInteger, nullable=False),
    UniqueConstraint("account_id", "call_uuid", name="uq_recordings_account_call"),
)

# Every raw FreeSWITCH leg, compressed, so calls can be derived again when the mapping improves.
cdr_legs = Table(
    "cdr_legs",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("leg_uuid", String(64), nullable=False),
    Column("call_uuid", String(64), nullable=False),  # the A-leg this leg folds into
    Column("role", String(16), nullable=False),  # a_leg, b_leg, agent, transfer
    Column("body_gz", LargeBinary, nullable=False),
    Column("received_ts", BigInteger, nullable=False),
    UniqueConstraint("account_id", "leg_uuid", name="uq_cdr_legs_account_leg"),
    Index("ix_cdr_legs_call", "account_id", "call_uuid"),
    Index("ix_cdr_legs_received", "account_id", "received_ts"),
)

# mod_callcenter names agents; a name is not always the extension.
agent_aliases = Table(
    "agent_aliases",
    metadata,
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("agent_name", String(128), primary_key=True),
    Column("extension", String(32), nullable=False),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at_ts", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),  # link_minted, download
    Column("account_id", Integer, nullable=False),
    Column("token_id", Integer),
    Column("recording_id", BigInteger),
    Column("client_addr", String(64)),
    Column("bytes_sent", BigInteger),
    Column("status", Integer),
    Column("detail", Text),
    Index("ix_audit_account_at", "account_id", "at_ts"),
)

# Requests per token and one-minute window, shared by every server process (api/ratelimit.py).
rate_limit_counters = Table(
    "rate_limit_counters",
    metadata,
    Column("token_id", Integer, ForeignKey("api_tokens.id", ondelete="CASCADE"), primary_key=True),
    Column("window_start", BigInteger, primary_key=True),  # epoch seconds, a multiple of the window
    Column("hits", Integer, nullable=False),
    Index("ix_rate_limit_counters_window", "window_start"),
)
