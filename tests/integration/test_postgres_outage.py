"""A lost PostgreSQL answers 503, and the service recovers by itself when it returns."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from pbx_cdr.app import create_app
from pbx_cdr.cli.accounts import create_account
from pbx_cdr.cli.context import CliContext
from pbx_cdr.cli.tokens import issue_token
from pbx_cdr.config import load_settings
from tests.conftest import cdr
from tests.servers import PostgresServer, postgres_server

pytestmark = pytest.mark.postgres
U = "65569ce0-0183-4f61-a3b2-0e433cfa4031"


@pytest.fixture
def own_pg() -> Iterator[PostgresServer]:
    """A server of this test's own, since the test stops it."""
    with postgres_server() as server:
        admin = create_engine(server.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE outage"))
        admin.dispose()
        yield server


def test_outage_then_recovery(own_pg: PostgresServer, tmp_path: Path) -> None:
    overrides = {"data_dir": tmp_path, "database_url": own_pg.url("outage"), "secret_key": "k"}
    ctx = CliContext(overrides=dict(overrides))
    account = create_account(ctx, "acme")
    _, read = issue_token(ctx, account.id, "r", ["cdr:read", "cdr:write"])
    headers = {"Authorization": f"Bearer {read}"}
    app = create_app(load_settings(**overrides))
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/api/pbx/cdr", headers=headers).status_code == 200

        own_pg.stop()
        for _ in range(3):
            r = client.get("/api/pbx/cdr", headers=headers)
            assert r.status_code == 503, r.text
            assert r.json() == {"message": "Service Unavailable."}
        assert client.post("/api/pbx/cdr", json=cdr(U), headers=headers).status_code == 503
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200

        own_pg.start()
        assert client.get("/readyz").status_code == 200
        assert client.get("/api/pbx/cdr", headers=headers).status_code == 200
        assert client.post("/api/pbx/cdr", json=cdr(U), headers=headers).status_code == 201
