"""The list and JSON ingest bypass FastAPI's router (``api/direct_routes.py``) and answer as it would."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pbx_cdr.api import direct_routes
from pbx_cdr.api.routes import cdr as cdr_routes
from tests.conftest import Tenant, cdr

U = "0c7d7a4e-6a0b-4d55-8d63-2f6f1f6e7a10"


def direct_table(app: Any) -> dict[tuple[str, str], Any]:
    for middleware in app.user_middleware:
        if middleware.cls is direct_routes.DirectRoutes:
            routes = middleware.kwargs["routes"]
            return {(m, r.path): r for r in routes for m in r.methods if m != "HEAD"}
    raise AssertionError("DirectRoutes is not installed")


def test_exactly_the_list_and_ingest_are_direct(app: Any) -> None:
    table = direct_table(app)
    assert set(table) == {("GET", "/api/pbx/cdr"), ("POST", "/api/pbx/cdr")}
    assert table["GET", "/api/pbx/cdr"].endpoint is cdr_routes.list_cdrs
    assert table["POST", "/api/pbx/cdr"].endpoint is cdr_routes.ingest_cdrs


def test_direct_answers_are_logged_under_their_route(
    client: TestClient, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="pbx_cdr.access"):
        assert client.post("/api/pbx/cdr", json=cdr(U), headers=tenant.write).status_code == 201
        listed = client.get("/api/pbx/cdr", headers=tenant.read)
    assert listed.status_code == 200 and listed.json()["total"] == 1
    records = [r for r in caplog.records if r.name == "pbx_cdr.access"]
    assert [(r.method, r.route, r.status, r.account_id) for r in records] == [  # type: ignore[attr-defined]
        ("POST", "/api/pbx/cdr", 201, tenant.id),
        ("GET", "/api/pbx/cdr", 200, tenant.id),
    ]
    metrics = client.get("/metrics").text
    assert 'route="/api/pbx/cdr"' in metrics


def test_errors_raised_by_direct_endpoints_use_the_app_handlers(client: TestClient, tenant: Tenant) -> None:
    anonymous = client.get("/api/pbx/cdr")
    assert anonymous.status_code == 401 and anonymous.json() == {"message": "Unauthenticated."}
    invalid = client.get("/api/pbx/cdr?direction=sideways", headers=tenant.read)
    assert invalid.status_code == 422 and "direction" in invalid.json()["errors"]
    not_json = client.post(
        "/api/pbx/cdr", content=b"{", headers={**tenant.write, "content-type": "application/json"}
    )
    assert not_json.status_code == 400 and "message" in not_json.json()
    wrong_scope = client.post("/api/pbx/cdr", json=cdr(U), headers=tenant.read)
    assert wrong_scope.status_code == 403


def test_other_methods_still_reach_the_router(client: TestClient, tenant: Tenant) -> None:
    head = client.head("/api/pbx/cdr", headers=tenant.read)  # the router's answer: no HEAD route here
    assert head.status_code == 405 and head.content == b""
    put = client.put("/api/pbx/cdr", headers=tenant.write)
    assert put.status_code == 405 and set(put.headers["Allow"].split(", ")) >= {"GET", "POST"}
    # A trailing slash: the router's redirect, then the direct route.
    slash = client.get("/api/pbx/cdr/", headers=tenant.read, follow_redirects=False)
    assert slash.status_code == 307 and slash.headers["location"].endswith("/api/pbx/cdr")
    # The Allow header names the methods of routes inside included routers too.
    patch = client.patch(f"/api/pbx/cdr/{U}/recording", headers=tenant.write)
    assert patch.status_code == 405 and set(patch.headers["Allow"].split(", ")) == {"DELETE", "GET", "PUT"}


def test_an_unexpected_error_is_still_a_500(
    app: Any, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(cdr_routes, "parse_list_query", broken)
    with TestClient(app, raise_server_exceptions=False) as quiet:
        assert quiet.get("/api/pbx/cdr", headers=tenant.read).status_code == 500
