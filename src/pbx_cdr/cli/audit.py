"""``pbx-cdr audit list``: who was handed a recording link, and who downloaded what.

Rows show ids, client addresses, byte counts and statuses; tokens and signatures are never stored.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from pbx_cdr.cli.context import CliContext, CliError, pass_ctx
from pbx_cdr.db import engine as db
from pbx_cdr.db.migrate import upgrade
from pbx_cdr.db.queries import audit as queries
from pbx_cdr.domain.call import iso


def parse_since(value: str | None) -> int | None:
    """``YYYY-MM-DD`` (midnight UTC) or an ISO 8601 date-time (UTC when it has no offset)."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"--since must be YYYY-MM-DD or an ISO 8601 date-time, not {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def event_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": iso(row.at_ts),
        "kind": row.kind,
        "account_id": row.account_id,
        "token_id": row.token_id,
        "recording_id": row.recording_id,
        "client_addr": row.client_addr,
        "bytes_sent": row.bytes_sent,
        "status": row.status,
        "detail": json.loads(row.detail) if row.detail and row.detail.startswith("{") else row.detail,
    }


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def register(cli: click.Group) -> None:
    @cli.group()
    def audit() -> None:
        """The audit trail of recording links and downloads."""

    @audit.command("list")
    @click.option("--account", "account_id", type=int, help="Only this account's events")
    @click.option("--since", help="From this day (YYYY-MM-DD, UTC) or moment (ISO 8601)")
    @click.option("--kind", type=click.Choice(queries.KINDS), help="Only links minted, or only downloads")
    @click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1_000_000))
    @click.option("--json", "as_json", is_flag=True, help="Print JSON")
    @pass_ctx
    def list_(
        ctx: CliContext,
        account_id: int | None,
        since: str | None,
        kind: str | None,
        limit: int,
        as_json: bool,
    ) -> None:
        """Newest events first."""
        since_ts = parse_since(since)
        upgrade(ctx.engine())
        with db.read(ctx.engine()) as conn:
            rows = queries.list_events(conn, account_id=account_id, since_ts=since_ts, kind=kind, limit=limit)
        if as_json:
            click.echo(json.dumps([event_json(r) for r in rows]))
            return
        table = Table(
            "at (UTC)", "kind", "account", "token", "recording", "client", "bytes", "status", "detail"
        )
        for r in rows:
            table.add_row(
                _cell(iso(r.at_ts)),
                r.kind,
                str(r.account_id),
                _cell(r.token_id),
                _cell(r.recording_id),
                _cell(r.client_addr),
                _cell(r.bytes_sent),
                _cell(r.status),
                _cell(r.detail),
            )
        Console().print(table)
