"""``pbx-cdr serve``: migrate, then run N stateless worker processes."""

from __future__ import annotations

import os

import click
import uvicorn

from pbx_cdr.cli.context import CliContext, pass_ctx
from pbx_cdr.config import Settings
from pbx_cdr.db.migrate import upgrade
from pbx_cdr.observability.logs import log_config
from pbx_cdr.observability.metrics import prepare_multiprocess_dir


def export_settings(settings: Settings) -> None:
    """Hand the resolved settings to worker processes through their environment."""
    for name in ("data_dir", "database_url", "storage_url", "public_url", "host", "port"):
        os.environ[f"PBX_CDR_{name.upper()}"] = str(getattr(settings, name))


def run_server(ctx: CliContext, host: str, port: int, workers: int) -> None:
    ctx.overrides.update(host=host, port=port)
    settings = ctx.settings
    upgrade(ctx.engine())
    ctx.engine().dispose()
    export_settings(settings)
    if workers > 1:
        prepare_multiprocess_dir(settings.data_dir / "metrics")
    uvicorn.run(
        "pbx_cdr.asgi:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=5,
        http="pbx_cdr.api.protocol:GuardedHttpProtocol",  # deadline and size limits on request heads
        log_config=log_config(settings),
        access_log=False,  # pbx_cdr.access logs each request, query strings masked
    )


def register(cli: click.Group) -> None:
    @cli.command()
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
    @click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
    @pass_ctx
    def serve(ctx: CliContext, host: str, port: int, workers: int) -> None:
        """Serve the API (applies pending migrations first)."""
        run_server(ctx, host, port, workers)
