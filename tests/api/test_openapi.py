"""/openapi.json documents every route with accurate response schemas, errors included."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from pbx_cdr.api.schemas import CallDetail, CallPage, IngestResult
from tests.conftest import Tenant, cdr

U = "65569ce0-0183-4f61-a3b2-0e433cfa4031"


@pytest.fixture
def spec(client: TestClient) -> dict[str, Any]:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    return body


def test_routes_and_their_statuses(spec: dict[str, Any]) -> None:
    paths = spec["paths"]
    assert {"401", "403", "422", "200"} <= set(paths["/api/pbx/cdr"]["get"]["responses"])
    assert {"401", "403", "404", "200"} <= set(paths["/api/pbx/cdr/{uuid}"]["get"]["responses"])
    assert {"200", "201", "400", "401", "403", "413", "422"} <= set(
        paths["/api/pbx/cdr"]["post"]["responses"]
    )
    assert "503" in paths["/readyz"]["get"]["responses"]


def test_the_422_schema_is_laravel_shaped(spec: dict[str, Any]) -> None:
    content = spec["paths"]["/api/pbx/cdr"]["get"]["responses"]["422"]["content"]["application/json"]
    assert content["schema"]["$ref"].endswith("/ValidationErrorBody")
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_the_list_parameters_are_documented(spec: dict[str, Any]) -> None:
    names = {p["name"] for p in spec["paths"]["/api/pbx/cdr"]["get"]["parameters"]}
    assert names == {"from", "to", "direction", "extension", "phone", "page", "per_page"}


def test_the_ingest_body_is_documented(spec: dict[str, Any]) -> None:
    body = spec["paths"]["/api/pbx/cdr"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    refs = {option["$ref"].rsplit("/", 1)[1] for option in body["oneOf"]}
    assert refs == {"CallIn", "CallBatchIn"}
    assert {"CallIn", "CallBatchIn"} <= set(spec["components"]["schemas"])


def test_real_responses_match_their_schemas(client: TestClient, tenant: Tenant) -> None:
    r = client.post("/api/pbx/cdr", json=cdr(U), headers=tenant.write)
    IngestResult.model_validate(r.json())
    page = client.get("/api/pbx/cdr", headers=tenant.read).json()
    CallPage.model_validate(page)
    CallDetail.model_validate(client.get(f"/api/pbx/cdr/{U}", headers=tenant.read).json())
