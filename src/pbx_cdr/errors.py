"""Every error the API can answer, and the one place their JSON shape is made.

The shape is Laravel's, because clients of the published API already parse it::

    {"message": "...", "errors": {"field": ["..."]}}      # "errors" only on 422

Exception tree::

    ApiError
    ├── Unauthenticated          401  no, malformed, unknown or revoked token
    ├── Forbidden                403  a token without the scope the route needs
    ├── InvalidSignature         403  any bad, tampered or expired signed URL
    ├── NotFound                 404  unknown id, or another account's
    ├── PayloadTooLarge          413
    ├── RangeNotSatisfiable      416
    ├── ValidationFailed         422  field errors
    ├── BadRequest               400  a body that is not what the route reads
    ├── RequestTimeout           408  a client too slow sending its request
    ├── UriTooLong               414  a path and query string over the limit
    ├── HeadersTooLarge          431  request headers over the limit
    ├── TooManyRequests          429  with Retry-After
    └── ServiceUnavailable       503  the database is gone
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson


class ApiError(Exception):
    status_code: int = 500
    default_message: str = "Server Error."

    def __init__(self, message: str | None = None, *, headers: Mapping[str, str] | None = None) -> None:
        self.message = message or self.default_message
        self.headers = dict(headers or {})
        super().__init__(self.message)

    def body(self) -> dict[str, object]:
        return {"message": self.message}


class Unauthenticated(ApiError):
    status_code = 401
    default_message = "Unauthenticated."


class Forbidden(ApiError):
    status_code = 403
    default_message = "This action is unauthorized."


class InvalidSignature(ApiError):
    status_code = 403
    default_message = "Invalid signature."


class NotFound(ApiError):
    status_code = 404
    default_message = "Not found."


class BadRequest(ApiError):
    status_code = 400
    default_message = "Bad request."


class PayloadTooLarge(ApiError):
    status_code = 413
    default_message = "The request body is too large."


class RangeNotSatisfiable(ApiError):
    status_code = 416
    default_message = "The requested range is not satisfiable."


class RequestTimeout(ApiError):
    status_code = 408
    default_message = "Request Timeout."


class UriTooLong(ApiError):
    status_code = 414
    default_message = "The request URI is too long."


class HeadersTooLarge(ApiError):
    status_code = 431
    default_message = "The request headers are too large."


class TooManyRequests(ApiError):
    status_code = 429
    default_message = "Too Many Attempts."


class ServiceUnavailable(ApiError):
    status_code = 503
    default_message = "Service Unavailable."


class ValidationFailed(ApiError):
    """422 with Laravel's message: the first error, plus how many more there are."""

    status_code = 422

    def __init__(self, errors: Mapping[str, list[str]]) -> None:
        self.errors = {k: list(v) for k, v in errors.items()}
        messages = [m for v in self.errors.values() for m in v]
        first = messages[0] if messages else "The given data was invalid."
        more = len(messages) - 1
        if more > 0:
            first += f" (and {more} more error{'s' if more > 1 else ''})"
        super().__init__(first)

    def body(self) -> dict[str, object]:
        return {"message": self.message, "errors": self.errors}


def error_body(error: ApiError) -> bytes:
    """The bytes of an error response: the only place the error shape is serialized."""
    return orjson.dumps(error.body())
