"""The outermost layer of every request: its id, its access log line and its metrics.

The access log is ours, not uvicorn's: uvicorn would log the query string whole, signatures and
phone numbers included. Ours shows the path with :func:`redact.safe_target`'s masked query.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pbx_cdr.observability import metrics
from pbx_cdr.observability.context import REQUEST_ID_HEADER, accept_request_id, request_id
from pbx_cdr.observability.redact import safe_target

access_log = logging.getLogger("pbx_cdr.access")
_HEADER = REQUEST_ID_HEADER.lower().encode()


def route_template(scope: Scope) -> str:
    """The matched route's path template; never the raw path, which holds ids and can be anything."""
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else metrics.UNMATCHED


def _account_id(scope: Scope) -> int | None:
    principal: Any = scope.get("state", {}).get("principal")
    account = getattr(principal, "account", None)
    value = getattr(account, "id", None)
    return value if isinstance(value, int) else None


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v for k, v in scope.get("headers", []) if k == _HEADER), b"")
        rid = accept_request_id(incoming.decode("latin-1") if incoming else None)
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500
        sent = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != _HEADER]
                message = {**message, "headers": [*headers, (_HEADER, rid.encode())]}
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            self._record(scope, status, elapsed, sent)
            request_id.reset(token)

    @staticmethod
    def _record(scope: Scope, status: int, elapsed: float, sent: int) -> None:
        method = str(scope.get("method", "-"))
        route = route_template(scope)
        metrics.count_request(method, route, status, elapsed)
        if not access_log.isEnabledFor(logging.INFO):
            return
        client = scope.get("client")
        target = safe_target(str(scope.get("path", "")), scope.get("query_string", b"").decode("latin-1"))
        access_log.info(
            "%s %s %d %.1fms",
            method,
            target,
            status,
            elapsed * 1000,
            extra={
                "request_id": scope.get("state", {}).get("request_id"),
                "method": method,
                "path": target,
                "route": route,
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
                "bytes": sent,
                "client": client[0] if client else None,
                "account_id": _account_id(scope),
            },
        )
