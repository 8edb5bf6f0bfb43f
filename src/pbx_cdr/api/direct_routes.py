"""The two hottest routes, dispatched straight to their endpoints.

``GET /api/pbx/cdr`` (the list) and ``POST /api/pbx/cdr`` (ingest) take nothing from FastAPI but
the request: they read their own parameters and authenticate in their bodies. What FastAPI's router
does around them (matching every route in turn, an exit stack, the endpoint wrapper) was about a
quarter of a single-call POST's CPU. This ASGI layer, innermost of the app's middleware (inside
the limits, the rate-limit headers and the access log), calls them directly and renders what they
raise through the app's own exception handlers, so the answers are the router's answers byte for
byte (the whole API test suite runs through it). Every other method and path, ``HEAD`` included,
goes on to the router, and the routes stay registered there for the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi.routing import APIRoute
from starlette._utils import get_route_path
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]


def _handler_for(app: Any, exc: Exception) -> Callable[[Request, Exception], Awaitable[Response]] | None:
    """The app's registered handler for ``exc``, by its class's MRO, as Starlette looks it up."""
    handlers = app.exception_handlers
    for cls in type(exc).__mro__:
        if cls in handlers:
            handler: Callable[[Request, Exception], Awaitable[Response]] = handlers[cls]
            return handler
    return None


class DirectRoutes:
    """ASGI middleware: ``(method, path)`` of the given request-only routes to their endpoints."""

    def __init__(self, app: ASGIApp, routes: Iterable[APIRoute]) -> None:
        self.app = app
        self.table: dict[tuple[str, str], APIRoute] = {
            (method, route.path): route
            for route in routes
            for method in route.methods or ()
            if method != "HEAD"
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = (
            self.table.get((scope.get("method", ""), get_route_path(scope)))
            if scope["type"] == "http"
            else None
        )
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route  # for the access log and metrics, as the router sets it
        scope["endpoint"] = route.endpoint
        request = Request(scope, receive, send)
        endpoint: Endpoint = route.endpoint
        try:
            response = await endpoint(request)
        except Exception as exc:
            handler = _handler_for(scope["app"], exc)
            if handler is None:
                raise  # as from the router: the server's error middleware answers 500
            response = await handler(request, exc)
        await response(scope, receive, send)
