"""POST /api/pbx/cdr: one call or a batch, idempotent, validated whole, hour counts kept right."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import Tenant, cdr

U = "65569ce0-0183-4f61-a3b2-0e433cfa4031"


def uid(n: int) -> str:
    return str(uuid.UUID(int=n))


def total(client: TestClient, tenant: Tenant, **params: Any) -> int:
    r = client.get("/api/pbx/cdr", params=params, headers=tenant.read)
    assert r.status_code == 200, r.text
    value: int = r.json()["total"]
    return value


def test_one_call_created_then_unchanged_then_updated(client: TestClient, tenant: Tenant) -> None:
    r = client.post("/api/pbx/cdr", json=cdr(U), headers=tenant.write)
    assert r.status_code == 201
    assert r.json() == {
        "data": [{"uuid": U, "status": "created"}],
        "created": 1,
        "updated": 0,
        "unchanged": 0,
    }
    r = client.post("/api/pbx/cdr", json=cdr(U), headers=tenant.write)
    assert r.status_code == 200 and r.json()["unchanged"] == 1
    r = client.post("/api/pbx/cdr", json=cdr(U, trunk_name="viettel-sip"), headers=tenant.write)
    assert r.status_code == 200 and r.json()["updated"] == 1
    assert total(client, tenant) == 1
    detail = client.get(f"/api/pbx/cdr/{U}", headers=tenant.read).json()["data"]
    assert detail["trunk_name"] == "viettel-sip"
    assert detail["created_at"] == "2026-06-27 12:00:00"


def test_a_correction_that_moves_the_call_moves_its_count(client: TestClient, tenant: Tenant) -> None:
    client.post("/api/pbx/cdr", json=cdr(U), headers=tenant.write)
    assert total(client, tenant, direction="outbound") == 1
    moved = cdr(
        U,
        direction="inbound",
        start_time="2026-06-01T08:15:42+00:00",
        answer_time=None,
        end_time="2026-06-01T08:16:00+00:00",
    )
    assert client.post("/api/pbx/cdr", json=moved, headers=tenant.write).json()["updated"] == 1
    assert total(client, tenant, direction="outbound") == 0
    assert total(client, tenant, direction="inbound") == 1
    assert total(client, tenant, **{"from": "2026-06-01", "to": "2026-06-01"}) == 1
    assert total(client, tenant, **{"from": "2026-06-27", "to": "2026-06-27"}) == 0


def test_a_batch(client: TestClient, tenant: Tenant) -> None:
    calls = [
        cdr(
            uid(n),
            start_time=f"2026-06-{n + 1:02d}T10:00:00+00:00",
            answer_time=None,
            end_time=f"2026-06-{n + 1:02d}T10:00:30+00:00",
        )
        for n in range(20)
    ]
    r = client.post("/api/pbx/cdr", json={"data": calls}, headers=tenant.write)
    assert r.status_code == 201 and r.json()["created"] == 20
    r = client.post("/api/pbx/cdr", json={"data": [*calls, cdr(uid(99))]}, headers=tenant.write)
    assert r.status_code == 201
    assert (r.json()["created"], r.json()["unchanged"]) == (1, 20)
    assert total(client, tenant) == 21


def test_a_batch_of_1000_and_1001(client: TestClient, tenant: Tenant) -> None:
    calls = [cdr(uid(n)) for n in range(1001)]
    r = client.post("/api/pbx/cdr", json={"data": calls}, headers=tenant.write)
    assert r.status_code == 422 and "1000" in r.json()["errors"]["data"][0]
    assert total(client, tenant) == 0
    r = client.post("/api/pbx/cdr", json={"data": calls[:1000]}, headers=tenant.write)
    assert r.status_code == 201 and r.json()["created"] == 1000
    assert total(client, tenant) == 1000


def test_one_bad_item_writes_nothing(client: TestClient, tenant: Tenant) -> None:
    r = client.post(
        "/api/pbx/cdr", json={"data": [cdr(uid(1)), cdr(uid(2), end_time="soon")]}, headers=tenant.write
    )
    assert r.status_code == 422
    assert r.json()["errors"] == {
        "data.1.end_time": ["The end time field must be an ISO 8601 date-time with an offset."]
    }
    assert total(client, tenant) == 0


def test_bodies_that_are_not_json(client: TestClient, tenant: Tenant) -> None:
    for body in (b"", b"{", b"\xff\xfe", b"null", b"[]", b"123"):
        r = client.post(
            "/api/pbx/cdr", content=body, headers={**tenant.write, "Content-Type": "application/json"}
        )
        assert r.status_code in (400, 422), (body, r.status_code)
        assert isinstance(r.json()["message"], str)


def test_a_body_over_the_limit_is_413(client: TestClient, tenant: Tenant) -> None:
    r = client.post("/api/pbx/cdr", content=b"{" + b" " * (9 * 1024 * 1024) + b"}", headers=tenant.write)
    assert r.status_code == 413
    assert "message" in r.json()


def test_created_and_recorded_fields_from_the_client_are_ignored(client: TestClient, tenant: Tenant) -> None:
    client.post(
        "/api/pbx/cdr",
        json=cdr(U, created_at="1999-01-01 00:00:00", recording_available=True),
        headers=tenant.write,
    )
    detail = client.get(f"/api/pbx/cdr/{U}", headers=tenant.read).json()["data"]
    assert detail["created_at"] == "2026-06-27 12:00:00" and detail["recording_available"] is False


def test_detail_uuid_forms(client: TestClient, tenant: Tenant) -> None:
    client.post("/api/pbx/cdr", json=cdr(U), headers=tenant.write)
    assert client.get(f"/api/pbx/cdr/{U.upper()}", headers=tenant.read).status_code == 200
    for bad in ("nope", "65569ce0", U + "0", "%00"):
        r = client.get(f"/api/pbx/cdr/{bad}", headers=tenant.read)
        assert r.status_code == 404 and r.json() == {"message": "Call not found."}
    r = client.get("/api/pbx/cdr/..%2F..%2Fetc", headers=tenant.read)
    assert r.status_code == 404 and set(r.json()) == {"message"}
