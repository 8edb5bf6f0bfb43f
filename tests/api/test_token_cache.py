"""The token cache (PostgreSQL): lookups kept while no change is heard, dropped when one is.

Against a real PostgreSQL: revocations and account changes made from other connections (as the CLI
or another server process makes them) must be heard through the triggers of migration 0008, and a
lost listening connection must stop the cache until it is back.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text

from pbx_cdr.api.deps import Services, lookup_token
from pbx_cdr.api.token_cache import MAX_ENTRIES, TokenCache
from pbx_cdr.app import create_app
from pbx_cdr.cli.accounts import create_account
from pbx_cdr.cli.context import CliContext
from pbx_cdr.cli.tokens import issue_token
from pbx_cdr.clock import FrozenClock
from pbx_cdr.config import load_settings
from pbx_cdr.db import auth_changes
from pbx_cdr.db import engine as db
from pbx_cdr.db.async_pg import libpq_conninfo
from pbx_cdr.db.auth_changes import CHANNEL
from pbx_cdr.db.engine import make_engine
from pbx_cdr.db.queries import accounts as account_queries
from pbx_cdr.db.queries import tokens as token_queries
from pbx_cdr.db.queries.accounts import Account
from pbx_cdr.db.queries.tokens import TokenRow
from pbx_cdr.db.tables import api_tokens
from pbx_cdr.errors import Unauthenticated
from pbx_cdr.tokens import hash_token
from tests.conftest import NOW, SECRET, Tenant, cdr, new_pg_database
from tests.servers import PostgresServer

U = "0b6f0c1e-8f7a-4d7e-9a35-0d1c2b3a4f51"
ROW = TokenRow(1, 1, "read", frozenset({"cdr:read"}), 0, None, None)
ACCOUNT = Account(1, "acme", "UTC", "VN", 31, 600, 0, 0)


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# --- the cache itself -------------------------------------------------------------------------


def listening_cache(ttl_s: float = 10.0) -> tuple[TokenCache, Ticks]:
    ticks = Ticks()
    cache = TokenCache(ttl_s, clock=ticks)
    cache.set_listening(True)
    return cache, ticks


def test_kept_until_its_time_is_up() -> None:
    cache, ticks = listening_cache(10)
    cache.put("h", (ROW, ACCOUNT), cache.generation)
    assert cache.get("h") == (ROW, ACCOUNT)
    ticks.now += 9.9
    assert cache.get("h") == (ROW, ACCOUNT)
    ticks.now += 0.1
    assert cache.get("h") is None and "h" not in cache


def test_nothing_is_kept_or_served_while_not_listening() -> None:
    cache = TokenCache(10)
    cache.put("h", (ROW, ACCOUNT), cache.generation)
    assert len(cache) == 0
    cache.set_listening(True)
    cache.put("h", (ROW, ACCOUNT), cache.generation)
    cache.set_listening(False)
    assert cache.get("h") is None and len(cache) == 0


def test_a_lookup_that_began_before_a_change_is_not_kept() -> None:
    cache, _ = listening_cache()
    began = cache.generation
    cache.changed()  # heard while the lookup was on its way
    cache.put("h", (ROW, ACCOUNT), began)
    assert cache.get("h") is None
    began = cache.generation
    cache.set_listening(False)
    cache.set_listening(True)  # listening again: what was read before may have missed a change
    cache.put("h", (ROW, ACCOUNT), began)
    assert cache.get("h") is None


def test_a_change_drops_everything_and_forget_drops_one() -> None:
    cache, _ = listening_cache()
    for key in "abc":
        cache.put(key, (ROW, ACCOUNT), cache.generation)
    cache.forget("a")
    assert cache.get("a") is None and cache.get("b") is not None
    cache.changed()
    assert len(cache) == 0


def test_the_oldest_goes_first_when_full() -> None:
    cache, _ = listening_cache()
    for n in range(MAX_ENTRIES + 1):
        cache.put(str(n), (ROW, ACCOUNT), cache.generation)
    assert len(cache) == MAX_ENTRIES
    assert "0" not in cache and "1" in cache and str(MAX_ENTRIES) in cache


# --- a server process on PostgreSQL ------------------------------------------------------------


def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.005)


@pytest.fixture
def pg_url(pg: PostgresServer) -> str:
    return new_pg_database(pg)


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


Serve = Callable[..., TestClient]


@pytest.fixture
def serve(pg_url: str, pg_engine: Engine, tmp_path: Path, clock: FrozenClock) -> Iterator[Serve]:
    """A test client for an app on the PostgreSQL database, with the settings given."""
    clients: list[TestClient] = []

    def make(**options: Any) -> TestClient:
        settings = load_settings(
            data_dir=tmp_path / "data", database_url=pg_url, secret_key=SECRET, **options
        )
        client = TestClient(create_app(settings, clock=clock, engine=pg_engine))
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def tenant_pg(pg_url: str, make_pg_tenant: Callable[..., Tenant]) -> Tenant:
    return make_pg_tenant()


@pytest.fixture
def make_pg_tenant(pg_url: str, tmp_path: Path) -> Callable[..., Tenant]:
    ctx = CliContext(overrides={"data_dir": tmp_path / "cli", "database_url": pg_url, "secret_key": SECRET})

    def make(name: str = "acme") -> Tenant:
        account = create_account(ctx, name, timezone="UTC", country="VN")
        _, read = issue_token(ctx, account.id, "read", ["cdr:read"])
        _, write = issue_token(ctx, account.id, "write", ["cdr:write"])
        return Tenant(account.id, account.name, read, write)

    return make


def services(client: TestClient) -> Services:
    found: Services = client.app.state.services  # type: ignore[attr-defined]
    return found


def cache_of(client: TestClient) -> TokenCache:
    cache = services(client).token_cache
    assert cache is not None
    return cache


def kept(client: TestClient, headers: dict[str, str]) -> None:
    """Ask until the token's lookup is kept (the first request may come before listening starts):
    a read token lists, a write token posts the same call again."""
    token = headers["Authorization"].removeprefix("Bearer ")

    def asked() -> bool:
        if "read" in headers.get("X-Test-Scope", "read"):
            r = client.get("/api/pbx/cdr", headers=headers)
        else:
            r = client.post("/api/pbx/cdr", json=cdr(U), headers=headers)
        assert r.status_code in (200, 201), r.text
        return hash_token(token) in cache_of(client)

    until(asked)


def writer(tenant: Tenant) -> dict[str, str]:
    return {**tenant.write, "X-Test-Scope": "write"}


def revoke(engine: Engine, token: str) -> None:
    with db.write(engine) as conn:
        row = token_queries.find_active_token(conn, hash_token(token))
        assert row is not None
        assert token_queries.revoke_token(conn, row.id, int(NOW))


def listener_pids(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE query = :q AND datname = current_database()"),
                {"q": f'LISTEN "{CHANNEL}"'},
            ).scalars()
        )


def test_a_revocation_from_another_connection_is_heard(
    serve: Serve, tenant_pg: Tenant, pg_engine: Engine
) -> None:
    client = serve(list_cache_mb=0, token_cache_seconds=3600)  # only a notification can drop it
    kept(client, tenant_pg.read)
    revoke(pg_engine, tenant_pg.read_token)
    until(lambda: client.get("/api/pbx/cdr", headers=tenant_pg.read).status_code == 401)
    assert hash_token(tenant_pg.read_token) not in cache_of(client)


def test_a_revocation_in_plain_sql_is_heard(serve: Serve, tenant_pg: Tenant, pg_engine: Engine) -> None:
    client = serve(list_cache_mb=0, token_cache_seconds=3600)
    kept(client, tenant_pg.read)
    with pg_engine.begin() as conn:
        conn.execute(
            text("UPDATE api_tokens SET revoked_ts = 1 WHERE token_hash = :h"),
            {"h": hash_token(tenant_pg.read_token)},
        )
    until(lambda: client.get("/api/pbx/cdr", headers=tenant_pg.read).status_code == 401)


def test_kept_answers_are_used_and_the_time_limit_holds(
    serve: Serve, tenant_pg: Tenant, pg_engine: Engine
) -> None:
    """With the trigger off, nothing is heard: the kept answer is served until its time is up."""
    client = serve(list_cache_mb=0, token_cache_seconds=5)
    cache = cache_of(client)
    ticks = Ticks()
    cache.clock = ticks
    kept(client, tenant_pg.read)
    with pg_engine.begin() as conn:
        conn.execute(text("ALTER TABLE api_tokens DISABLE TRIGGER pbx_cdr_auth_tokens"))
    revoke(pg_engine, tenant_pg.read_token)
    assert client.get("/api/pbx/cdr", headers=tenant_pg.read).status_code == 200  # from the cache
    ticks.now += 5
    assert client.get("/api/pbx/cdr", headers=tenant_pg.read).status_code == 401


def test_with_the_list_cache_on_the_list_looks_its_token_up_afresh(
    serve: Serve, tenant_pg: Tenant, pg_engine: Engine
) -> None:
    """The list cache needs the account's current data version: not from the token cache."""
    client = serve(list_cache_mb=4, token_cache_seconds=3600)
    kept(client, writer(tenant_pg))  # any route keeps it
    assert client.get("/api/pbx/cdr", headers=tenant_pg.read).json()["total"] == 1
    U2 = U.replace("0b6f", "1b6f")
    assert client.post("/api/pbx/cdr", json=cdr(U2), headers=tenant_pg.write).status_code == 201
    assert client.get("/api/pbx/cdr", headers=tenant_pg.read).json()["total"] == 2  # not the cached page
    with pg_engine.begin() as conn:
        conn.execute(text("ALTER TABLE api_tokens DISABLE TRIGGER pbx_cdr_auth_tokens"))
    kept(client, tenant_pg.read)
    revoke(pg_engine, tenant_pg.read_token)
    assert client.get("/api/pbx/cdr", headers=tenant_pg.read).status_code == 401


def test_an_account_change_is_heard_and_ingest_is_not(
    serve: Serve, tenant_pg: Tenant, pg_engine: Engine
) -> None:
    client = serve(list_cache_mb=0, token_cache_seconds=3600)
    cache = cache_of(client)
    kept(client, writer(tenant_pg))
    generation = cache.generation
    # Ingest raises the account's data version: no notification, the cache stays.
    for n in range(3):
        r = client.post("/api/pbx/cdr", json=cdr(U, billsec=n + 1), headers=tenant_pg.write)
        assert r.status_code in (200, 201)
    time.sleep(0.2)
    assert client.post("/api/pbx/cdr", json=cdr(U, billsec=3), headers=tenant_pg.write).status_code == 200
    assert cache.generation == generation and hash_token(tenant_pg.write_token) in cache

    with db.write(pg_engine) as conn:
        account_queries.update_account(conn, tenant_pg.id, timezone="Asia/Ho_Chi_Minh")
    until(lambda: hash_token(tenant_pg.write_token) not in cache)
    kept(client, writer(tenant_pg))
    _, account = cache.get(hash_token(tenant_pg.write_token)) or (None, None)
    assert account is not None and account.timezone == "Asia/Ho_Chi_Minh"


def test_a_lost_listener_stops_the_cache_until_it_is_back(
    serve: Serve, make_pg_tenant: Callable[..., Tenant], pg_engine: Engine
) -> None:
    one, two = make_pg_tenant("one"), make_pg_tenant("two")
    client = serve(list_cache_mb=0, token_cache_seconds=3600)
    cache = cache_of(client)
    kept(client, one.read)
    (pid,) = listener_pids(pg_engine)
    with pg_engine.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    until(lambda: not cache.listening)
    assert len(cache) == 0
    # Not listening: every request is looked up, so a change made meanwhile counts at once.
    with pg_engine.begin() as conn:
        conn.execute(text("ALTER TABLE api_tokens DISABLE TRIGGER pbx_cdr_auth_tokens"))
    revoke(pg_engine, one.read_token)
    assert client.get("/api/pbx/cdr", headers=one.read).status_code == 401
    # Back again (a new connection, listening), and keeping again.
    until(lambda: cache.listening and listener_pids(pg_engine) not in ([], [pid]))
    kept(client, two.read)


def test_last_used_is_still_written_once_a_minute(
    serve: Serve, tenant_pg: Tenant, pg_engine: Engine, clock: FrozenClock
) -> None:
    client = serve(list_cache_mb=0, token_cache_seconds=3600)

    def last_used() -> int | None:
        with pg_engine.connect() as conn:
            value: int | None = conn.execute(
                select(api_tokens.c.last_used_ts).where(
                    api_tokens.c.token_hash == hash_token(tenant_pg.read_token)
                )
            ).scalar_one()
            return value

    kept(client, tenant_pg.read)
    assert last_used() == int(NOW)
    clock.advance(61)
    assert client.get("/api/pbx/cdr", headers=tenant_pg.read).status_code == 200
    assert last_used() == int(NOW) + 61
    kept(client, tenant_pg.read)  # kept again, with the new time
    clock.advance(30)
    assert client.get("/api/pbx/cdr", headers=tenant_pg.read).status_code == 200
    assert last_used() == int(NOW) + 61


def test_off_with_zero_seconds_and_on_sqlite(
    serve: Serve, tenant_pg: Tenant, pg_engine: Engine, sqlite_url: str, tmp_path: Path
) -> None:
    client = serve(token_cache_seconds=0)
    assert services(client).token_cache is None and services(client).auth_changes is None
    assert client.get("/api/pbx/cdr", headers=tenant_pg.read).status_code == 200
    assert listener_pids(pg_engine) == []
    settings = load_settings(data_dir=tmp_path / "sq", database_url=sqlite_url, secret_key=SECRET)
    engine = make_engine(sqlite_url)
    with TestClient(create_app(settings, engine=engine)) as on_sqlite:
        assert services(on_sqlite).token_cache is None
    engine.dispose()


def test_unable_to_listen_it_keeps_nothing_and_every_request_is_looked_up(
    serve: Serve, tenant_pg: Tenant, pg_engine: Engine
) -> None:
    """A listen URL that cannot be reached (a typo, a pooler that refuses): no cache, no failure."""
    client = serve(
        list_cache_mb=0, token_cache_seconds=3600, database_listen_url="postgresql://nobody@127.0.0.1:9/none"
    )
    for _ in range(20):
        assert client.get("/api/pbx/cdr", headers=tenant_pg.read).status_code == 200
    cache = cache_of(client)
    assert not cache.listening and len(cache) == 0
    with pg_engine.begin() as conn:
        conn.execute(text("ALTER TABLE api_tokens DISABLE TRIGGER pbx_cdr_auth_tokens"))
    revoke(pg_engine, tenant_pg.read_token)
    assert client.get("/api/pbx/cdr", headers=tenant_pg.read).status_code == 401


def test_the_listen_url_is_used_when_given(
    serve: Serve, tenant_pg: Tenant, pg_url: str, pg_engine: Engine
) -> None:
    listen_url = pg_url.replace("postgresql+psycopg://", "postgres://") + "?application_name=pbx_listener"
    client = serve(list_cache_mb=0, database_listen_url=listen_url)
    kept(client, tenant_pg.read)
    with pg_engine.connect() as conn:
        names = conn.execute(
            text("SELECT application_name FROM pg_stat_activity WHERE pid = :pid"),
            {"pid": listener_pids(pg_engine)[0]},
        ).scalars()
        assert list(names) == ["pbx_listener"]


# --- on the event loop itself, where a test controls when the loop turns ------------------------


Scenario = Callable[[Services], Awaitable[None]]


@pytest.fixture
def on_loop(pg_url: str, pg_engine: Engine, tmp_path: Path) -> Callable[..., None]:
    """Run a scenario against the services of an app on PostgreSQL, on an event loop of its own."""

    def run(scenario: Scenario, **options: Any) -> None:
        settings = load_settings(
            data_dir=tmp_path / "loop",
            database_url=pg_url,
            secret_key=SECRET,
            **{"list_cache_mb": 0, "token_cache_seconds": 3600, **options},
        )
        found: Services = create_app(settings, clock=FrozenClock(NOW), engine=pg_engine).state.services

        async def main() -> None:
            try:
                await scenario(found)
            finally:
                await found.close()

        asyncio.run(main())

    return run


async def listening(services: Services, timeout_s: float = 10.0) -> None:
    assert services.auth_changes is not None and services.token_cache is not None
    services.auth_changes.heard()
    deadline = time.monotonic() + timeout_s
    while not services.token_cache.listening:
        assert time.monotonic() < deadline, "not listening in time"
        await asyncio.sleep(0.01)


async def keep(services: Services, token: str) -> TokenCache:
    await listening(services)
    await lookup_token(services, token)
    cache = services.token_cache
    assert cache is not None and hash_token(token) in cache
    return cache


def test_what_has_arrived_is_read_before_a_kept_lookup_is_used(
    on_loop: Callable[..., None], tenant_pg: Tenant, pg_engine: Engine
) -> None:
    async def scenario(services: Services) -> None:
        await keep(services, tenant_pg.read_token)
        revoke(pg_engine, tenant_pg.read_token)  # blocking: the loop does not turn from here on
        time.sleep(0.2)  # the notification reaches the socket, unread
        with pytest.raises(Unauthenticated):
            await lookup_token(services, tenant_pg.read_token)

    on_loop(scenario)


@pytest.mark.parametrize("loop_turns", [True, False], ids=["heard-during-lookup", "arrived-with-answer"])
def test_a_lookup_overtaken_by_a_change_is_not_kept(
    on_loop: Callable[..., None],
    tenant_pg: Tenant,
    pg_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    loop_turns: bool,
) -> None:
    real = token_queries.find_active_token_and_account_async

    async def read_then_revoked(reader: Any, token_hash: str) -> Any:
        found = await real(reader, token_hash)
        revoke(pg_engine, tenant_pg.read_token)  # committed after the read, before it is kept
        if loop_turns:
            await asyncio.sleep(0.2)
        else:
            time.sleep(0.2)
        return found

    async def scenario(services: Services) -> None:
        await listening(services)
        monkeypatch.setattr(token_queries, "find_active_token_and_account_async", read_then_revoked)
        await lookup_token(services, tenant_pg.read_token)  # valid when it was read
        assert (
            services.token_cache is not None and hash_token(tenant_pg.read_token) not in services.token_cache
        )
        monkeypatch.setattr(token_queries, "find_active_token_and_account_async", real)
        with pytest.raises(Unauthenticated):
            await lookup_token(services, tenant_pg.read_token)

    on_loop(scenario)


def test_a_listener_found_dead_is_not_trusted_for_the_request_that_found_it(
    on_loop: Callable[..., None], tenant_pg: Tenant, pg_engine: Engine
) -> None:
    async def scenario(services: Services) -> None:
        await keep(services, tenant_pg.read_token)
        (pid,) = listener_pids(pg_engine)
        with pg_engine.begin() as conn:  # from here on, changes are not notified
            conn.execute(text("ALTER TABLE api_tokens DISABLE TRIGGER pbx_cdr_auth_tokens"))
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        revoke(pg_engine, tenant_pg.read_token)
        time.sleep(0.2)  # the connection's end reaches the socket; the loop has not turned
        with pytest.raises(Unauthenticated):
            await lookup_token(services, tenant_pg.read_token)

    on_loop(scenario)


def test_a_listen_url_that_does_not_hear_the_database_keeps_the_cache_off(
    on_loop: Callable[..., None],
    tenant_pg: Tenant,
    pg: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another database answers LISTEN, and never hears this one's notifications."""
    monkeypatch.setattr(auth_changes, "_PROBE_TIMEOUT_S", 0.2)

    async def scenario(services: Services) -> None:
        assert services.auth_changes is not None and services.token_cache is not None
        for _ in range(20):
            await lookup_token(services, tenant_pg.read_token)
            await asyncio.sleep(0.05)
        assert not services.token_cache.listening and len(services.token_cache) == 0

    with caplog.at_level(logging.WARNING, logger="pbx_cdr.db.auth_changes"):
        on_loop(scenario, database_listen_url=new_pg_database(pg))
    assert "did not arrive on the listening connection" in caplog.text


def test_metrics_tell_kept_lookups_and_listening(serve: Serve, tenant_pg: Tenant) -> None:
    def sample(text_: str, name: str) -> float:
        found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text_, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    client = serve(list_cache_mb=0, token_cache_seconds=3600)
    before = client.get("/metrics").text
    kept(client, tenant_pg.read)
    for _ in range(5):
        assert client.get("/api/pbx/cdr", headers=tenant_pg.read).status_code == 200
    after = client.get("/metrics").text
    cache_hits = 'pbx_cdr_token_lookups_total{source="cache"}'
    assert sample(after, cache_hits) - sample(before, cache_hits) >= 5
    assert sample(after, 'pbx_cdr_token_lookups_total{source="database"}') >= 1
    assert sample(after, "pbx_cdr_token_cache_listening") == 1


def test_a_connection_lost_as_its_probe_came_back_is_not_trusted(pg_url: str, pg_engine: Engine) -> None:
    """The probe arrived, and the same read found the connection ended: never "listening" on it."""
    conninfo = libpq_conninfo(pg_url)
    states: list[tuple[bool, bool]] = []  # (listening, with a connection) at each report

    class LostRightAfterTheProbe(auth_changes.AuthChangeListener):
        lost_once = False

        async def _probe_heard(self, loop: asyncio.AbstractEventLoop) -> None:
            await super()._probe_heard(loop)
            if not self.lost_once:
                type(self).lost_once = True
                (pid,) = listener_pids(pg_engine)
                with pg_engine.connect() as conn:
                    conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                time.sleep(0.2)  # the end reaches the socket
                self._read()  # as a request's heard() would, before this coroutine resumes

    async def scenario() -> None:
        listener = LostRightAfterTheProbe(
            conninfo,
            conninfo,
            on_change=lambda: None,
            on_listening=lambda on: states.append((on, listener._conn is not None)),
        )
        listener.heard()
        deadline = time.monotonic() + 10
        while (True, True) not in states:  # listening again, on a new connection
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await listener.close()

    asyncio.run(scenario())
    assert LostRightAfterTheProbe.lost_once
    assert (True, False) not in states
