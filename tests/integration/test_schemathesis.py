"""Schemathesis against the service's own /openapi.json: every default check, authenticated.

The app runs in process (ASGI). Schemathesis needs the schema when tests are collected, so one app
is built at import; each test then points its services at that test's database (SQLite, and the
real PostgreSQL), where the token has both scopes and its account no rate limit.

The OpenAPI states every rule JSON Schema can express (formats, patterns, lengths, ranges). What it
cannot express is repaired in *positive* cases only, by the ``map_case`` hook below (and by the test
for WAV bytes): that ``to`` is on or after ``from`` and within the account's window, that
``end_time`` follows ``start_time``, that counters are integer literals, that a recording body is a
real WAV and a FreeSWITCH post a real mod_json_cdr leg. Negative cases are left as generated, and
must be refused with a 4xx.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from pbx_cdr.app import create_app
from pbx_cdr.cli.tokens import issue_token
from pbx_cdr.config import load_settings
from pbx_cdr.demo.audio import wav_bytes
from tests.conftest import SECRET, Tenant

MAX_EXAMPLES = 40
LEG = next((Path(__file__).parents[1] / "fixtures" / "freeswitch" / "internal_answered").glob("a_*.cdr.json"))

_schema_home = tempfile.TemporaryDirectory(prefix="pbx-cdr-schemathesis-")
APP = create_app(
    load_settings(
        data_dir=Path(_schema_home.name),
        secret_key=SECRET,
        public_url="http://testserver",
        sqlite_synchronous="NORMAL",
    )
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
# The contract ignores unknown query parameters, so an extra one is not invalid input here.
schema.config.generation.update(allow_extra_parameters=False)
# Negative data may also be refused by the request limits: 413, 414 and 431 are rejections too.
_rejection = schema.config.checks.negative_data_rejection
_rejection.expected_statuses = [*_rejection.expected_statuses, "413", "414", "431"]
CURRENT_TOKEN: dict[str, str] = {}


@schema.auth(refresh_interval=None)
class BearerToken:
    """The test's token on every request; schemathesis's own auth checks still try without it."""

    def get(self, case: Any, context: Any) -> str:
        return CURRENT_TOKEN.get("token", "")

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


WAV = wav_bytes([0] * 800)


@schemathesis.serializer("audio/wav", "application/x-www-form-base64-encoded")
def _raw_bytes(context: Any, value: Any) -> bytes:
    """Bodies sent as they are: recordings (bytes) and mod_json_cdr's base64 form (a string)."""
    return value if isinstance(value, bytes) else str(value).encode()


def _repair_window(query: dict[str, Any]) -> None:
    """Within the 30 days before the test clock's today (2026-06-27), ``from`` first."""
    if query.get("from") not in (None, ""):
        query["from"] = "2026-06-01"
    if query.get("to") not in (None, ""):
        query["to"] = "2026-06-27"


def _repair_call(item: Any, seen: set[str]) -> None:
    if not isinstance(item, dict):
        return
    item["start_time"] = "2026-06-27T08:00:00+00:00"
    item["end_time"] = "2026-06-27T08:05:00+00:00"
    if item.get("answer_time") not in (None, ""):
        item["answer_time"] = "2026-06-27T08:00:10+00:00"
    if str(item.get("uuid", "")).lower() in seen:  # a batch names each call once
        item["uuid"] = str(uuid.uuid4())
    seen.add(str(item.get("uuid", "")).lower())


@schema.hook
def map_case(context: Any, case: Any) -> Any:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return case
    key = (case.method.upper(), case.path)
    if key == ("GET", "/api/pbx/cdr") and case.query:
        _repair_window(case.query)
    elif key == ("POST", "/api/pbx/cdr") and isinstance(case.body, dict):
        seen: set[str] = set()
        items = case.body.get("data") if isinstance(case.body.get("data"), list) else [case.body]
        for item in items:
            _repair_call(item, seen)
    elif key == ("PUT", "/api/pbx/cdr/{uuid}/recording"):
        # The WAV itself is sent by the test (bytes would not pass schemathesis's re-validation).
        if case.query and case.query.get("recorded_at") not in (None, ""):
            case.query["recorded_at"] = "2026-06-27T08:00:00+00:00"
    elif key == ("POST", "/api/pbx/ingest/freeswitch"):
        case.body = json.loads(LEG.read_text())
        case.media_type = "application/json"
    return case


@pytest.fixture
def fuzz_token(app: Any, make_tenant: Callable[..., Tenant], cli_ctx: Any) -> Iterator[str]:
    """APP serves this test's database; a token with both scopes, on an account without a limit."""
    own = APP.state.services
    APP.state.services = app.state.services
    tenant = make_tenant("fuzz", rate_limit_per_minute=0)
    _, token = issue_token(cli_ctx, tenant.id, "fuzz", ["cdr:read", "cdr:write"])
    CURRENT_TOKEN["token"] = token
    try:
        yield token
    finally:
        APP.state.services = own
        CURRENT_TOKEN.clear()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_the_api_keeps_its_own_schema(case: Any, fuzz_token: str) -> None:
    sent: dict[str, Any] = {}
    meta = case.meta
    positive = meta is not None and meta.generation.mode.is_positive
    if positive and (case.method.upper(), case.path) == ("PUT", "/api/pbx/cdr/{uuid}/recording"):
        sent["data"] = WAV  # a schema-valid upload is a real WAV: JSON Schema cannot say so
    case.call_and_validate(**sent)
