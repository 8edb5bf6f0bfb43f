"""Completing ``/openapi.json``: every status the service really sends, its auth, and the input rules.

FastAPI documents what each route declares. Some answers come from layers around the routes and
apply to every operation: the limits (408, 413, 414, 431, ``api/middleware.py``), authentication
and the rate limit (401, 403, 429 and the ``X-RateLimit-*`` headers, ``api/deps.py``), a lost
database (503). The list parameters are read as raw strings (Laravel's rules decide, not FastAPI's),
so their rules are written here, and so are the ingest fields' formats.
"""

from __future__ import annotations

from typing import Any, cast

from pbx_cdr.api.responses import RATE_LIMIT_HEADERS

ERROR_REF = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
BASIC_AUTH_PATHS = frozenset({"/api/pbx/ingest/freeswitch"})  # mod_json_cdr sends HTTP Basic
UNGUARDED = frozenset({"/healthz"})  # touches neither the database nor storage

EVERY_REQUEST = {
    "408": "The client was too slow sending its request",
    "413": "The request body is larger than any route accepts",
    "414": "The path and query string are longer than the limit",
    "431": "The request headers are larger than the limit",
}
AUTHENTICATED = {
    "401": "No token, or a malformed, unknown or revoked token",
    "403": "The token lacks the scope this route needs",
    "429": "The token's rate limit is exceeded",
}
RATE_HEADERS_ON_SUCCESS: dict[str, dict[str, Any]] = {
    name: {**cast(dict[str, Any], spec), "required": False}
    for name, spec in RATE_LIMIT_HEADERS.items()
    if name != "Retry-After"
}

UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
PRINTABLE = "^[^\\u0000-\\u001f]*$"
# The ingest's own rule (ingest/json_cdr.py): ISO 8601 with an offset.
DATETIME_PATTERN = "^\\d{4}-\\d{2}-\\d{2}[T ]\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?(Z|[+-]\\d{2}:?\\d{2})$"

# An empty parameter counts as absent (Laravel's empty-string-to-null), so each rule admits "".
LIST_PARAMETERS: dict[str, dict[str, Any]] = {
    "from": {"type": "string", "pattern": "^(\\d{4}-\\d{2}-\\d{2})?$"},
    "to": {"type": "string", "pattern": "^(\\d{4}-\\d{2}-\\d{2})?$"},
    "direction": {"type": "string", "enum": ["", "inbound", "outbound", "internal", "local"]},
    "extension": {"type": "string", "pattern": "^([^\\u0000]{3,20})?$"},  # no NUL (api/middleware.py)
    "phone": {
        "type": "string",
        "maxLength": 50,
        "pattern": "^([\\s().-]*\\+?[\\s().-]*[0-9][0-9\\s().-]*)?$",
    },
    "page": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 10_000_000}, {"const": ""}]},
    "per_page": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 200}, {"const": ""}], "default": 50},
}

CALL_FIELDS: dict[str, dict[str, Any]] = {
    "uuid": {"type": "string", "pattern": UUID_PATTERN, "minLength": 36, "maxLength": 36},
    "caller_number": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": PRINTABLE},
    "destination_number": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": PRINTABLE},
    "extension_number": {
        "anyOf": [{"type": "string", "maxLength": 32, "pattern": PRINTABLE}, {"type": "null"}]
    },
    "agent_extension": {
        "anyOf": [{"type": "string", "maxLength": 32, "pattern": PRINTABLE}, {"type": "null"}]
    },
    "queue_name": {"anyOf": [{"type": "string", "maxLength": 128, "pattern": PRINTABLE}, {"type": "null"}]},
    "trunk_name": {"anyOf": [{"type": "string", "maxLength": 128, "pattern": PRINTABLE}, {"type": "null"}]},
    "start_time": {"type": "string", "pattern": DATETIME_PATTERN},
    "end_time": {"type": "string", "pattern": DATETIME_PATTERN},
    "answer_time": {"anyOf": [{"type": "string", "pattern": DATETIME_PATTERN}, {"type": "null"}]},
    "hangup_cause": {"anyOf": [{"type": "string", "pattern": "^[A-Z][A-Z0-9_]{0,63}$"}, {"type": "null"}]},
    "sip_response_code": {"anyOf": [{"type": "string", "pattern": "^[1-6][0-9]{2}$"}, {"type": "null"}]},
}
COUNTERS = ("duration", "billsec", "queue_wait_time", "transfer_count")
MAX_INT = 2**31 - 1


def complete(schema: dict[str, Any]) -> None:
    """Add, in place, what the route declarations alone leave out."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(
        {
            "bearerAuth": {"type": "http", "scheme": "bearer", "description": "An API token (pbx_...)"},
            "basicAuth": {"type": "http", "scheme": "basic", "description": "The token as the password"},
        }
    )
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if method in METHODS:
                _complete_operation(path, operation)
    _document_list_parameters(schema)
    _document_uuid_paths(schema)
    _document_call_fields(components.get("schemas", {}))


def _complete_operation(path: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    for status, description in EVERY_REQUEST.items():
        responses.setdefault(status, {"description": description, "content": ERROR_REF})
    if path not in UNGUARDED:
        responses.setdefault(
            "503", {"description": "The database or storage cannot be reached", "content": ERROR_REF}
        )
    if "401" not in responses:
        return  # a public route: no token, no rate limit
    for status, description in AUTHENTICATED.items():
        responses.setdefault(status, {"description": description, "content": ERROR_REF})
    responses["429"].setdefault("headers", dict(RATE_LIMIT_HEADERS))
    for status, response in responses.items():
        if status.startswith("2"):
            response.setdefault("headers", {}).update(RATE_HEADERS_ON_SUCCESS)
    security: list[dict[str, list[str]]] = [{"bearerAuth": []}]
    if path in BASIC_AUTH_PATHS:
        security.append({"basicAuth": []})
    operation["security"] = security


def _document_list_parameters(schema: dict[str, Any]) -> None:
    operation = schema.get("paths", {}).get("/api/pbx/cdr", {}).get("get")
    if not operation:
        return
    for parameter in operation.get("parameters", []):
        rule = LIST_PARAMETERS.get(parameter.get("name"))
        if rule and parameter.get("in") == "query":
            parameter["schema"] = {
                **rule,
                "title": parameter.get("schema", {}).get("title", parameter["name"]),
            }


def _document_uuid_paths(schema: dict[str, Any]) -> None:
    """A call's ``{uuid}`` is a UUID (anything else is 404, or 422 on upload)."""
    for item in schema.get("paths", {}).values():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter.get("name") == "uuid":
                    parameter["schema"] = {"type": "string", "pattern": UUID_PATTERN, "title": "Uuid"}


def _document_call_fields(schemas: dict[str, Any]) -> None:
    call = schemas.get("CallIn")
    if not call:
        return
    properties = call.get("properties", {})
    for name, rule in CALL_FIELDS.items():
        if name in properties:
            properties[name] = {**rule, **_descriptive(properties[name])}
    for name in COUNTERS:
        if name in properties:
            properties[name] = {
                "anyOf": [{"type": "integer", "minimum": 0, "maximum": MAX_INT}, {"type": "null"}],
                **_descriptive(properties[name]),
            }


def _descriptive(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k in ("title", "description", "examples", "default")}
