"""Injected dependencies: the app's services, and the caller's identity and scope."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from sqlalchemy import Engine

from pbx_cdr import tokens
from pbx_cdr.api import ratelimit
from pbx_cdr.clock import Clock
from pbx_cdr.config import Settings
from pbx_cdr.db import engine as db
from pbx_cdr.db.offload import run_db
from pbx_cdr.db.queries import tokens as token_queries
from pbx_cdr.db.queries.accounts import Account
from pbx_cdr.errors import Forbidden, Unauthenticated
from pbx_cdr.storage.base import Storage

T = TypeVar("T")


@dataclass
class Services:
    """What every request may need; built once by the app factory."""

    settings: Settings
    engine: Engine
    clock: Clock
    storage: Storage
    rate_limiter: ratelimit.RateLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.rate_limiter = ratelimit.RateLimiter(self.engine)


@dataclass(frozen=True)
class Principal:
    """The account a request acts for, and the token it came with."""

    account: Account
    token_id: int
    scopes: frozenset[str]
    rate: ratelimit.RateDecision = ratelimit.UNLIMITED


async def get_services(request: Request) -> Services:
    # async: FastAPI runs a plain ``def`` dependency in a worker thread, a hop per request for a lookup.
    services: Services = request.app.state.services
    return services


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


def lookup_token(services: Services, token: str | None) -> tuple[token_queries.TokenRow, Account]:
    """The active token and its account by the token's hash, or 401. Reads only."""
    if not token or not tokens.looks_like_token(token):
        raise Unauthenticated()
    with db.read_one(services.engine) as conn:  # one round trip on PostgreSQL
        found = token_queries.find_active_token_and_account(conn, tokens.hash_token(token))
    if found is None:
        raise Unauthenticated()
    return found


def admit(services: Services, row: token_queries.TokenRow, account: Account, scope: str) -> Principal:
    """Rate limit (429), scope (403), and ``last_used_ts``: may write (see :func:`admit_writes`)."""
    now = int(services.clock.now())
    rate = services.rate_limiter.hit(row.id, account.rate_limit_per_minute, services.clock.now())
    ratelimit.enforce(rate)
    if scope not in row.scopes:
        raise Forbidden()
    if row.last_used_ts is None or now - row.last_used_ts >= token_queries.LAST_USED_RESOLUTION:
        with db.write(services.engine, durable=False) as conn:
            token_queries.touch_token(conn, row, now)
    return Principal(account=account, token_id=row.id, scopes=row.scopes, rate=rate)


def admit_writes(services: Services, row: token_queries.TokenRow, account: Account) -> bool:
    """Whether :func:`admit` will write: a rate-limited token, or a ``last_used_ts`` that is due."""
    if account.rate_limit_per_minute > 0 or row.last_used_ts is None:
        return True
    return int(services.clock.now()) - row.last_used_ts >= token_queries.LAST_USED_RESOLUTION


def authenticate(services: Services, token: str | None, scope: str) -> Principal:
    """Look the token up by its hash; refuse unknown or revoked ones (401) and missing scopes (403)."""
    row, account = lookup_token(services, token)
    return admit(services, row, account, scope)


async def authenticate_async(services: Services, token: str | None, scope: str) -> Principal:
    """:func:`authenticate` from the event loop.

    On SQLite the lookup, a read of a few microseconds, runs right here: a hop to a worker thread
    cost more than the read, and dozens of threads reading at once churned and contended for
    pooled connections. Writes (a rate-limited token, ``last_used_ts`` once a minute) and every
    PostgreSQL round trip still go to a thread (at most a pool's worth at once: ``db/offload.py``),
    so the loop never waits on a lock or the network.
    """
    engine = services.engine
    if not db.is_sqlite(engine):
        return await run_db(engine, authenticate, services, token, scope)
    row, account = lookup_token(services, token)
    if admit_writes(services, row, account):
        return await run_db(engine, admit, services, row, account, scope)
    return admit(services, row, account, scope)


def _remember(request: Request, principal: Principal) -> None:
    """For the logs and the rate-limit headers the middleware adds to every answer."""
    request.state.principal = principal
    request.state.rate_limit_headers = principal.rate.headers()


async def _authenticate_request(request: Request, scope: str, *, allow_basic: bool) -> Principal:
    # The services straight from the app, not as a sub-dependency: one less for FastAPI to solve.
    services: Services = request.app.state.services
    token = bearer_or_basic(request, allow_basic=allow_basic)
    principal = await authenticate_async(services, token, scope)
    _remember(request, principal)
    return principal


def require_scope(scope: str, *, allow_basic: bool = False) -> Callable[..., Awaitable[Principal]]:
    async def dependency(request: Request) -> Principal:
        return await _authenticate_request(request, scope, allow_basic=allow_basic)

    return dependency


async def authenticated(request: Request, scope: str, reads: Callable[[Principal], T]) -> T:
    """``reads(principal)`` for an authenticated caller with ``scope``: a route's database reads.

    What :data:`ReaderDep` and a worker thread of the route's own would do, with one thread hop on
    PostgreSQL instead of two (the lookup and the reads share it: each hop cost about 0.5 ms of CPU
    per request). On SQLite both run on the event loop, as :func:`authenticate_async` says.
    """
    services: Services = request.app.state.services
    if db.is_sqlite(services.engine):
        return reads(await _authenticate_request(request, scope, allow_basic=False))
    token = bearer_or_basic(request, allow_basic=False)

    def both() -> T:
        principal = authenticate(services, token, scope)
        _remember(request, principal)
        return reads(principal)

    return await run_db(services.engine, both)


ReaderDep = Annotated[Principal, Depends(require_scope("cdr:read"))]
WriterDep = Annotated[Principal, Depends(require_scope("cdr:write"))]
