"""The corpus through the HTTP route, in every arrival order of each call's legs, on both databases.

For every order: no call exists until the A-leg has arrived (B-legs and agent legs wait), the final
call equals the case's expected call field by field, the account holds exactly one call, and
posting every leg again (FreeSWITCH's retries) changes nothing.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pbx_cdr.cli.context import CliContext
from pbx_cdr.cli.freeswitch import map_agent
from tests.conftest import Tenant
from tests.fixtures.freeswitch.corpus import CALL_FIELDS, CASES, Case

URL = "/api/pbx/ingest/freeswitch"


def basic(token: str) -> dict[str, str]:
    """What mod_json_cdr sends for ``cred=freeswitch:<token>``."""
    return {"Authorization": "Basic " + base64.b64encode(f"freeswitch:{token}".encode()).decode()}


def leg_uuid(path: Path) -> str:
    return path.name.split(".")[0].removeprefix("a_")


def post_leg(client: TestClient, tenant: Tenant, case: Case, path: Path) -> dict[str, str]:
    response = client.post(
        f"{URL}?uuid={leg_uuid(path)}",
        content=case.body(path),
        headers={**case.headers(), **basic(tenant.write_token)},
    )
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    assert body["leg_uuid"] == leg_uuid(path)
    if body["call"] != "pending":  # a leg waiting for its parent names the parent until then
        assert body["call_uuid"] == case.expected["uuid"]
    return body


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_arrival_order_gives_the_expected_call(
    client: TestClient, make_tenant: Callable[..., Tenant], cli_ctx: CliContext, case: Case
) -> None:
    uuid = case.expected["uuid"]
    for order in case.orders():
        tenant = make_tenant()
        for name, extension in case.agents.items():
            map_agent(cli_ctx, tenant.id, name, extension)
        arrived = False
        for path in order:
            answer = post_leg(client, tenant, case, path)
            arrived = arrived or path == case.a_leg
            assert answer["leg"] == "created"
            detail = client.get(f"/api/pbx/cdr/{uuid}", headers=tenant.read)
            if arrived:  # (a transfer leg whose B-leg is still missing waits, but the call exists)
                assert detail.status_code == 200
            else:  # a B-leg or agent leg alone never makes a call
                assert answer["call"] == "pending"
                assert detail.status_code == 404
        call = client.get(f"/api/pbx/cdr/{uuid}", headers=tenant.read).json()["data"]
        order_names = [p.name for p in order]
        assert {f: call[f] for f in CALL_FIELDS} == {f: case.expected[f] for f in CALL_FIELDS}, order_names
        listing = client.get("/api/pbx/cdr?from=2026-06-20&to=2026-06-27", headers=tenant.read).json()
        assert listing["total"] == 1, order_names

        for path in order:  # FreeSWITCH retries: nothing changes
            again = post_leg(client, tenant, case, path)
            assert (again["leg"], again["call"]) == ("unchanged", "unchanged")
        assert client.get(f"/api/pbx/cdr/{uuid}", headers=tenant.read).json()["data"] == call
