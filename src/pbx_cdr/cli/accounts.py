"""``pbx-cdr accounts create|list|update|recount``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from pbx_cdr.cli.context import CliContext, CliError, pass_ctx
from pbx_cdr.db import engine as db
from pbx_cdr.db.migrate import upgrade
from pbx_cdr.db.queries import accounts as queries
from pbx_cdr.db.queries import calls as call_queries
from pbx_cdr.db.queries import counts as count_queries
from pbx_cdr.domain import accounts as rules
from pbx_cdr.domain.accounts import InvalidAccountSetting


def _settings_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            click.option(
                "--timezone", help="IANA timezone of the account's days (default PBX_CDR_DEFAULT_TIMEZONE)"
            ),
            click.option("--country", help="Default country for phone numbers, ISO 3166 (default VN)"),
            click.option(
                "--max-window-days", type=int, help="Widest from..to window of the list (default 30)"
            ),
            click.option(
                "--recording-url-ttl", type=int, help="Signed link lifetime, seconds (default 1800)"
            ),
            click.option(
                "--rate-limit", type=int, help="Requests per minute per token; 0 turns it off (default 600)"
            ),
            click.option("--json", "as_json", is_flag=True, help="Print JSON"),
        ]
    ):
        fn = option(fn)
    return fn


def account_json(account: queries.Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "name": account.name,
        "timezone": account.timezone,
        "country": account.country,
        "max_window_days": account.max_window_days,
        "recording_url_ttl": account.recording_url_ttl,
        "rate_limit": account.rate_limit_per_minute,
    }


def create_account(ctx: CliContext, name: str, **options: Any) -> queries.Account:
    """Create an account with checked settings (shared by ``accounts create`` and ``demo``)."""
    if not name.strip() or len(name) > 200:
        raise CliError("an account name must have 1 to 200 characters")
    try:
        checked = rules.check_settings(**options)
    except InvalidAccountSetting as exc:
        raise CliError(str(exc)) from exc
    engine = ctx.engine()
    upgrade(engine)
    with db.write(engine) as conn:
        return queries.create_account(
            conn,
            name=name.strip(),
            timezone=str(checked.get("timezone", ctx.settings.default_timezone)),
            country=str(checked.get("country", ctx.settings.default_country)),
            max_window_days=int(checked.get("max_window_days", rules.DEFAULT_MAX_WINDOW_DAYS)),  # type: ignore[call-overload]
            recording_url_ttl=int(checked.get("recording_url_ttl", rules.DEFAULT_RECORDING_URL_TTL)),  # type: ignore[call-overload]
            rate_limit_per_minute=int(checked.get("rate_limit_per_minute", rules.DEFAULT_RATE_LIMIT)),  # type: ignore[call-overload]
            now=ctx.now(),
        )


def require_account(ctx: CliContext, account_id: int) -> queries.Account:
    upgrade(ctx.engine())
    with db.read(ctx.engine()) as conn:
        account = queries.get_account(conn, account_id)
    if account is None:
        raise CliError(f"no account with id {account_id}")
    return account


def register(cli: click.Group) -> None:
    @cli.group()
    def accounts() -> None:
        """Accounts (tenants): every call, recording and token belongs to one."""

    @accounts.command("create")
    @click.argument("name")
    @_settings_options
    @pass_ctx
    def create(ctx: CliContext, /, name: str, as_json: bool, rate_limit: int | None, **options: Any) -> None:
        """Create an account."""
        account = create_account(ctx, name, rate_limit_per_minute=rate_limit, **options)
        if as_json:
            click.echo(json.dumps({"id": account.id, "name": account.name}))
        else:
            click.echo(f"created account {account.id} ({account.name}), timezone {account.timezone}")

    @accounts.command("list")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON lines")
    @pass_ctx
    def list_(ctx: CliContext, as_json: bool) -> None:
        """List accounts."""
        upgrade(ctx.engine())
        with db.read(ctx.engine()) as conn:
            rows = queries.list_accounts(conn)
        if as_json:
            click.echo(json.dumps([account_json(a) for a in rows]))
            return
        table = Table("id", "name", "timezone", "country", "window", "link ttl", "rate/min")
        for a in rows:
            table.add_row(
                str(a.id),
                a.name,
                a.timezone,
                a.country,
                f"{a.max_window_days} d",
                f"{a.recording_url_ttl} s",
                str(a.rate_limit_per_minute or "off"),
            )
        Console().print(table)

    @accounts.command("update")
    @click.argument("account_id", type=int)
    @click.option("--name", help="New name")
    @_settings_options
    @pass_ctx
    def update(
        ctx: CliContext,
        /,
        account_id: int,
        name: str | None,
        as_json: bool,
        rate_limit: int | None,
        **options: Any,
    ) -> None:
        """Change an account's settings (a new country re-keys its numbers for phone search)."""
        account = require_account(ctx, account_id)
        try:
            changes = rules.check_settings(rate_limit_per_minute=rate_limit, **options)
        except InvalidAccountSetting as exc:
            raise CliError(str(exc)) from exc
        if name is not None:
            if not name.strip() or len(name) > 200:
                raise CliError("an account name must have 1 to 200 characters")
            changes["name"] = name.strip()
        with db.write(ctx.engine()) as conn:
            updated = queries.update_account(conn, account_id, **changes)
            if "country" in changes and changes["country"] != account.country:
                call_queries.rekey_numbers(conn, account_id, str(changes["country"]))
        assert updated is not None
        if as_json:
            click.echo(json.dumps(account_json(updated)))
        else:
            click.echo(f"updated account {updated.id} ({updated.name})")

    @accounts.command("recount")
    @click.argument("account_ids", type=int, nargs=-1)
    @pass_ctx
    def recount(ctx: CliContext, /, account_ids: tuple[int, ...]) -> None:
        """Count the calls of accounts again (every account if none is named): the hour, day and
        number counts the list's totals are summed from. Writes to calls wait meanwhile (seconds
        for a busy account). For a repair, or after an upgrade that processes of an older release
        wrote through."""
        ids = [require_account(ctx, i).id for i in account_ids]
        if not ids:
            upgrade(ctx.engine())
            with db.read(ctx.engine()) as conn:
                ids = [a.id for a in queries.list_accounts(conn)]
        for account_id in ids:
            with db.write(ctx.engine()) as conn:
                counted = count_queries.recount(conn, account_id)
            click.echo(f"account {account_id}: {counted} calls counted")
