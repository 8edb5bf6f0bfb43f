"""``POST /api/pbx/ingest/freeswitch``: FreeSWITCH mod_json_cdr, one leg per POST, as it is really sent."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool

from pbx_cdr.api.body import read_capped
from pbx_cdr.api.deps import Principal, ServicesDep, require_scope
from pbx_cdr.api.responses import AUTHED, INVALID, JSONBytes, _err
from pbx_cdr.db import engine as db
from pbx_cdr.errors import BadRequest, ValidationFailed
from pbx_cdr.ingest.freeswitch import InvalidLeg, UndecodableBody, read_leg
from pbx_cdr.ingest.freeswitch.service import LegOutcome, store_leg
from pbx_cdr.observability import metrics

router = APIRouter(prefix="/api/pbx/ingest", tags=["ingest"])

# A leg with a long app_log is tens of kilobytes; URL encoding triples it.
MAX_LEG_BYTES = 4 * 1024 * 1024
FreeswitchWriterDep = Annotated[Principal, Depends(require_scope("cdr:write", allow_basic=True))]

LEG_EXAMPLE = {
    "leg_uuid": "0b3c1a9e-6a44-4f0e-9d7e-1f2a3b4c5d6e",
    "call_uuid": "65569ce0-0183-4f61-a3b2-0e433cfa4031",
    "role": "b_leg",
    "leg": "created",
    "call": "updated",
}


@router.post(
    "/freeswitch",
    status_code=200,
    response_class=JSONBytes,
    responses={
        200: {
            "description": "The leg is committed; `call` is `pending` until the call's A-leg arrives.",
            "content": {"application/json": {"example": LEG_EXAMPLE}},
        },
        400: _err("The body is no form of a mod_json_cdr leg"),
        413: _err("The body is larger than the leg limit"),
        **AUTHED,
        **INVALID,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/x-www-form-urlencoded": {
                    "schema": {"type": "object", "properties": {"cdr": {"type": "string"}}}
                },
                "application/x-www-form-base64-encoded": {"schema": {"type": "string"}},
            },
        }
    },
    summary="Receive one call leg from FreeSWITCH mod_json_cdr",
)
async def ingest_freeswitch_leg(
    request: Request,
    services: ServicesDep,
    principal: FreeswitchWriterDep,
    uuid: str | None = Query(None, description="The leg's uuid, as mod_json_cdr appends it"),
) -> JSONBytes:
    """Auth: HTTP Basic with the token as the password (mod_json_cdr's ``cred``), or Bearer.

    The body may be raw JSON, ``cdr=`` with URL-encoded JSON, or ``cdr=`` with base64 JSON; the
    form is read from the body, whatever the Content-Type says. The answer is 200 only once the
    leg is committed, so FreeSWITCH's retries and ``err-log-dir`` cover every failure, and a
    repeated post changes nothing.
    """
    raw = await read_capped(request, MAX_LEG_BYTES)
    account = principal.account
    now = int(services.clock.now())

    def ingest() -> LegOutcome:
        try:
            leg, text = read_leg(raw, url_uuid=uuid)
        except UndecodableBody as exc:
            raise BadRequest(str(exc)) from exc
        except InvalidLeg as exc:
            raise ValidationFailed({exc.field: [exc.message]}) from exc
        with db.write(services.engine) as conn:
            return store_leg(conn, account, leg, text, now)

    outcome = await run_in_threadpool(ingest)
    if outcome.call != "pending":
        metrics.count_ingested("freeswitch", [outcome.call])
    return JSONBytes(
        {
            "leg_uuid": outcome.leg_uuid,
            "call_uuid": outcome.call_uuid,
            "role": outcome.role,
            "leg": outcome.leg,
            "call": outcome.call,
        }
    )
