"""Resource limits enforced by the application: each refusal a clear 4xx in the contract's shape."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from pbx_cdr.api.middleware import MIN_BODY_CAP
from pbx_cdr.app import create_app
from pbx_cdr.config import Settings
from pbx_cdr.ingest.json_cdr import MAX_BATCH
from tests.conftest import Tenant, cdr

LIST = "/api/pbx/cdr"


def _error(r: Any, status: int) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"message"}
    message: str = body["message"]
    return message


def test_a_long_query_string_is_414(client: TestClient, tenant: Tenant) -> None:
    r = client.get(LIST + "?phone=" + "1" * 5000, headers=tenant.read)
    assert "4096 bytes" in _error(r, 414)


def test_a_long_path_is_414(client: TestClient, tenant: Tenant) -> None:
    r = client.get(LIST + "/" + "a" * 5000, headers=tenant.read)
    _error(r, 414)


def test_a_query_string_under_the_limit_is_read(client: TestClient, tenant: Tenant) -> None:
    r = client.get(LIST + "?unknown=" + "x" * 3500, headers=tenant.read)
    assert r.status_code == 200


def test_too_many_headers_is_431(client: TestClient, tenant: Tenant) -> None:
    headers = {**tenant.read, **{f"x-filler-{i}": "1" for i in range(120)}}
    assert "100 headers" in _error(client.get(LIST, headers=headers), 431)


def test_oversized_headers_are_431(client: TestClient, tenant: Tenant) -> None:
    headers = {**tenant.read, "x-filler": "y" * 20000}
    assert "16384 bytes" in _error(client.get(LIST, headers=headers), 431)


def test_limits_follow_the_settings(settings: Settings, tenant: Tenant) -> None:
    tight = settings.model_copy(update={"max_url_bytes": 300, "max_header_bytes": 2000})
    with TestClient(create_app(tight)) as client:
        assert client.get(LIST + "?x=" + "1" * 200, headers=tenant.read).status_code == 200
        _error(client.get(LIST + "?x=" + "1" * 400, headers=tenant.read), 414)
        _error(client.get(LIST, headers={**tenant.read, "x-filler": "y" * 2500}), 431)


def test_a_body_over_every_routes_limit_is_413_before_it_is_read(client: TestClient, tenant: Tenant) -> None:
    """The declared length decides: the app never reads a body no route would take."""
    size = max(MIN_BODY_CAP, 200 * 1024 * 1024) + 1
    seen = 0

    def body() -> Any:
        nonlocal seen
        chunk = b"x" * 65536
        while seen < size:
            seen += len(chunk)
            yield chunk

    r = client.request("GET", LIST, headers={**tenant.read, "content-length": str(size)}, content=body())
    assert "209715200 bytes" in _error(r, 413)
    assert seen < size


def test_json_ingest_over_8_mib_is_413(client: TestClient, tenant: Tenant) -> None:
    r = client.post(
        LIST,
        content=b"[" + b" " * (8 * 1024 * 1024) + b"]",
        headers={**tenant.write, "content-type": "application/json"},
    )
    assert "8388608 bytes" in _error(r, 413)


def test_a_batch_over_1000_is_422(client: TestClient, tenant: Tenant) -> None:
    batch = [cdr(f"00000000-0000-4000-8000-{i:012d}") for i in range(MAX_BATCH + 1)]
    r = client.post(LIST, json={"data": batch}, headers=tenant.write)
    assert r.status_code == 422
    assert r.json()["errors"]


@pytest.mark.parametrize("path", ["/healthz", LIST])
def test_every_answer_carries_a_request_id(client: TestClient, tenant: Tenant, path: str) -> None:
    r = client.get(path + "?x=" + "1" * 5000, headers=tenant.read)
    assert r.status_code == 414
    assert len(r.headers["X-Request-ID"]) == 32


@pytest.mark.parametrize("query", ["extension=00%00", "phone=1%002", "direction=%00", "x%00=1"])
def test_a_nul_byte_in_the_query_is_422(client: TestClient, tenant: Tenant, query: str) -> None:
    """Found by schemathesis on PostgreSQL, which cannot compare text holding NUL (it was a 500)."""
    r = client.get(f"{LIST}?{query}", headers=tenant.read)
    assert r.status_code == 422
    assert "NUL" in r.json()["message"]
