"""Rate limits per token, from the account's setting, counted in the database shared by every process."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from pbx_cdr.api.ratelimit import WINDOW, RateLimiter
from pbx_cdr.app import create_app
from pbx_cdr.cli import cli
from pbx_cdr.clock import FrozenClock
from pbx_cdr.config import Settings
from pbx_cdr.db import engine as db
from pbx_cdr.db.engine import make_engine
from pbx_cdr.db.queries import ratelimit as queries
from pbx_cdr.db.queries import tokens as token_queries
from pbx_cdr.db.tables import rate_limit_counters
from pbx_cdr.tokens import hash_token
from tests.conftest import Tenant, cdr

LIST = "/api/pbx/cdr"


def _window_start(clock: FrozenClock) -> None:
    """Put the clock at the start of a minute, so a test's hits all fall in one window."""
    clock.at = (int(clock.at) // WINDOW + 1) * WINDOW


def test_headers_count_down_then_429_in_the_error_shape(
    client: TestClient, make_tenant: Callable[..., Tenant], clock: FrozenClock
) -> None:
    _window_start(clock)
    tenant = make_tenant(rate_limit_per_minute=3)
    for remaining in (2, 1, 0):
        r = client.get(LIST, headers=tenant.read)
        assert r.status_code == 200
        assert r.headers["X-RateLimit-Limit"] == "3"
        assert r.headers["X-RateLimit-Remaining"] == str(remaining)
        assert "Retry-After" not in r.headers
    r = client.get(LIST, headers=tenant.read)
    assert r.status_code == 429
    assert r.json() == {"message": "Too Many Attempts."}
    assert r.headers["content-type"] == "application/json"
    assert r.headers["X-RateLimit-Limit"] == "3"
    assert r.headers["X-RateLimit-Remaining"] == "0"
    assert int(r.headers["Retry-After"]) >= 1


def test_retry_after_is_exact(
    client: TestClient, make_tenant: Callable[..., Tenant], clock: FrozenClock
) -> None:
    """Waiting Retry-After seconds is enough, and one second less is not."""
    _window_start(clock)
    clock.advance(10)
    tenant = make_tenant(rate_limit_per_minute=5)
    for _ in range(5):
        assert client.get(LIST, headers=tenant.read).status_code == 200
    refused = client.get(LIST, headers=tenant.read)
    assert refused.status_code == 429
    wait = int(refused.headers["Retry-After"])
    # 5 hits at 10 s: the next window carries ceil(5 * (60 - g) / 60) of them, <= 4 once g >= 12.
    assert wait == 50 + 12
    clock.advance(wait - 1)
    assert client.get(LIST, headers=tenant.read).status_code == 429
    clock.advance(1)
    r = client.get(LIST, headers=tenant.read)
    assert r.status_code == 200


def test_the_window_slides(
    client: TestClient, make_tenant: Callable[..., Tenant], clock: FrozenClock
) -> None:
    """A burst at the end of one minute still counts at the start of the next: no double burst."""
    _window_start(clock)
    clock.advance(55)
    tenant = make_tenant(rate_limit_per_minute=10)
    for _ in range(10):
        assert client.get(LIST, headers=tenant.read).status_code == 200
    clock.advance(10)  # 5 s into the next window: 10 * 55/60 -> 10 hits still count
    assert client.get(LIST, headers=tenant.read).status_code == 429
    clock.advance(30)  # 35 s in: ceil(10 * 25/60) = 5 carried, 5 fit
    statuses = [client.get(LIST, headers=tenant.read).status_code for _ in range(7)]
    assert statuses == [200] * 5 + [429] * 2


def test_refused_requests_do_not_count(
    client: TestClient, make_tenant: Callable[..., Tenant], clock: FrozenClock, engine: Engine
) -> None:
    _window_start(clock)
    tenant = make_tenant(rate_limit_per_minute=2)
    statuses = [client.get(LIST, headers=tenant.read).status_code for _ in range(20)]
    assert statuses == [200, 200] + [429] * 18
    with db.read(engine) as conn:
        hits = conn.execute(select(rate_limit_counters.c.hits)).scalars().all()
    assert hits == [2]


def test_one_accounts_flood_leaves_another_untouched(
    client: TestClient, make_tenant: Callable[..., Tenant], clock: FrozenClock
) -> None:
    _window_start(clock)
    flooder = make_tenant(rate_limit_per_minute=5)
    quiet = make_tenant(rate_limit_per_minute=5)
    flood = [client.get(LIST, headers=flooder.read).status_code for _ in range(50)]
    assert flood.count(200) == 5 and flood.count(429) == 45
    answers = [client.get(LIST, headers=quiet.read) for _ in range(5)]
    assert [r.status_code for r in answers] == [200] * 5
    assert [r.headers["X-RateLimit-Remaining"] for r in answers] == ["4", "3", "2", "1", "0"]


def test_each_token_has_its_own_budget(
    client: TestClient, make_tenant: Callable[..., Tenant], clock: FrozenClock
) -> None:
    _window_start(clock)
    tenant = make_tenant(rate_limit_per_minute=2)
    for _ in range(2):
        assert client.get(LIST, headers=tenant.read).status_code == 200
    assert client.get(LIST, headers=tenant.read).status_code == 429
    r = client.post(LIST, json=cdr("65569ce0-0183-4f61-a3b2-0e433cfa4031"), headers=tenant.write)
    assert r.status_code == 201
    assert r.headers["X-RateLimit-Remaining"] == "1"


def test_zero_turns_the_limit_off(client: TestClient, make_tenant: Callable[..., Tenant]) -> None:
    tenant = make_tenant(rate_limit_per_minute=0)
    for _ in range(30):
        r = client.get(LIST, headers=tenant.read)
        assert r.status_code == 200
        assert "X-RateLimit-Limit" not in r.headers


def test_the_default_is_600(client: TestClient, make_tenant: Callable[..., Tenant]) -> None:
    r = client.get(LIST, headers=make_tenant().read)
    assert r.headers["X-RateLimit-Limit"] == "600"
    assert r.headers["X-RateLimit-Remaining"] == "599"


def test_unauthenticated_requests_carry_no_rate_headers(client: TestClient) -> None:
    r = client.get(LIST)
    assert r.status_code == 401
    assert "X-RateLimit-Limit" not in r.headers


def test_two_apps_on_one_database_share_the_count(
    settings: Settings, make_tenant: Callable[..., Tenant], clock: FrozenClock
) -> None:
    """Two app instances with their own engines (as two processes have) agree on one budget."""
    _window_start(clock)
    tenant = make_tenant(rate_limit_per_minute=4)
    engines = [make_engine(settings.database_url, sqlite_synchronous="NORMAL") for _ in range(2)]
    try:
        clients = [TestClient(create_app(settings, clock=clock, engine=e)) for e in engines]
        statuses = [clients[i % 2].get(LIST, headers=tenant.read).status_code for i in range(8)]
        assert statuses == [200] * 4 + [429] * 4
    finally:
        for e in engines:
            e.dispose()


def test_concurrent_hits_never_overshoot(
    engine: Engine, make_tenant: Callable[..., Tenant], settings: Settings
) -> None:
    """Sixteen threads, each with its own engine (a process of its own), race for 25 slots."""
    tenant = make_tenant(rate_limit_per_minute=25)
    with db.read(engine) as conn:
        token = token_queries.find_active_token(conn, hash_token(tenant.read_token))
    assert token is not None
    now = float(MINUTE + 1)
    granted: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(16)
    engines = [
        make_engine(settings.database_url, sqlite_synchronous="NORMAL", pool_size=1) for _ in range(16)
    ]

    def worker(e: Engine) -> None:
        limiter = RateLimiter(e)
        barrier.wait()
        results = [limiter.hit(token.id, 25, now).allowed for _ in range(4)]
        with lock:
            granted.extend(results)

    threads = [threading.Thread(target=worker, args=(e,)) for e in engines]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for e in engines:
            e.dispose()
    assert granted.count(True) == 25
    assert granted.count(False) == 16 * 4 - 25


MINUTE = 1_782_561_600  # 2026-06-27T12:00:00Z


def test_old_counter_rows_are_cleaned(
    client: TestClient, make_tenant: Callable[..., Tenant], clock: FrozenClock, engine: Engine
) -> None:
    _window_start(clock)
    gone_quiet = make_tenant(rate_limit_per_minute=100)
    busy = make_tenant(rate_limit_per_minute=100)
    client.get(LIST, headers=gone_quiet.read)
    for minute in range(5):
        client.get(LIST, headers=busy.read)
        client.get(LIST, headers=busy.read)
        clock.advance(WINDOW)
        del minute
    client.get(LIST, headers=busy.read)
    current = int(clock.now()) // WINDOW * WINDOW
    with db.read(engine) as conn:
        rows: list[Any] = conn.execute(select(rate_limit_counters)).all()
    # Only the busy token's previous and current windows are left; the quiet token's are swept.
    assert sorted(r.window_start for r in rows) == [current - WINDOW, current]
    with db.read(engine) as conn:
        assert queries.count_rows(conn) == 2


@pytest.mark.parametrize("limit", [1, 7])
def test_accounts_update_applies_at_once(
    client: TestClient, make_tenant: Callable[..., Tenant], clock: FrozenClock, settings: Settings, limit: int
) -> None:
    """``pbx-cdr accounts update ID --rate-limit N`` applies from the next request on."""
    _window_start(clock)
    tenant = make_tenant(rate_limit_per_minute=1000)
    assert client.get(LIST, headers=tenant.read).headers["X-RateLimit-Limit"] == "1000"
    result = CliRunner().invoke(
        cli,
        [
            "--database-url",
            settings.database_url,
            "--data-dir",
            str(settings.data_dir),
            "accounts",
            "update",
            str(tenant.id),
            "--rate-limit",
            str(limit),
        ],
    )
    assert result.exit_code == 0, result.output
    r = client.get(LIST, headers=tenant.read)
    assert r.headers["X-RateLimit-Limit"] == str(limit)
