from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import Tenant, cdr

UUID = "65569ce0-0183-4f61-a3b2-0e433cfa4031"


def test_post_then_list_and_detail(client: TestClient, tenant: Tenant) -> None:
    r = client.post("/api/pbx/cdr", json=cdr(UUID), headers=tenant.write)
    assert r.status_code == 201, r.text
    r = client.get("/api/pbx/cdr", headers=tenant.read)
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == 1
    assert body["data"][0]["uuid"] == UUID
    r = client.get(f"/api/pbx/cdr/{UUID}", headers=tenant.read)
    assert r.json()["data"]["recording"] is None
