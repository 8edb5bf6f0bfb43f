"""List pages cached per process under the account's data version (``api/list_cache.py``).

A cached page must never outlive a change to what it shows, whichever process made the change: every
write path raises the version, and a second app on the same database (a second process) sees the
first one's writes at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from pbx_cdr.api.list_cache import ListCache
from pbx_cdr.api.routes import cdr as cdr_routes
from pbx_cdr.app import create_app
from pbx_cdr.clock import FrozenClock
from pbx_cdr.config import Settings
from pbx_cdr.db import engine as db
from pbx_cdr.db.queries import accounts as account_queries
from pbx_cdr.db.queries import calls as call_queries
from pbx_cdr.demo.audio import demo_recording
from tests.conftest import Tenant, cdr

U1 = "1a6e0c52-55a4-4b8e-9f43-6d1c0f3a2b01"
U2 = "1a6e0c52-55a4-4b8e-9f43-6d1c0f3a2b02"
WINDOW = {"from": "2026-06-01", "to": "2026-06-27"}


def version(engine: Engine, account_id: int) -> int:
    with db.read(engine) as conn:
        account = account_queries.get_account(conn, account_id)
    assert account is not None
    return account.data_version


def listing(client: TestClient, tenant: Tenant, **params: str) -> dict[str, Any]:
    r = client.get("/api/pbx/cdr", params={**WINDOW, **params}, headers=tenant.read)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many lists were read from the database (not the cache)."""
    seen: list[int] = []
    real = cdr_routes.page_body  # made from a page read from the database, on either database

    def counting(*args: Any, **kwargs: Any) -> Any:
        seen.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(cdr_routes, "page_body", counting)
    return seen


def test_a_repeated_question_is_answered_from_the_cache(
    client: TestClient, tenant: Tenant, reads: list[int]
) -> None:
    assert client.post("/api/pbx/cdr", json=cdr(U1), headers=tenant.write).status_code == 201
    first = client.get("/api/pbx/cdr", params=WINDOW, headers=tenant.read)
    second = client.get("/api/pbx/cdr", params=WINDOW, headers=tenant.read)
    assert len(reads) == 1
    assert second.content == first.content and second.json()["total"] == 1
    assert second.headers["content-type"] == first.headers["content-type"] == "application/json"
    assert second.headers["X-Request-ID"] != first.headers["X-Request-ID"]
    # Another page, filter or window is another question.
    listing(client, tenant, page="2")
    listing(client, tenant, direction="inbound")
    listing(client, tenant, **{"from": "2026-06-02"})
    assert len(reads) == 4


def test_every_write_path_raises_the_version(
    client: TestClient, tenant: Tenant, engine: Engine, cli_ctx: Any
) -> None:
    steps: list[tuple[str, Callable[[], object]]] = [
        ("a new call", lambda: client.post("/api/pbx/cdr", json=cdr(U1), headers=tenant.write)),
        (
            "a corrected call",
            lambda: client.post("/api/pbx/cdr", json=cdr(U1, billsec=3), headers=tenant.write),
        ),
        (
            "a recording",
            lambda: client.put(
                f"/api/pbx/cdr/{U1}/recording", content=demo_recording(1, 2), headers=tenant.write
            ),
        ),
        ("a recording removed", lambda: client.delete(f"/api/pbx/cdr/{U1}/recording", headers=tenant.write)),
        ("a deleted call", lambda: _in_db(engine, lambda c: call_queries.delete_calls(c, tenant.id, [U1]))),
        (
            "new settings",
            lambda: _in_db(engine, lambda c: account_queries.update_account(c, tenant.id, timezone="UTC")),
        ),
        (
            "numbers re-keyed",
            lambda: _in_db(engine, lambda c: call_queries.rekey_numbers(c, tenant.id, "US")),
        ),
    ]
    for name, step in steps:
        before = version(engine, tenant.id)
        step()
        assert version(engine, tenant.id) > before, name


def test_a_retry_that_changes_nothing_keeps_the_version(
    client: TestClient, tenant: Tenant, engine: Engine
) -> None:
    client.post("/api/pbx/cdr", json=cdr(U1), headers=tenant.write)
    before = version(engine, tenant.id)
    r = client.post("/api/pbx/cdr", json=cdr(U1), headers=tenant.write)
    assert r.status_code == 200 and r.json()["unchanged"] == 1
    assert version(engine, tenant.id) == before


def _in_db(engine: Engine, change: Callable[[Any], object]) -> None:
    with db.write(engine) as conn:
        change(conn)


def test_another_process_write_is_seen_at_once(
    client: TestClient, tenant: Tenant, settings: Settings, clock: FrozenClock, engine: Engine
) -> None:
    """Two apps on one database, each with its own cache: as two server processes are."""
    other = create_app(settings, clock=clock, engine=engine)
    with TestClient(other) as second:
        client.post("/api/pbx/cdr", json=cdr(U1), headers=tenant.write)
        assert listing(client, tenant)["total"] == 1
        assert listing(second, tenant)["total"] == 1
        second.post("/api/pbx/cdr", json=cdr(U2), headers=tenant.write)
        assert listing(client, tenant)["total"] == 2  # the first app's cached page is not served
        second.put(f"/api/pbx/cdr/{U2}/recording", content=demo_recording(1, 2), headers=tenant.write)
        flags = {item["uuid"]: item["recording_available"] for item in listing(client, tenant)["data"]}
        assert flags == {U1: False, U2: True}


def test_accounts_never_share_a_page(client: TestClient, make_tenant: Callable[..., Tenant]) -> None:
    one, two = make_tenant("one", timezone="UTC"), make_tenant("two", timezone="UTC")
    client.post("/api/pbx/cdr", json=cdr(U1), headers=one.write)
    assert listing(client, one)["total"] == 1
    assert listing(client, two)["total"] == 0  # same query, same (zero) version: another account
    assert listing(client, one)["total"] == 1


def test_a_zero_sized_cache_keeps_nothing(
    settings: Settings, clock: FrozenClock, engine: Engine, tenant: Tenant
) -> None:
    app = create_app(settings.model_copy(update={"list_cache_mb": 0}), clock=clock, engine=engine)
    with TestClient(app) as quiet:
        listing(quiet, tenant)
        listing(quiet, tenant)
    assert app.state.services.list_cache.size == (0, 0)


def test_the_cache_is_bounded_by_bytes_least_recently_used_out() -> None:
    cache = ListCache(max_bytes=800)
    for n in range(10):
        cache.put(("page", n), b"x" * 100)
        assert cache.get(("page", 0)) is not None or n >= 8  # page 0 kept fresh while it fits
    pages, size = cache.size
    assert size <= 800 and pages == 8
    assert cache.get(("page", 9)) == b"x" * 100
    assert cache.get(("page", 1)) is None  # the least recently used went first
    cache.put("big", b"y" * 101)  # over an eighth of the cache: never kept
    assert cache.get("big") is None
    cache.put(("page", 9), b"z" * 50)  # replacing a page counts its new size only
    assert cache.get(("page", 9)) == b"z" * 50 and cache.size[1] == size - 50
