"""Injected dependencies: the app's services, and the caller's identity and scope."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine

from pbx_cdr import tokens
from pbx_cdr.api import ratelimit
from pbx_cdr.api.list_cache import ListCache
from pbx_cdr.api.token_cache import TokenCache
from pbx_cdr.clock import Clock
from pbx_cdr.config import Settings
from pbx_cdr.db import engine as db
from pbx_cdr.db.async_pg import AsyncReader, libpq_conninfo
from pbx_cdr.db.auth_changes import AuthChangeListener
from pbx_cdr.db.offload import run_db
from pbx_cdr.db.queries import tokens as token_queries
from pbx_cdr.db.queries.accounts import Account
from pbx_cdr.errors import Forbidden, Unauthenticated
from pbx_cdr.observability import metrics
from pbx_cdr.storage.base import Storage


@dataclass
class Services:
    """What every request may need; built once by the app factory."""

    settings: Settings
    engine: Engine
    clock: Clock
    storage: Storage
    rate_limiter: ratelimit.RateLimiter = field(init=False)
    list_cache: ListCache = field(init=False)
    async_reader: AsyncReader | None = field(init=False)  # PostgreSQL: reads awaited on the loop
    # PostgreSQL, unless token_cache_seconds is 0: token lookups kept while no change is heard
    token_cache: TokenCache | None = field(init=False, default=None)
    auth_changes: AuthChangeListener | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.rate_limiter = ratelimit.RateLimiter(self.engine)
        self.list_cache = ListCache(self.settings.list_cache_mb * 1024 * 1024)
        self.async_reader = None
        if db.is_sqlite(self.engine):
            return
        self.async_reader = AsyncReader(self.engine, self.settings.db_pool_size)
        if self.settings.token_cache_seconds > 0:
            cache = self.token_cache = TokenCache(self.settings.token_cache_seconds)

            def listening(on: bool) -> None:
                cache.set_listening(on)
                metrics.token_cache_listening(on)

            listen_url = self.settings.database_listen_url or self.engine.url
            self.auth_changes = AuthChangeListener(
                libpq_conninfo(listen_url),
                libpq_conninfo(self.engine.url),
                on_change=cache.changed,
                on_listening=listening,
            )

    async def close(self) -> None:
        if self.auth_changes is not None:
            await self.auth_changes.close()
        if self.async_reader is not None:
            await self.async_reader.close()


@dataclass(frozen=True)
class Principal:
    """The account a request acts for, and the token it came with."""

    account: Account
    token_id: int
    scopes: frozenset[str]
    rate: ratelimit.RateDecision = ratelimit.UNLIMITED


def services_of(request: Request) -> Services:
    """The app's services, for the hottest routes, which skip FastAPI's dependency solving."""
    services: Services = request.app.state.services
    return services


async def get_services(request: Request) -> Services:
    # async: FastAPI runs a plain ``def`` dependency in a worker thread, a hop per request for a lookup.
    return services_of(request)


ServicesDep = Annotated[Services, Depends(get_services)]


def bearer_or_basic(request: Request, *, allow_basic: bool) -> str | None:
    """The token string from ``Authorization``: Bearer, or Basic with the token as the password."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if allow_basic and scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


@dataclass(frozen=True)
class Lookup:
    """An active token, its account, and its hash (the token cache's key)."""

    token_hash: str
    row: token_queries.TokenRow
    account: Account


async def lookup_token(services: Services, token: str | None, *, fresh: bool = False) -> Lookup:
    """The active token and its account by the token's hash, or 401. Reads only, never a thread:
    straight through the driver on SQLite (a read of a few microseconds), awaited over an async
    connection on PostgreSQL (``db/async_pg.py``), unless the token cache has it (``fresh``: not
    from the cache, for an account's current ``data_version``)."""
    if not token or not tokens.looks_like_token(token):
        raise Unauthenticated()
    token_hash = tokens.hash_token(token)
    if services.async_reader is None:
        found = token_queries.find_active_token_and_account(services.engine, token_hash)
    elif services.token_cache is None or services.auth_changes is None:
        found = await token_queries.find_active_token_and_account_async(services.async_reader, token_hash)
    else:
        cache = services.token_cache
        services.auth_changes.heard()
        if not fresh and (kept := cache.get(token_hash)) is not None:
            metrics.count_token_lookup(from_cache=True)
            return Lookup(token_hash, *kept)
        metrics.count_token_lookup(from_cache=False)
        generation = cache.generation
        found = await token_queries.find_active_token_and_account_async(services.async_reader, token_hash)
        if found is not None:
            services.auth_changes.heard()  # a change that arrived with the answer: not kept
            cache.put(token_hash, found, generation)
    if found is None:
        raise Unauthenticated()
    return Lookup(token_hash, *found)


def admit(services: Services, row: token_queries.TokenRow, account: Account, scope: str) -> Principal:
    """Rate limit (429), scope (403), and ``last_used_ts``: may write (see :func:`admit_writes`)."""
    now = int(services.clock.now())
    rate = services.rate_limiter.hit(row.id, account.rate_limit_per_minute, services.clock.now())
    ratelimit.enforce(rate)
    if scope not in row.scopes:
        raise Forbidden()
    if token_queries.touch_due(row, now):
        with db.write(services.engine, durable=False) as conn:
            token_queries.touch_token(conn, row, now)
    return Principal(account=account, token_id=row.id, scopes=row.scopes, rate=rate)


def admit_writes(services: Services, row: token_queries.TokenRow, account: Account) -> bool:
    """Whether :func:`admit` will write: a rate-limited token, or a ``last_used_ts`` that is due."""
    return account.rate_limit_per_minute > 0 or token_queries.touch_due(row, int(services.clock.now()))


async def authenticate_async(
    services: Services, token: str | None, scope: str, *, fresh: bool = False
) -> Principal:
    """Look the token up by its hash; refuse unknown or revoked ones (401) and missing scopes (403).

    The lookup never leaves the event loop (:func:`lookup_token`). Writes (a rate-limited token,
    ``last_used_ts`` once a minute) go to a worker thread (at most a pool's worth at once:
    ``db/offload.py``), so the loop never waits on a lock.
    """
    found = await lookup_token(services, token, fresh=fresh)
    row, account = found.row, found.account
    if not admit_writes(services, row, account):
        return admit(services, row, account, scope)
    touching = token_queries.touch_due(row, int(services.clock.now()))
    principal = await run_db(services.engine, admit, services, row, account, scope)
    if touching and services.token_cache is not None:
        services.token_cache.forget(found.token_hash)  # kept with the last_used_ts just replaced
    return principal


def _remember(request: Request, principal: Principal) -> None:
    """For the logs and the rate-limit headers the middleware adds to every answer."""
    request.state.principal = principal
    request.state.rate_limit_headers = principal.rate.headers()


async def authenticate_request(
    request: Request, scope: str, *, allow_basic: bool = False, fresh: bool = False
) -> Principal:
    """The caller, for a route that authenticates in its body instead of through a dependency."""
    # The services straight from the app, not as a sub-dependency: one less for FastAPI to solve.
    services = services_of(request)
    token = bearer_or_basic(request, allow_basic=allow_basic)
    principal = await authenticate_async(services, token, scope, fresh=fresh)
    _remember(request, principal)
    return principal


def require_scope(scope: str, *, allow_basic: bool = False) -> Callable[..., Awaitable[Principal]]:
    async def dependency(request: Request) -> Principal:
        return await authenticate_request(request, scope, allow_basic=allow_basic)

    return dependency


ReaderDep = Annotated[Principal, Depends(require_scope("cdr:read"))]
WriterDep = Annotated[Principal, Depends(require_scope("cdr:write"))]
