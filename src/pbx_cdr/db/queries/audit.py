"""The audit trail of recordings: every link minted and every download served.

Rows hold ids, addresses, byte counts and statuses, never a token or a signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select

from pbx_cdr.db.tables import audit_events

LINK_MINTED = "link_minted"
DOWNLOAD = "download"
KINDS = (LINK_MINTED, DOWNLOAD)


@dataclass(frozen=True)
class AuditEvent:
    kind: str
    account_id: int
    at_ts: int
    recording_id: int | None = None
    token_id: int | None = None
    client_addr: str | None = None
    bytes_sent: int | None = None
    status: int | None = None
    detail: str | None = None


def record(conn: Connection, event: AuditEvent) -> None:
    conn.execute(
        insert(audit_events).values(
            at_ts=event.at_ts,
            kind=event.kind,
            account_id=event.account_id,
            token_id=event.token_id,
            recording_id=event.recording_id,
            client_addr=(event.client_addr or None) and event.client_addr[:64],
            bytes_sent=event.bytes_sent,
            status=event.status,
            detail=event.detail,
        )
    )


def list_events(
    conn: Connection,
    *,
    account_id: int | None = None,
    since_ts: int | None = None,
    kind: str | None = None,
    limit: int = 100,
) -> list[Any]:
    """Newest first."""
    query = select(audit_events)
    if account_id is not None:
        query = query.where(audit_events.c.account_id == account_id)
    if since_ts is not None:
        query = query.where(audit_events.c.at_ts >= since_ts)
    if kind is not None:
        query = query.where(audit_events.c.kind == kind)
    query = query.order_by(audit_events.c.at_ts.desc(), audit_events.c.id.desc()).limit(limit)
    return list(conn.execute(query))
