"""One error shape for the whole API, checked across every error path we can provoke in process."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from pbx_cdr.app import create_app
from pbx_cdr.config import Settings
from tests.conftest import Tenant, cdr

U = "65569ce0-0183-4f61-a3b2-0e433cfa4031"

# (method, path, headers-kind, body, expected status)
CASES: list[tuple[str, str, str, Any, int]] = [
    ("GET", "/api/pbx/cdr", "none", None, 401),
    ("GET", "/api/pbx/cdr", "write", None, 403),
    ("POST", "/api/pbx/cdr", "read", cdr(U), 403),
    ("GET", f"/api/pbx/cdr/{U}", "read", None, 404),
    ("GET", "/api/pbx/nothing-here", "read", None, 404),
    ("DELETE", "/api/pbx/cdr", "read", None, 405),
    ("GET", "/api/pbx/cdr?per_page=0", "read", None, 422),
    ("POST", "/api/pbx/cdr", "write", {"uuid": "x"}, 422),
    ("POST", "/api/pbx/cdr", "write", b"{not json", 400),
]


def _send(client: TestClient, tenant: Tenant, method: str, path: str, kind: str, body: Any) -> Any:
    headers = {"none": {}, "read": tenant.read, "write": tenant.write}[kind]
    if isinstance(body, bytes):
        return client.request(method, path, content=body, headers=headers)
    return client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "kind", "body", "status"), CASES)
def test_every_error_has_the_one_shape(
    client: TestClient, tenant: Tenant, method: str, path: str, kind: str, body: Any, status: int
) -> None:
    r = _send(client, tenant, method, path, kind, body)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/json")
    payload = r.json()
    assert isinstance(payload["message"], str) and payload["message"]
    if status == 422:
        assert set(payload) == {"message", "errors"}
        assert all(
            isinstance(v, list) and all(isinstance(m, str) for m in v) for v in payload["errors"].values()
        )
    else:
        assert set(payload) == {"message"}


def test_a_lost_database_is_503_not_500(settings: Settings, tenant: Tenant) -> None:
    dead = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none", pool_pre_ping=False)
    app = create_app(settings, engine=dead)
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/api/pbx/cdr", headers=tenant.read)
        assert r.status_code == 503 and r.json() == {"message": "Service Unavailable."}
        r = client.get("/readyz")
        assert r.status_code == 503 and set(r.json()) == {"message"}
        assert client.get("/healthz").status_code == 200
