"""``pbx-cdr``: one command for serving, migrations, accounts, tokens, imports and demo data."""

from __future__ import annotations

import sys

import click

from pbx_cdr.cli import accounts, audit, demo, freeswitch, recordings, serve, tokens
from pbx_cdr.cli.context import CliError, cli


@cli.command()
@click.pass_obj
def migrate(ctx: object) -> None:
    """Apply pending database migrations."""
    from pbx_cdr.cli.context import CliContext
    from pbx_cdr.db.migrate import current_revision, upgrade

    assert isinstance(ctx, CliContext)
    engine = ctx.engine()
    upgrade(engine)
    click.echo(f"database at revision {current_revision(engine)}")


for module in (accounts, tokens, serve, demo, recordings, audit, freeswitch):
    module.register(cli)


def main() -> None:
    """Entry point: our own errors become one line on stderr and exit status 1, never a traceback."""
    try:
        cli.main(prog_name="pbx-cdr", standalone_mode=False)
    except CliError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
