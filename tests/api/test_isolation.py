"""Tenant isolation: every route, asked by one account about another account's ids (and unknown
ones), answers as if they did not exist. docs/security.md holds the matrix and points here.

``test_every_route_is_in_the_matrix`` fails when a route is added without a row below.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from pbx_cdr.demo.audio import wav_bytes
from pbx_cdr.signing import sign_recording_url
from tests.conftest import NOW, SECRET, Tenant, cdr

OWNED = "65569ce0-0183-4f61-a3b2-0e433cfa4031"
UNKNOWN = "11111111-2222-4333-8444-555555555555"
FS_CASE = Path(__file__).parents[1] / "fixtures" / "freeswitch" / "internal_answered"
FS_UUID = "6cb19205-5cc6-4c06-9ad4-a2d159046b9e"

# Every route, and the test below that proves another account's data stays out of reach.
MATRIX: dict[tuple[str, str], str] = {
    ("GET", "/api/pbx/cdr"): "test_the_list_never_shows_another_accounts_calls",
    ("POST", "/api/pbx/cdr"): "test_posting_another_accounts_uuid_makes_a_call_of_ones_own",
    ("GET", "/api/pbx/cdr/{uuid}"): "test_uuid_routes_answer_404_for_other_and_unknown_ids",
    ("GET", "/api/pbx/cdr/{uuid}/recording"): "test_uuid_routes_answer_404_for_other_and_unknown_ids",
    ("DELETE", "/api/pbx/cdr/{uuid}/recording"): "test_uuid_routes_answer_404_for_other_and_unknown_ids",
    ("PUT", "/api/pbx/cdr/{uuid}/recording"): "test_an_upload_never_touches_another_accounts_recording",
    ("POST", "/api/pbx/ingest/freeswitch"): "test_freeswitch_legs_stay_in_the_posting_account",
    ("GET", "/api/public/recordings/{recording_id}/audio"): "test_a_signed_link_opens_only_its_own_recording",
    (
        "HEAD",
        "/api/public/recordings/{recording_id}/audio",
    ): "test_a_signed_link_opens_only_its_own_recording",
    ("GET", "/healthz"): "no account data",
    ("GET", "/readyz"): "no account data",
    ("GET", "/metrics"): "test_metrics_hold_no_account_data",
    ("GET", "/openapi.json"): "no account data",
    ("GET", "/docs"): "no account data",
    ("GET", "/docs/oauth2-redirect"): "no account data",
    ("GET", "/redoc"): "no account data",
    ("HEAD", "/openapi.json"): "no account data",
    ("HEAD", "/docs"): "no account data",
    ("HEAD", "/docs/oauth2-redirect"): "no account data",
    ("HEAD", "/redoc"): "no account data",
}


def served_routes(routes: list[Any]) -> set[tuple[str, str]]:
    """(method, path) of every route, through included routers (FastAPI resolves those lazily)."""
    served: set[tuple[str, str]] = set()
    for route in routes:
        if hasattr(route, "effective_candidates"):
            served |= served_routes(route.effective_candidates())
        elif isinstance(getattr(route, "path", None), str):
            served |= {(method, route.path) for method in getattr(route, "methods", None) or ()}
    return served


def test_every_route_is_in_the_matrix(app: Any) -> None:
    served = served_routes(app.routes)
    assert ("GET", "/api/pbx/cdr/{uuid}") in served
    assert served - set(MATRIX) == set(), "a route without an isolation test: add it to MATRIX"
    assert {k for k, v in MATRIX.items() if v.startswith("test_")} <= served


@pytest.fixture
def two(client: TestClient, make_tenant: Callable[..., Tenant]) -> tuple[Tenant, Tenant]:
    """Account ``a`` owns a call with a recording; account ``b`` owns nothing yet."""
    a, b = make_tenant("alpha"), make_tenant("beta")
    assert client.post("/api/pbx/cdr", json=cdr(OWNED), headers=a.write).status_code == 201
    put = client.put(
        f"/api/pbx/cdr/{OWNED}/recording",
        content=wav_bytes([100] * 8000),
        headers={**a.write, "Content-Type": "audio/wav"},
    )
    assert put.status_code == 201
    return a, b


def _a_still_has_everything(client: TestClient, a: Tenant) -> dict[str, Any]:
    detail = client.get(f"/api/pbx/cdr/{OWNED}", headers=a.read)
    assert detail.status_code == 200
    data: dict[str, Any] = detail.json()["data"]
    assert data["caller_number"] == "1001" and data["recording"] is not None
    return data


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/api/pbx/cdr/{}", "read"),
        ("GET", "/api/pbx/cdr/{}/recording", "read"),
        ("DELETE", "/api/pbx/cdr/{}/recording", "write"),
    ],
)
def test_uuid_routes_answer_404_for_other_and_unknown_ids(
    client: TestClient, two: tuple[Tenant, Tenant], method: str, path: str, scope: str
) -> None:
    a, b = two
    headers = b.read if scope == "read" else b.write
    answers = {}
    for name, target in (("other", OWNED), ("unknown", UNKNOWN), ("upper", OWNED.upper()), ("bad", "x" * 36)):
        r = client.request(method, path.format(target), headers=headers, follow_redirects=False)
        assert r.status_code == 404, (name, r.text)
        assert "location" not in r.headers
        answers[name] = r.json()
    # Another account's call and one that never existed are indistinguishable.
    assert answers["other"] == answers["unknown"] == answers["upper"]
    _a_still_has_everything(client, a)


def test_the_list_never_shows_another_accounts_calls(client: TestClient, two: tuple[Tenant, Tenant]) -> None:
    a, b = two
    for params in ({}, {"phone": "0987654321"}, {"extension": "1001"}, {"direction": "outbound"}):
        page = client.get("/api/pbx/cdr", params=params, headers=b.read).json()
        assert page["total"] == 0 and page["data"] == []
        assert client.get("/api/pbx/cdr", params=params, headers=a.read).json()["total"] == 1


def test_posting_another_accounts_uuid_makes_a_call_of_ones_own(
    client: TestClient, two: tuple[Tenant, Tenant]
) -> None:
    a, b = two
    r = client.post("/api/pbx/cdr", json=cdr(OWNED, caller_number="2002"), headers=b.write)
    assert r.status_code == 201 and r.json()["created"] == 1
    mine = client.get(f"/api/pbx/cdr/{OWNED}", headers=b.read).json()["data"]
    assert mine["caller_number"] == "2002" and mine["recording"] is None
    assert _a_still_has_everything(client, a)["caller_number"] == "1001"


def test_an_upload_never_touches_another_accounts_recording(
    client: TestClient, two: tuple[Tenant, Tenant]
) -> None:
    a, b = two
    before = _a_still_has_everything(client, a)["recording"]
    r = client.put(
        f"/api/pbx/cdr/{OWNED}/recording",
        content=wav_bytes([7] * 16000),
        headers={**b.write, "Content-Type": "audio/wav"},
    )
    assert r.status_code == 201 and r.json()["data"]["call_found"] is False  # b's own, waiting for b's call
    after = _a_still_has_everything(client, a)["recording"]
    assert (after["file_size"], after["duration"]) == (before["file_size"], before["duration"])
    assert client.get(f"/api/pbx/cdr/{OWNED}", headers=b.read).status_code == 404


def test_freeswitch_legs_stay_in_the_posting_account(client: TestClient, two: tuple[Tenant, Tenant]) -> None:
    a, b = two
    for leg in sorted(FS_CASE.glob("*.cdr.json")):
        body = json.loads(leg.read_text())
        r = client.post("/api/pbx/ingest/freeswitch", json=body, headers=b.write)
        assert r.status_code in (200, 201, 202), r.text
    assert client.get(f"/api/pbx/cdr/{FS_UUID}", headers=b.read).status_code == 200
    assert client.get(f"/api/pbx/cdr/{FS_UUID}", headers=a.read).status_code == 404
    assert client.get("/api/pbx/cdr", headers=a.read).json()["total"] == 1


def test_a_signed_link_opens_only_its_own_recording(client: TestClient, two: tuple[Tenant, Tenant]) -> None:
    a, b = two
    put = client.put(
        f"/api/pbx/cdr/{UNKNOWN}/recording",
        content=wav_bytes([9] * 8000),
        headers={**b.write, "Content-Type": "audio/wav"},
    )
    assert put.status_code == 201
    link = urlsplit(_a_still_has_everything(client, a)["recording"]["url"])
    a_id = int(link.path.split("/")[-2])
    for method in ("GET", "HEAD"):
        assert client.request(method, f"{link.path}?{link.query}").status_code == 200
        # The same signature on any other id (b's recording, the next ids) is refused.
        for other_id in (a_id + 1, a_id + 2, a_id + 1000):
            r = client.request(method, f"/api/public/recordings/{other_id}/audio?{link.query}")
            assert r.status_code == 403
        # A correctly signed link to an id that does not exist is a plain 404.
        missing, _ = sign_recording_url("http://testserver", a_id + 1000, NOW, 600, SECRET.encode())
        missing_link = urlsplit(missing)
        assert client.request(method, f"{missing_link.path}?{missing_link.query}").status_code == 404


def test_metrics_hold_no_account_data(client: TestClient, two: tuple[Tenant, Tenant]) -> None:
    a, _ = two
    scrape = client.get("/metrics").text
    assert OWNED not in scrape and "alpha" not in scrape and a.read_token not in scrape
