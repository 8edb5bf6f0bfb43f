"""Responses: orjson straight to bytes, and the documented error responses of each route."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse, Response

from pbx_cdr.api.schemas import ErrorBody, ValidationErrorBody
from pbx_cdr.errors import ApiError, error_body


class JSONBytes(JSONResponse):
    """JSON serialized by orjson; far cheaper than FastAPI's jsonable_encoder on a 200-row page.

    A JSONResponse subclass so FastAPI documents the route's ``response_model`` in the OpenAPI.
    """

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(error: ApiError) -> Response:
    """The one place an error becomes an HTTP response."""
    return Response(
        content=error_body(error),
        status_code=error.status_code,
        media_type="application/json",
        headers=error.headers,
    )


Responses = dict[int | str, dict[str, Any]]


def _err(description: str, model: type = ErrorBody, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"model": model, "description": description}
    if headers:
        doc["headers"] = headers
    return doc


RATE_LIMIT_HEADERS = {
    "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds until a request may succeed"},
    "X-RateLimit-Limit": {"schema": {"type": "integer"}},
    "X-RateLimit-Remaining": {"schema": {"type": "integer"}},
}
UNAUTHENTICATED: Responses = {401: _err("No token, or a malformed, unknown or revoked token")}
FORBIDDEN: Responses = {403: _err("The token lacks the scope this route needs")}
NOT_FOUND: Responses = {404: _err("No such call in this account")}
INVALID: Responses = {422: _err("Validation failed", ValidationErrorBody)}
TOO_MANY: Responses = {429: _err("The token's rate limit is exceeded", headers=RATE_LIMIT_HEADERS)}
UNAVAILABLE: Responses = {503: _err("The database cannot be reached")}
AUTHED: Responses = {**UNAUTHENTICATED, **FORBIDDEN, **TOO_MANY, **UNAVAILABLE}
