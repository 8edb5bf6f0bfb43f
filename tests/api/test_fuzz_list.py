"""Property: no query string, however odd, makes the list route answer 500."""

from __future__ import annotations

from urllib.parse import quote

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Tenant

KEYS = st.sampled_from(
    ["from", "to", "direction", "extension", "phone", "page", "per_page", "x", "from[]", "page[0]"]
)
VALUES = st.one_of(
    st.text(max_size=60),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.dates().map(lambda d: d.isoformat()),
    st.sampled_from(["inbound", "outbound", "+84987654321", "0", "", "%", "\x00", "2026-02-29", "9" * 25]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(KEYS, VALUES), max_size=6))
def test_no_query_string_gets_a_500(client: TestClient, tenant: Tenant, pairs: list[tuple[str, str]]) -> None:
    query = "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs)
    r = client.get(f"/api/pbx/cdr?{query}", headers=tenant.read)
    assert r.status_code in (200, 422), (query, r.status_code, r.text)
    body = r.json()
    if r.status_code == 200:
        assert body["per_page"] >= 1 and body["last_page"] >= 1
    else:
        assert set(body) == {"message", "errors"}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=80))
def test_raw_query_bytes(client: TestClient, tenant: Tenant, raw: bytes) -> None:
    query = quote(raw, safe="=&")
    r = client.get(f"/api/pbx/cdr?{query}", headers=tenant.read)
    assert r.status_code in (200, 422), (query, r.status_code, r.text)
