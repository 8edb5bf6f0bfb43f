"""Request limits enforced before any route runs, and the rate-limit headers on every answer.

Each refusal is an ``ApiError`` rendered in the contract's error shape:

- a path plus query string over ``max_url_bytes``            -> 414
- more than ``max_header_count`` headers, or over ``max_header_bytes`` -> 431
- a declared ``Content-Length`` over the largest body any route takes -> 413
- a body that stalls for ``body_idle_timeout`` seconds          -> 408 (raised from ``receive``)
- a NUL byte in a query parameter                               -> 422

The server process adds the same URL and header limits, and a deadline for the request head, at
the socket (``api/protocol.py``), so a slow or endless head never reaches the application.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pbx_cdr.api.responses import error_response
from pbx_cdr.config import Settings
from pbx_cdr.errors import (
    ApiError,
    HeadersTooLarge,
    PayloadTooLarge,
    RequestTimeout,
    UriTooLong,
    ValidationFailed,
)

# JSON ingest reads at most 8 MiB (api/routes/cdr.py); recordings up to max_recording_bytes.
MIN_BODY_CAP = 8 * 1024 * 1024


@dataclass(frozen=True)
class Limits:
    max_url_bytes: int
    max_header_bytes: int
    max_header_count: int
    max_body_bytes: int
    body_idle_timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_url_bytes=settings.max_url_bytes,
            max_header_bytes=settings.max_header_bytes,
            max_header_count=settings.max_header_count,
            max_body_bytes=max(MIN_BODY_CAP, settings.max_recording_bytes),
            body_idle_timeout=settings.body_idle_timeout,
        )


def check_head(scope: Scope, limits: Limits) -> ApiError | None:
    """The refusal for a request line and headers over the limits, or None."""
    path = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "surrogateescape")
    if len(path) + len(scope.get("query_string", b"")) > limits.max_url_bytes:
        return UriTooLong(f"The request URI must not be longer than {limits.max_url_bytes} bytes.")
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    if len(headers) > limits.max_header_count:
        return HeadersTooLarge(f"A request must not have more than {limits.max_header_count} headers.")
    if sum(len(name) + len(value) for name, value in headers) > limits.max_header_bytes:
        return HeadersTooLarge(f"The request headers must not exceed {limits.max_header_bytes} bytes.")
    for name, value in headers:
        if name == b"content-length" and value.isdigit() and int(value) > limits.max_body_bytes:
            return PayloadTooLarge(f"The request body must not be larger than {limits.max_body_bytes} bytes.")
    return _nul_in_query(scope.get("query_string", b""))


def _nul_in_query(query: bytes) -> ApiError | None:
    """A NUL byte is no part of any value this API reads, and PostgreSQL cannot even compare one."""
    if b"%00" not in query and b"\x00" not in query:
        return None
    errors = {
        name or "query": [f"The {name or 'query'} field must not contain NUL bytes."]
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True)
        if "\x00" in name or "\x00" in value
    }
    return ValidationFailed(errors) if errors else None


class LimitsMiddleware:
    """Refuses oversized heads and stalled bodies; adds ``X-RateLimit-*`` headers to answers."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.limits = Limits.from_settings(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = check_head(scope, self.limits)
        if refusal is not None:
            refusal.headers.setdefault("Connection", "close")
            await error_response(refusal)(scope, receive, send)
            return
        await self.app(scope, self._patient_receive(receive), self._with_rate_headers(scope, send))

    def _patient_receive(self, receive: Receive) -> Receive:
        """``receive`` with a deadline between body chunks; none once the body is complete (a long
        download waits on ``receive`` for the client's disconnect)."""
        timeout = self.limits.body_idle_timeout
        body_done = False

        async def wrapped() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            try:
                async with asyncio.timeout(timeout):  # a timer, not a task per chunk (wait_for)
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(
                    f"The request body stalled for more than {timeout:g} seconds.",
                    headers={"Connection": "close"},
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        return wrapped

    @staticmethod
    def _with_rate_headers(scope: Scope, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra: dict[str, str] = scope.get("state", {}).get("rate_limit_headers") or {}
                if extra:
                    present = {name.lower() for name, _ in message.get("headers", [])}
                    added = [
                        (name.lower().encode(), value.encode())
                        for name, value in extra.items()
                        if name.lower().encode() not in present
                    ]
                    message = {**message, "headers": [*message.get("headers", []), *added]}
            await send(message)

        return wrapped


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The ``Allow`` header of a 405: the methods of every route whose path matches."""
    probe: dict[str, Any] = {**scope, "method": "\x00"}  # a method no route has: path matches are PARTIAL
    methods: set[str] = set()
    for route in _flat(routes):
        match, _ = route.matches(probe)
        if match is Match.PARTIAL:
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


def _flat(routes: Sequence[BaseRoute]) -> Iterator[BaseRoute]:
    """Routes, with those of included routers in place of the router (FastAPI >= 0.16x keeps an
    included router as one entry of ``app.routes``, whose own match is no route's)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _flat(included.routes)
        else:
            yield route
