"""``POST /api/pbx/ingest/freeswitch``: auth, every body form, refusals, idempotency and isolation."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from pbx_cdr.db.tables import calls, cdr_legs
from tests.api.test_freeswitch_corpus import URL, basic, leg_uuid
from tests.conftest import Tenant
from tests.fixtures.freeswitch.corpus import CALL_FIELDS, CASES, Case

BY_NAME = {c.name: c for c in CASES}
IVR = BY_NAME["ivr_only_local"]  # one leg: the call is made by a single post
INTERNAL = BY_NAME["internal_answered"]


def raw(case: Case, which: str = "a") -> bytes:
    path = case.a_leg if which == "a" else next(p for p in case.legs if p != case.a_leg)
    return path.read_bytes().strip()


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def detail(client: TestClient, tenant: Tenant, uuid: str) -> Any:
    return client.get(f"/api/pbx/cdr/{uuid}", headers=tenant.read)


# --- authentication --------------------------------------------------------------------------


def test_basic_auth_with_the_token_as_password(client: TestClient, tenant: Tenant) -> None:
    r = client.post(URL, content=raw(IVR), headers=basic(tenant.write_token))
    assert r.status_code == 200, r.text
    assert r.json() == {
        "leg_uuid": IVR.expected["uuid"],
        "call_uuid": IVR.expected["uuid"],
        "role": "a_leg",
        "leg": "created",
        "call": "created",
    }


def test_bearer_auth(client: TestClient, tenant: Tenant) -> None:
    r = client.post(URL, content=raw(IVR), headers=tenant.write)
    assert r.status_code == 200
    assert detail(client, tenant, IVR.expected["uuid"]).status_code == 200


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Basic " + base64.b64encode(b"freeswitch:pbx_not-a-real-token").decode()}, 401),
        ({"Authorization": "Basic !!!"}, 401),
        ({"Authorization": "Digest username=freeswitch"}, 401),
    ],
)
def test_refused_credentials(
    client: TestClient, tenant: Tenant, engine: Engine, headers: dict[str, str], status: int
) -> None:
    r = client.post(URL, content=raw(IVR), headers=headers)
    assert r.status_code == status
    assert r.json() == {"message": "Unauthenticated."}
    assert count(engine, cdr_legs) == 0


def test_a_read_token_cannot_ingest(client: TestClient, tenant: Tenant, engine: Engine) -> None:
    r = client.post(URL, content=raw(IVR), headers=basic(tenant.read_token))
    assert r.status_code == 403
    assert r.json() == {"message": "This action is unauthorized."}
    assert count(engine, cdr_legs) == 0


# --- every body form -------------------------------------------------------------------------


def _forms(text: bytes) -> dict[str, tuple[bytes, dict[str, str]]]:
    b64 = base64.b64encode(text)
    return {
        "json": (text, {"Content-Type": "application/json"}),
        "json, no content type": (text, {}),
        "json as text/plain": (text, {"Content-Type": "text/plain"}),
        "json with a BOM and newline": (b"\xef\xbb\xbf" + text + b"\n", {}),
        "form": (
            b"cdr=" + quote(text, safe="").encode(),
            {"Content-Type": "application/x-www-form-urlencoded"},
        ),
        "form, + for spaces": (b"cdr=" + quote(text, safe="").replace("%20", "+").encode(), {}),
        "form as application/json": (
            b"cdr=" + quote(text, safe="").encode(),
            {"Content-Type": "application/json"},
        ),
        "base64": (b"cdr=" + b64, {"Content-Type": "application/x-www-form-base64-encoded"}),
        "base64, no content type": (b"cdr=" + b64, {}),
        "base64 as a form": (b"cdr=" + b64, {"Content-Type": "application/x-www-form-urlencoded"}),
        "base64, + read as spaces upstream": (b"cdr=" + b64.replace(b"+", b" "), {}),
        "err-log-dir base64 (no cdr=)": (b64 + b"\n", {}),
        "err-log-dir url-encoded (no cdr=)": (quote(text, safe="").encode() + b"\n", {}),
    }


@pytest.mark.parametrize("form", list(_forms(b"{}")))
def test_every_body_form_gives_the_same_call(
    client: TestClient, make_tenant: Callable[..., Tenant], form: str
) -> None:
    case = BY_NAME["inbound_queue_named_agent"]  # UTF-8, spaces, + and % in its values
    text = case.a_leg.read_bytes().strip()
    assert b"+" in base64.b64encode(text), "the base64 forms must carry a '+' to mean anything"
    body, headers = _forms(text)[form]
    tenant = make_tenant()
    r = client.post(URL, content=body, headers={**headers, **basic(tenant.write_token)})
    assert r.status_code == 200, r.text
    call = detail(client, tenant, case.expected["uuid"]).json()["data"]
    # Without its agent legs: the queue, the caller and the decoded values are what matter here.
    assert call["queue_name"] == "vip 100%"
    assert call["caller_number"] == "+84912000111"
    assert call["direction"] == "inbound" and call["trunk_name"] == "viettel"
    assert call["agent_extension"] is None  # "Nguyễn Văn An" is not an extension and not mapped


def test_values_are_decoded_exactly_once(client: TestClient, tenant: Tenant) -> None:
    """A form body is encoded twice in transit: %252B84 → %2B84 (form) → +84 (variables)."""
    doc = json.loads(raw(IVR))
    doc["variables"]["sip_gateway"] = "%2B84%20trunk%2525"  # '+84 trunk%25' after one decoding
    doc["callflow"][0]["caller_profile"]["context"] = "public"
    text = json.dumps(doc).encode()
    r = client.post(URL, content=b"cdr=" + quote(text, safe="").encode(), headers=basic(tenant.write_token))
    assert r.status_code == 200, r.text
    call = detail(client, tenant, IVR.expected["uuid"]).json()["data"]
    assert call["trunk_name"] == "+84 trunk%25"
    assert call["direction"] == "inbound"


# --- refusals: a clear reason, nothing stored --------------------------------------------------


def _without(*paths: str) -> bytes:
    doc = json.loads(raw(IVR))
    for path in paths:
        node = doc
        *parents, last = path.split(".")
        for key in parents:
            node = node[key]
        del node[last]
    return json.dumps(doc).encode()


def _with_variable(name: str, value: str) -> bytes:
    doc = json.loads(raw(IVR))
    doc["variables"][name] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("body", "status", "field", "says"),
    [
        (b"", 400, None, "empty"),
        (b"   \n", 400, None, "empty"),
        (b"hello", 400, None, "not a mod_json_cdr leg"),
        (b"cdr=@@@not-base64@@@", 400, None, "not a mod_json_cdr leg"),
        (b"cdr=" + base64.b64encode(b"not json"), 400, None, "not a mod_json_cdr leg"),
        (b'{"variables": {"uuid": ', 400, None, "not valid JSON"),
        (b'{"variables": {"uuid": "x"}, "callflow": [', 400, None, "not valid JSON"),
        (b"[1, 2]", 422, "body", "JSON object"),
        (b'{"channel_data": {}}', 422, "variables", "no variables"),
        (_without("variables.uuid", "callflow"), 422, "variables.uuid", "no uuid"),
        (_with_variable("uuid", "not-a-uuid"), 422, "variables.uuid", "must be a UUID"),
        (_with_variable("uuid", "a b"), 422, "variables.uuid", "not a channel uuid"),
        (_with_variable("start_epoch", "99999999999999"), 422, "variables.start_epoch", "out of range"),
    ],
)
def test_malformed_legs_are_refused_with_the_reason(
    client: TestClient, tenant: Tenant, engine: Engine, body: bytes, status: int, field: str | None, says: str
) -> None:
    r = client.post(URL, content=body, headers=basic(tenant.write_token))
    assert r.status_code == status, r.text
    answer = r.json()
    assert says in answer["message"]
    if status == 422:
        assert field in answer["errors"] and says in answer["errors"][field][0]
    else:
        assert "errors" not in answer
    assert count(engine, cdr_legs) == 0
    assert count(engine, calls) == 0


def test_a_leg_without_any_time_is_refused(client: TestClient, tenant: Tenant) -> None:
    doc = json.loads(raw(IVR))
    for key in [k for k in doc["variables"] if k.startswith(("start_", "end_", "profile_start"))]:
        del doc["variables"][key]
    del doc["variables"]["duration"]
    del doc["callflow"]
    r = client.post(URL, content=json.dumps(doc).encode(), headers=basic(tenant.write_token))
    assert r.status_code == 422
    assert "variables.start_epoch" in r.json()["errors"]


def test_a_huge_body_is_refused_before_it_is_read(client: TestClient, tenant: Tenant) -> None:
    r = client.post(URL, content=b"{" + b" " * (5 * 1024 * 1024) + b"}", headers=basic(tenant.write_token))
    assert r.status_code == 413


def test_url_uuid_stands_in_for_a_missing_uuid_variable(client: TestClient, tenant: Tenant) -> None:
    doc = json.loads(raw(IVR))
    del doc["variables"]["uuid"]
    del doc["callflow"]  # its profile's uuid would do too
    uuid = IVR.expected["uuid"]
    r = client.post(f"{URL}?uuid={uuid}", content=json.dumps(doc).encode(), headers=basic(tenant.write_token))
    assert r.status_code == 200, r.text
    assert detail(client, tenant, uuid).json()["data"]["caller_number"] == "1003"  # from sip_from_user


# --- idempotency, replacement, waiting legs, isolation ------------------------------------------


def test_a_repeated_post_changes_nothing(client: TestClient, tenant: Tenant, engine: Engine) -> None:
    first = client.post(URL, content=raw(IVR), headers=tenant.write).json()
    before = detail(client, tenant, IVR.expected["uuid"]).json()
    again = client.post(URL, content=base64.b64encode(raw(IVR)), headers=tenant.write).json()
    assert (first["leg"], first["call"]) == ("created", "created")
    assert (again["leg"], again["call"]) == ("unchanged", "unchanged")
    assert detail(client, tenant, IVR.expected["uuid"]).json() == before
    assert count(engine, cdr_legs) == 1 and count(engine, calls) == 1


def test_a_corrected_leg_replaces_the_stored_one(client: TestClient, tenant: Tenant) -> None:
    client.post(URL, content=raw(IVR), headers=tenant.write)
    fixed = _with_variable("hangup_cause", "NORMAL_UNSPECIFIED")
    answer = client.post(URL, content=fixed, headers=tenant.write).json()
    assert (answer["leg"], answer["call"]) == ("updated", "updated")
    assert detail(client, tenant, IVR.expected["uuid"]).json()["data"]["hangup_cause"] == "NORMAL_UNSPECIFIED"


def test_a_b_leg_alone_makes_no_call(client: TestClient, tenant: Tenant, engine: Engine) -> None:
    answer = client.post(URL, content=raw(INTERNAL, "b"), headers=tenant.write).json()
    assert answer["role"] == "b_leg"
    assert (answer["leg"], answer["call"]) == ("created", "pending")
    assert answer["call_uuid"] == INTERNAL.expected["uuid"]
    assert detail(client, tenant, INTERNAL.expected["uuid"]).status_code == 404
    assert count(engine, calls) == 0 and count(engine, cdr_legs) == 1


def test_legs_fold_only_within_their_account(client: TestClient, make_tenant: Callable[..., Tenant]) -> None:
    one, two = make_tenant(), make_tenant()
    uuid = INTERNAL.expected["uuid"]
    client.post(URL, content=raw(INTERNAL, "a"), headers=one.write)
    client.post(URL, content=raw(INTERNAL, "b"), headers=two.write)  # the other account's B-leg
    call = detail(client, one, uuid).json()["data"]
    assert call["result"] == "answered"  # from the A-leg's own record of the bridge
    assert detail(client, two, uuid).status_code == 404
    client.post(URL, content=raw(INTERNAL, "b"), headers=one.write)
    client.post(URL, content=raw(INTERNAL, "a"), headers=two.write)
    expected = {f: INTERNAL.expected[f] for f in CALL_FIELDS}
    for tenant in (one, two):
        got = detail(client, tenant, uuid).json()["data"]
        assert {f: got[f] for f in CALL_FIELDS} == expected


def test_roles_are_stored_for_every_leg_of_a_transfer(
    client: TestClient, tenant: Tenant, engine: Engine
) -> None:
    case = BY_NAME["attended_transfer"]
    for path in reversed(case.legs):
        client.post(URL, content=path.read_bytes(), headers=tenant.write)
    with engine.connect() as conn:
        rows = conn.execute(select(cdr_legs.c.leg_uuid, cdr_legs.c.call_uuid, cdr_legs.c.role)).all()
    roles = {r.leg_uuid: r.role for r in rows}
    assert {r.call_uuid for r in rows} == {case.expected["uuid"]}
    assert sorted(roles.values()) == ["a_leg", "b_leg", "transfer"]
    assert roles[case.expected["uuid"]] == "a_leg"
    transfer_leg = next(u for u, role in roles.items() if role == "transfer")
    assert transfer_leg == leg_uuid(
        next(p for p in case.legs if b"1003" in p.read_bytes() and not p.name.startswith("a_"))
    )


def test_the_raw_leg_is_kept_compressed(client: TestClient, tenant: Tenant, engine: Engine) -> None:
    import gzip

    text = raw(IVR)
    client.post(URL, content=b"cdr=" + base64.b64encode(text), headers=tenant.write)
    with engine.connect() as conn:
        blob = conn.execute(select(cdr_legs.c.body_gz)).scalar_one()
    assert gzip.decompress(blob) == text  # the JSON FreeSWITCH wrote, whatever form it came in
    assert len(blob) < len(text)


def test_the_route_is_documented(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    operation = spec["paths"][URL]["post"]
    assert {"200", "400", "401", "403", "413", "422"} <= set(operation["responses"])
    assert "application/x-www-form-urlencoded" in operation["requestBody"]["content"]
