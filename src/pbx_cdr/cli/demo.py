"""``pbx-cdr demo``: a demo account full of realistic calls, a read token, ready curl lines, a server."""

from __future__ import annotations

import click
from rich.progress import Progress

from pbx_cdr.cli.accounts import create_account
from pbx_cdr.cli.context import CliContext, pass_ctx
from pbx_cdr.cli.recordings import attach_demo_recordings, newest_recorded_call
from pbx_cdr.cli.serve import run_server
from pbx_cdr.cli.tokens import issue_token
from pbx_cdr.db import engine as db
from pbx_cdr.db.migrate import upgrade
from pbx_cdr.db.queries import accounts as account_queries
from pbx_cdr.db.queries import calls as call_queries
from pbx_cdr.db.queries import counts
from pbx_cdr.demo.generator import generate_calls

DEMO_ACCOUNT = "Demo Call Centre"
DEMO_TIMEZONE = "Asia/Ho_Chi_Minh"
BATCH = 1000


def load_demo(ctx: CliContext, calls: int, seed: int) -> tuple[int, int]:
    """The demo account (made once) with ``calls`` calls over the last 30 days; (account id, new calls)."""
    engine = ctx.engine()
    upgrade(engine)
    with db.read(engine) as conn:
        account = account_queries.find_account_by_name(conn, DEMO_ACCOUNT)
    if account is None:
        account = create_account(ctx, DEMO_ACCOUNT, timezone=DEMO_TIMEZONE, country="VN")
    now = ctx.now()
    with db.read(engine) as conn:
        have = counts.window_total(conn, account.id, now - 30 * 86400, now + 1, None)
    missing = max(0, calls - have)
    if missing:
        batch = []
        with Progress(transient=True) as progress:
            task = progress.add_task("generating demo calls", total=missing)
            for call in generate_calls(missing, days=29, tz=account.timezone, seed=seed + now // 86400):
                batch.append(call)
                if len(batch) == BATCH:
                    _store(ctx, account.id, batch, now)
                    progress.advance(task, len(batch))
                    batch = []
            if batch:
                _store(ctx, account.id, batch, now)
                progress.advance(task, len(batch))
    return account.id, missing


def _store(ctx: CliContext, account_id: int, batch: list, now: int) -> None:  # type: ignore[type-arg]
    with db.write(ctx.engine()) as conn:
        call_queries.upsert_calls(conn, account_id, "VN", batch, origin="demo", now=now)


def register(cli: click.Group) -> None:
    @cli.command()
    @click.option("--calls", default=6000, show_default=True, type=click.IntRange(1, 10_000_000))
    @click.option("--seed", default=2026, show_default=True, type=int)
    @click.option(
        "--recordings",
        default=300,
        show_default=True,
        type=click.IntRange(0, 100_000),
        help="Answered calls that get a generated 8 kHz WAV recording",
    )
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
    @click.option("--serve/--no-serve", default=True, show_default=True, help="Start the server afterwards")
    @pass_ctx
    def demo(
        ctx: CliContext, calls: int, seed: int, recordings: int, host: str, port: int, serve: bool
    ) -> None:
        """Load a demo account with realistic calls, print a token and curl lines, and serve."""
        ctx.overrides.update(host=host, port=port)
        account_id, added = load_demo(ctx, calls, seed)
        recorded = attach_demo_recordings(ctx, account_id, recordings, seed)
        _, token = issue_token(ctx, account_id, "demo", ["cdr:read"])
        base = ctx.settings.public_url
        click.echo(f"demo account {account_id} ({DEMO_ACCOUNT}): {added} new calls, {recorded} recordings")
        click.echo(f"read token: {token}")
        click.echo("try:")
        click.echo(f"  curl -s -H 'Authorization: Bearer {token}' '{base}/api/pbx/cdr?per_page=5'")
        click.echo(
            f"  curl -s -H 'Authorization: Bearer {token}' '{base}/api/pbx/cdr?direction=inbound&phone=0987'"
        )
        click.echo(
            f"  curl -s -H 'Authorization: Bearer {token}' '{base}/api/pbx/cdr?extension=1001&per_page=3'"
        )
        recorded_call = newest_recorded_call(ctx, account_id)
        if recorded_call:
            detail = f"{base}/api/pbx/cdr/{recorded_call}"
            click.echo(f"  curl -s -H 'Authorization: Bearer {token}' '{detail}'")
            click.echo(f"  curl -si -H 'Authorization: Bearer {token}' '{detail}/recording'   # the 302")
            click.echo(
                f"  curl -sL -H 'Authorization: Bearer {token}' -o {recorded_call}.wav '{detail}/recording'"
            )
        if serve:
            click.echo(f"serving on {base} (Ctrl+C stops)")
            run_server(ctx, host, port, 1)
