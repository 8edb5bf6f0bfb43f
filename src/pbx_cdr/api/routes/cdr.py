"""``/api/pbx/cdr``: the seed's list and detail, and JSON ingest."""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from sqlalchemy import Engine

from pbx_cdr.api.body import parse_json, read_capped
from pbx_cdr.api.deps import (
    Principal,
    ReaderDep,
    Services,
    ServicesDep,
    authenticate_request,
    services_of,
)
from pbx_cdr.api.list_items import page_data
from pbx_cdr.api.recording_links import client_address, recording_object
from pbx_cdr.api.responses import AUTHED, INVALID, NOT_FOUND, JSONBytes, _err
from pbx_cdr.api.schemas import CallBatchIn, CallDetail, CallIn, CallPage, IngestResult
from pbx_cdr.db import engine as db
from pbx_cdr.db.queries import call_list
from pbx_cdr.db.queries import calls as call_queries
from pbx_cdr.db.writer import writer_for
from pbx_cdr.domain.call import api_item
from pbx_cdr.domain.listing import AccountView, ListQuery, last_page, parse_list_query
from pbx_cdr.errors import NotFound
from pbx_cdr.ingest.json_cdr import MAX_BATCH, parse_payload
from pbx_cdr.observability import metrics

LIST_PATH = "/api/pbx/cdr"  # GET: the list, POST: JSON ingest; both dispatched by api/direct_routes.py
router = APIRouter(prefix=LIST_PATH, tags=["cdr"])

MAX_INGEST_BYTES = 8 * 1024 * 1024
LIST_PARAMS = ("from", "to", "direction", "extension", "phone", "page", "per_page")
_LIST_PARAM_NAMES = frozenset(LIST_PARAMS)


def canonical_uuid(value: str) -> str | None:
    """The stored form of a call uuid (lowercase, hyphenated), or None when it is no UUID."""
    if len(value) != 36:
        return None
    try:
        return str(uuidlib.UUID(value))
    except ValueError:
        return None


def find_call(services: Services, principal: Principal, uuid: str) -> Any:
    """The account's call, or 404 (the same answer for another account's call)."""
    key = canonical_uuid(uuid)
    if key is None:
        raise NotFound("Call not found.")
    with db.read(services.engine) as conn:
        row = call_queries.get_call(conn, principal.account.id, key)
    if row is None:
        raise NotFound("Call not found.")
    return row


# The list's parameters, documented only: the route reads them raw (Laravel's rules, in
# domain/listing.py), so having FastAPI validate seven optional strings on every request was pure
# cost (a tenth of the request). ``api/openapi_doc.py`` fills in each one's schema.
LIST_PARAMETER_DOCS = {
    "from": "Start date, YYYY-MM-DD (default today - 30 days)",
    "to": "End date, YYYY-MM-DD, inclusive (default today)",
    "direction": "inbound, outbound, internal or local",
    "extension": "extension_number or agent_extension, 3-20 chars",
    "phone": "caller or destination number, matched as a suffix",
    "page": "Page number, >= 1",
    "per_page": "1-200, default 50",
}


@router.get(
    "",
    response_model=CallPage,
    response_class=JSONBytes,
    responses={**AUTHED, **INVALID},
    summary="List calls",
    openapi_extra={
        "parameters": [
            {
                "name": name,
                "in": "query",
                "required": False,
                "schema": {"title": name.replace("_", " ").title()},
                "description": description,
            }
            for name, description in LIST_PARAMETER_DOCS.items()
        ]
    },
)
async def list_cdrs(request: Request) -> Response:
    """Calls in the account's window, newest first, with an exact ``total``."""
    services = services_of(request)
    # Laravel reads the last of repeated parameters (as ``items()`` gives them) and treats empty
    # ones as absent; a list with no parameters at all (a first page) parses nothing.
    params = (
        {k: v for k, v in request.query_params.items() if v and k in _LIST_PARAM_NAMES}
        if request.scope["query_string"]
        else {}
    )

    # With the list cache on, the account's data version must be current: the token is looked up
    # afresh, not taken from the token cache (whose accounts' versions may be old).
    principal = await authenticate_request(request, "cdr:read", fresh=services.list_cache.enabled)
    account = principal.account
    query = parse_list_query(
        params,
        AccountView(account.timezone, account.country, account.max_window_days),
        services.clock.now(),
    )
    # The same question at the same data version has the same answer (api/list_cache.py).
    key = (account.id, account.data_version, query)
    body = services.list_cache.get(key)
    if body is None:
        if services.async_reader is not None:  # PostgreSQL: awaited here, no worker thread
            page = await call_list.list_calls_async(services.async_reader, account.id, query)
        else:  # SQLite: a few index reads, cheaper than a hop to a worker thread
            page = read_page(services.engine, account.id, query)
        body = page_body(query, page)
        services.list_cache.put(key, body)
    return Response(body, media_type=JSONBytes.media_type)


def read_page(engine: Engine, account_id: int, query: ListQuery) -> call_list.ListPage:
    with call_list.reader(engine) as conn:
        return call_list.list_calls(conn, account_id, query)


def page_body(query: ListQuery, page: call_list.ListPage) -> bytes:
    """The seed's paginator JSON around the page's items."""
    count, data = page_data(page)
    return orjson.dumps(
        {
            "current_page": query.page,
            "data": data,
            "last_page": last_page(page.total, query.per_page),
            "per_page": query.per_page,
            "total": page.total,
            "from": query.offset + 1 if count else None,
            "to": query.offset + count if count else None,
        }
    )


@router.get(
    "/{uuid}",
    response_model=CallDetail,
    response_class=JSONBytes,
    responses={**AUTHED, **NOT_FOUND},
    summary="Call detail with a signed recording link",
)
def show_cdr(request: Request, uuid: str, services: ServicesDep, principal: ReaderDep) -> JSONBytes:
    row = find_call(services, principal, uuid)
    item: dict[str, Any] = api_item(row)
    item["recording"] = recording_object(services, principal, row.uuid, client_address(request))
    return JSONBytes({"data": item})


@router.post(
    "",
    response_model=IngestResult,
    status_code=200,
    response_class=JSONBytes,
    responses={
        201: {"model": IngestResult, "description": "At least one call was created"},
        400: _err("The body is not JSON"),
        413: _err("The body is larger than the ingest limit"),
        **AUTHED,
        **INVALID,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/CallIn"},
                            {"$ref": "#/components/schemas/CallBatchIn"},
                        ]
                    }
                }
            },
        }
    },
    summary=f"Ingest one call, or a batch of up to {MAX_BATCH}",
)
async def ingest_cdrs(request: Request) -> JSONBytes:
    """Idempotent by (account, uuid): a retried post never makes a second row.

    201 when any call was created, else 200. A batch is validated whole: one bad item and nothing
    is written.
    """
    # Authenticated here, before the body is read, rather than by a dependency: FastAPI's
    # dependency solving was a tenth of a single-call POST's CPU.
    services = services_of(request)
    principal = await authenticate_request(request, "cdr:write")
    # The parsed JSON is dropped before the wait for the commit: a 1000-call batch's dicts are a few
    # MB, and a process holds one per request in flight (its calls, a fraction of that, remain).
    batch, _ = parse_payload(parse_json(await read_capped(request, MAX_INGEST_BYTES)))
    account = principal.account
    now = int(services.clock.now())
    # Committed together with the other requests waiting in this process (db/writer.py); the
    # statuses arrive only once the transaction is committed.
    statuses = await writer_for(services.engine).upsert(
        account.id, account.country, batch, origin="api", now=now
    )
    metrics.count_ingested("api", statuses)
    tally = {s: statuses.count(s) for s in ("created", "updated", "unchanged")}
    return JSONBytes(
        {"data": [{"uuid": c.uuid, "status": s} for c, s in zip(batch, statuses, strict=True)], **tally},
        status_code=201 if tally["created"] else 200,
    )


# Referenced so the documented request models appear in components/schemas.
DOCUMENTED_MODELS = (CallIn, CallBatchIn)


def direct_routes() -> list[APIRoute]:
    """The routes :class:`~pbx_cdr.api.direct_routes.DirectRoutes` dispatches: they take only the request."""
    return [r for r in router.routes if isinstance(r, APIRoute) and r.path == LIST_PATH]
