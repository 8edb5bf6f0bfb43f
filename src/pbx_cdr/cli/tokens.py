"""``pbx-cdr tokens create|list|revoke``."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click
from rich.console import Console
from rich.table import Table

from pbx_cdr import tokens as token_strings
from pbx_cdr.cli.accounts import require_account
from pbx_cdr.cli.context import CliContext, CliError, pass_ctx
from pbx_cdr.db import engine as db
from pbx_cdr.db.migrate import upgrade
from pbx_cdr.db.queries import tokens as queries


def issue_token(ctx: CliContext, account_id: int, name: str, scopes: list[str]) -> tuple[int, str]:
    """Create a token (shared by ``tokens create`` and ``demo``); the plain string is returned once."""
    bad = [s for s in scopes if s not in token_strings.SCOPES]
    if bad:
        raise CliError(f"unknown scope {bad[0]!r} (use {' or '.join(token_strings.SCOPES)})")
    if not scopes:
        raise CliError("give at least one --scope")
    require_account(ctx, account_id)
    token = token_strings.new_token()
    with db.write(ctx.engine()) as conn:
        row = queries.create_token(
            conn,
            account_id=account_id,
            name=name,
            token_hash=token_strings.hash_token(token),
            scopes=scopes,
            now=ctx.now(),
        )
    return row.id, token


def _when(ts: int | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def register(cli: click.Group) -> None:
    @cli.group()
    def tokens() -> None:
        """API tokens: shown once, stored only as a hash."""

    @tokens.command("create")
    @click.argument("account_id", type=int)
    @click.option("--name", default="api", show_default=True, help="A label for the token")
    @click.option("--scope", "scopes", multiple=True, help="cdr:read and/or cdr:write (repeat the option)")
    @click.option("--json", "as_json", is_flag=True, help="Print {id, token} as JSON")
    @pass_ctx
    def create(ctx: CliContext, account_id: int, name: str, scopes: tuple[str, ...], as_json: bool) -> None:
        """Create a token; it is printed once and cannot be shown again."""
        token_id, token = issue_token(ctx, account_id, name, list(scopes))
        if as_json:
            click.echo(json.dumps({"id": token_id, "token": token}))
        else:
            click.echo(
                f"token {token_id} ({', '.join(sorted(set(scopes)))}); store it now, it is not shown again:"
            )
            click.echo(token)

    @tokens.command("list")
    @click.argument("account_id", type=int)
    @click.option("--json", "as_json", is_flag=True, help="Print JSON")
    @pass_ctx
    def list_(ctx: CliContext, account_id: int, as_json: bool) -> None:
        """List an account's tokens (never the token strings)."""
        require_account(ctx, account_id)
        with db.read(ctx.engine()) as conn:
            rows = queries.list_tokens(conn, account_id)
        if as_json:
            click.echo(
                json.dumps(
                    [
                        {
                            "id": t.id,
                            "name": t.name,
                            "scopes": sorted(t.scopes),
                            "created_at": _when(t.created_ts),
                            "last_used_at": _when(t.last_used_ts) if t.last_used_ts else None,
                            "revoked_at": _when(t.revoked_ts) if t.revoked_ts else None,
                        }
                        for t in rows
                    ]
                )
            )
            return
        table = Table("id", "name", "scopes", "created", "last used", "revoked")
        for t in rows:
            table.add_row(
                str(t.id),
                t.name,
                " ".join(sorted(t.scopes)),
                _when(t.created_ts),
                _when(t.last_used_ts),
                _when(t.revoked_ts),
            )
        Console().print(table)

    @tokens.command("revoke")
    @click.argument("token_id", type=int)
    @pass_ctx
    def revoke(ctx: CliContext, token_id: int) -> None:
        """Revoke a token: refused from the next request on."""
        upgrade(ctx.engine())
        with db.write(ctx.engine()) as conn:
            if queries.get_token(conn, token_id) is None:
                raise CliError(f"no token with id {token_id}")
            changed = queries.revoke_token(conn, token_id, ctx.now())
        click.echo(f"token {token_id} revoked" if changed else f"token {token_id} was already revoked")
