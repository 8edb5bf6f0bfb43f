"""What every CLI command shares: settings (environment plus flags), the engine, one error type."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import click
from pydantic import ValidationError
from sqlalchemy import Engine

from pbx_cdr.config import Settings, load_settings
from pbx_cdr.db.engine import make_engine


class CliError(Exception):
    """A mistake the operator can fix: printed as one line, exit status 1."""


@dataclass
class CliContext:
    overrides: dict[str, object] = field(default_factory=dict)

    @cached_property
    def settings(self) -> Settings:
        try:
            return load_settings(**self.overrides)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise CliError(f"bad setting {'.'.join(map(str, first['loc']))}: {first['msg']}") from exc

    def engine(self) -> Engine:
        return self._engine

    @cached_property
    def _engine(self) -> Engine:
        s = self.settings
        return make_engine(s.database_url, sqlite_synchronous=s.sqlite_synchronous, pool_size=s.db_pool_size)

    def now(self) -> int:
        return int(time.time())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data-dir", type=click.Path(path_type=Path), help="Data folder [env PBX_CDR_DATA_DIR]")
@click.option("--database-url", help="SQLAlchemy URL [env PBX_CDR_DATABASE_URL]")
@click.option("--storage-url", help="file://PATH or s3://BUCKET/PREFIX [env PBX_CDR_STORAGE_URL]")
@click.version_option(package_name="pbx-cdr")
@click.pass_context
def cli(ctx: click.Context, data_dir: Path | None, database_url: str | None, storage_url: str | None) -> None:
    """pbx-cdr: call detail records and recordings for a FreeSWITCH call centre."""
    ctx.obj = CliContext(
        overrides={"data_dir": data_dir, "database_url": database_url, "storage_url": storage_url}
    )


pass_ctx = click.make_pass_decorator(CliContext)


def import_group(cli: click.Group) -> click.Group:
    """``pbx-cdr import``: the one group that every importer (recordings, FreeSWITCH legs) adds to."""
    group = cli.commands.get("import")
    if isinstance(group, click.Group):
        return group

    @cli.group("import")
    def imports() -> None:
        """Bulk imports from files on disk."""

    return imports
