"""Injected dependencies: the app's services, and the caller's identity and scope."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine

from pbx_cdr import tokens
from pbx_cdr.clock import Clock
from pbx_cdr.config import Settings
from pbx_cdr.db import engine as db
from pbx_cdr.db.queries import accounts as account_queries
from pbx_cdr.db.queries import tokens as token_queries
from pbx_cdr.db.queries.accounts import Account
from pbx_cdr.errors import Forbidden, Unauthenticated


@dataclass
class Services:
    """What every request may need; built once by the app factory."""

    settings: Settings
    engine: Engine
    clock: Clock


@dataclass(frozen=True)
class Principal:
    """The account a request acts for, and the token it came with."""

    account: Account
    token_id: int
    scopes: frozenset[str]


def get_services(request: Request) -> Services:
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


def authenticate(services: Services, token: str | None, scope: str) -> Principal:
    """Look the token up by its hash; refuse unknown or revoked ones (401) and missing scopes (403)."""
    if not token or not tokens.looks_like_token(token):
        raise Unauthenticated()
    now = int(services.clock.now())
    with db.read(services.engine) as conn:
        row = token_queries.find_active_token(conn, tokens.hash_token(token))
        account = account_queries.get_account(conn, row.account_id) if row else None
    if row is None or account is None:
        raise Unauthenticated()
    if scope not in row.scopes:
        raise Forbidden()
    if row.last_used_ts is None or now - row.last_used_ts >= token_queries.LAST_USED_RESOLUTION:
        with db.write(services.engine) as conn:
            token_queries.touch_token(conn, row, now)
    return Principal(account=account, token_id=row.id, scopes=row.scopes)


def require_scope(scope: str, *, allow_basic: bool = False) -> Callable[..., Principal]:
    def dependency(request: Request, services: ServicesDep) -> Principal:
        principal = authenticate(services, bearer_or_basic(request, allow_basic=allow_basic), scope)
        request.state.principal = principal
        return principal

    return dependency


ReaderDep = Annotated[Principal, Depends(require_scope("cdr:read"))]
WriterDep = Annotated[Principal, Depends(require_scope("cdr:write"))]
