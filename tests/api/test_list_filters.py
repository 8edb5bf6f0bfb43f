"""GET /api/pbx/cdr: every filter, the window, ordering, paging and the seed's shapes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Tenant, cdr

SEED_KEYS = {"current_page", "data", "last_page", "per_page", "total"}
ITEM_KEYS = {
    "uuid",
    "direction",
    "source_type",
    "caller_number",
    "destination_number",
    "extension_number",
    "agent_extension",
    "start_time",
    "answer_time",
    "end_time",
    "duration",
    "billsec",
    "queue_name",
    "queue_wait_time",
    "trunk_name",
    "transfer_count",
    "result",
    "hangup_cause",
    "sip_response_code",
    "recording_available",
    "created_at",
}


def uid(n: int) -> str:
    return str(uuid.UUID(int=n))


def post(client: TestClient, tenant: Tenant, *calls: dict[str, Any]) -> None:
    r = client.post("/api/pbx/cdr", json={"data": list(calls)}, headers=tenant.write)
    assert r.status_code in (200, 201), r.text


def listing(client: TestClient, tenant: Tenant, **params: Any) -> dict[str, Any]:
    r = client.get("/api/pbx/cdr", params=params, headers=tenant.read)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def uuids(body: dict[str, Any]) -> list[str]:
    return [item["uuid"] for item in body["data"]]


@pytest.fixture
def seeded(client: TestClient, tenant: Tenant) -> Callable[..., dict[str, Any]]:
    post(
        client,
        tenant,
        cdr(
            uid(1),
            direction="outbound",
            caller_number="1001",
            destination_number="0987654321",
            start_time="2026-06-27T08:00:00+00:00",
            end_time="2026-06-27T08:01:00+00:00",
            answer_time=None,
            sip_response_code="486",
        ),
        cdr(
            uid(2),
            direction="inbound",
            caller_number="+84987654321",
            destination_number="19006868",
            extension_number="1002",
            agent_extension="1002",
            queue_name="sales",
            queue_wait_time=12,
            start_time="2026-06-26T09:00:00+00:00",
            answer_time="2026-06-26T09:00:20+00:00",
            end_time="2026-06-26T09:05:00+00:00",
        ),
        cdr(
            uid(3),
            direction="internal",
            caller_number="1003",
            destination_number="1001",
            start_time="2026-06-20T10:00:00+00:00",
            answer_time="2026-06-20T10:00:05+00:00",
            end_time="2026-06-20T10:02:00+00:00",
        ),
        cdr(
            uid(4),
            direction="local",
            caller_number="1001",
            destination_number="*97",
            start_time="2026-05-29T00:00:00+00:00",
            answer_time="2026-05-29T00:00:01+00:00",
            end_time="2026-05-29T00:00:30+00:00",
        ),
        cdr(
            uid(5),
            direction="outbound",
            caller_number="1004",
            destination_number="84912344321",
            start_time="2026-05-27T23:59:59+00:00",
            answer_time=None,
            end_time="2026-05-28T00:00:10+00:00",
        ),
    )
    return lambda **params: listing(client, tenant, **params)


def test_the_seed_shape(seeded: Callable[..., dict[str, Any]]) -> None:
    body = seeded(per_page=2)
    assert set(body) >= SEED_KEYS
    assert (body["current_page"], body["per_page"], body["total"], body["last_page"]) == (1, 2, 4, 2)
    for item in body["data"]:
        assert set(item) == ITEM_KEYS
    first = body["data"][0]
    assert first["start_time"] == "2026-06-27T08:00:00+00:00"
    assert first["answer_time"] is None
    assert first["result"] == "busy" and first["sip_response_code"] == "486"
    assert first["created_at"] == "2026-06-27 12:00:00"
    assert first["recording_available"] is False


def test_default_window_is_the_last_30_days_newest_first(seeded: Callable[..., dict[str, Any]]) -> None:
    # uid(5) started on 2026-05-27, a day before the default window opens (2026-05-28 00:00 UTC).
    assert uuids(seeded()) == [uid(1), uid(2), uid(3), uid(4)]


def test_explicit_window_is_inclusive_of_whole_days(seeded: Callable[..., dict[str, Any]]) -> None:
    assert uuids(seeded(**{"from": "2026-05-27", "to": "2026-05-29"})) == [uid(4), uid(5)]
    assert uuids(seeded(**{"from": "2026-06-26", "to": "2026-06-26"})) == [uid(2)]
    assert seeded(**{"from": "2026-01-01", "to": "2026-01-02"})["total"] == 0


@pytest.mark.parametrize(
    ("direction", "expected"), [("inbound", [2]), ("outbound", [1]), ("internal", [3]), ("local", [4])]
)
def test_direction(seeded: Callable[..., dict[str, Any]], direction: str, expected: list[int]) -> None:
    body = seeded(direction=direction)
    assert uuids(body) == [uid(n) for n in expected]
    assert body["total"] == len(expected)


def test_extension_matches_extension_or_agent(seeded: Callable[..., dict[str, Any]]) -> None:
    assert uuids(seeded(extension="1001")) == [uid(1), uid(4)]
    assert uuids(seeded(extension="1002")) == [uid(2)]
    assert seeded(extension="9999")["total"] == 0


@pytest.mark.parametrize(
    "spelling", ["0987654321", "+84987654321", "84987654321", "987654321", "098 765 4321", "4321", "54321"]
)
def test_phone_spellings_find_the_same_calls(seeded: Callable[..., dict[str, Any]], spelling: str) -> None:
    assert uuids(seeded(phone=spelling)) == [uid(1), uid(2)]


def test_phone_suffix_is_a_suffix(seeded: Callable[..., dict[str, Any]]) -> None:
    wide = {"from": "2026-05-27", "to": "2026-06-25"}
    assert uuids(seeded(phone="4321", **wide)) == [uid(5)]
    assert seeded(phone="1234")["total"] == 0
    assert uuids(seeded(phone="19006868")) == [uid(2)]


def test_filters_combine(seeded: Callable[..., dict[str, Any]]) -> None:
    assert uuids(seeded(direction="outbound", extension="1001")) == [uid(1)]
    assert uuids(seeded(direction="inbound", phone="4321", extension="1002")) == [uid(2)]
    assert seeded(direction="local", phone="4321")["total"] == 0


def test_empty_parameters_count_as_absent_and_unknown_ones_are_ignored(
    seeded: Callable[..., dict[str, Any]],
) -> None:
    body = seeded(
        direction="", extension="", phone="", page="", per_page="", **{"from": "", "to": ""}, sort="x"
    )
    assert body["total"] == 4 and body["per_page"] == 50


def test_repeated_parameters_take_the_last(
    client: TestClient, tenant: Tenant, seeded: Callable[..., dict[str, Any]]
) -> None:
    r = client.get("/api/pbx/cdr?direction=sideways&direction=inbound", headers=tenant.read)
    assert r.status_code == 200 and r.json()["total"] == 1


def test_paging_and_pages_past_the_end(seeded: Callable[..., dict[str, Any]]) -> None:
    pages = [uuids(seeded(per_page=1, page=p)) for p in (1, 2, 3, 4)]
    assert pages == [[uid(1)], [uid(2)], [uid(3)], [uid(4)]]
    past = seeded(per_page=3, page=9)
    assert past["data"] == [] and past["total"] == 4 and past["last_page"] == 2 and past["current_page"] == 9


def test_ties_on_start_time_break_by_a_stable_key(client: TestClient, tenant: Tenant) -> None:
    same = "2026-06-27T08:00:00+00:00"
    post(
        client,
        tenant,
        *[cdr(uid(100 + n), start_time=same, answer_time=None, end_time=same) for n in range(6)],
    )
    full = uuids(listing(client, tenant))
    assert len(full) == 6
    paged = [u for p in (1, 2, 3) for u in uuids(listing(client, tenant, per_page=2, page=p))]
    assert paged == full


def test_an_empty_account(client: TestClient, tenant: Tenant) -> None:
    body = listing(client, tenant)
    assert body == {
        "current_page": 1,
        "data": [],
        "last_page": 1,
        "per_page": 50,
        "total": 0,
        "from": None,
        "to": None,
    }


def test_account_timezone_moves_the_day_edges(client: TestClient, make_tenant: Callable[..., Tenant]) -> None:
    hcm = make_tenant("hcm", timezone="Asia/Ho_Chi_Minh")
    # 2026-06-26T17:30Z is 2026-06-27 00:30 in Ho Chi Minh City.
    post(
        client,
        hcm,
        cdr(
            uid(7),
            start_time="2026-06-26T17:30:00+00:00",
            answer_time=None,
            end_time="2026-06-26T17:31:00+00:00",
        ),
    )
    assert listing(client, hcm, **{"from": "2026-06-27", "to": "2026-06-27"})["total"] == 1
    assert listing(client, hcm, **{"from": "2026-06-26", "to": "2026-06-26"})["total"] == 0


def test_the_window_cap_follows_the_account(client: TestClient, make_tenant: Callable[..., Tenant]) -> None:
    wide = make_tenant("wide", max_window_days=90)
    r = client.get("/api/pbx/cdr", params={"from": "2026-04-01", "to": "2026-06-27"}, headers=wide.read)
    assert r.status_code == 200
    narrow = make_tenant("narrow", max_window_days=7)
    r = client.get("/api/pbx/cdr", params={"from": "2026-06-01", "to": "2026-06-27"}, headers=narrow.read)
    assert r.status_code == 422 and "7 days" in r.json()["errors"]["to"][0]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-13-01"}, "from"),
        ({"from": "01/06/2026"}, "from"),
        ({"to": "2026-02-30"}, "to"),
        ({"from": "2026-06-10", "to": "2026-06-01"}, "to"),
        ({"from": "2026-04-01", "to": "2026-06-01"}, "to"),
        ({"direction": "up"}, "direction"),
        ({"extension": "12"}, "extension"),
        ({"extension": "1" * 21}, "extension"),
        ({"phone": "1" * 51}, "phone"),
        ({"phone": "abc"}, "phone"),
        ({"page": "0"}, "page"),
        ({"page": "x"}, "page"),
        ({"per_page": "0"}, "per_page"),
        ({"per_page": "201"}, "per_page"),
        ({"per_page": "1e2"}, "per_page"),
    ],
)
def test_every_422_of_the_contract(
    client: TestClient, tenant: Tenant, params: dict[str, str], field: str
) -> None:
    r = client.get("/api/pbx/cdr", params=params, headers=tenant.read)
    assert r.status_code == 422
    body = r.json()
    assert set(body) == {"message", "errors"}
    assert list(body["errors"]) == [field]
    assert body["message"] == body["errors"][field][0]
