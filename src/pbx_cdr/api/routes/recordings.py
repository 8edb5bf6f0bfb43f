"""``/api/pbx/cdr/{uuid}/recording``: upload (PUT), the redirect to a signed link (GET), delete."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from starlette.requests import ClientDisconnect

from pbx_cdr.api.deps import ReaderDep, ServicesDep, WriterDep
from pbx_cdr.api.recording_links import PRIVATE, audit_link, client_address, mint_link
from pbx_cdr.api.responses import AUTHED, NOT_FOUND, JSONBytes, _err
from pbx_cdr.api.routes.cdr import canonical_uuid, find_call
from pbx_cdr.db import engine as db
from pbx_cdr.db.queries import recordings as queries
from pbx_cdr.domain.call import iso
from pbx_cdr.domain.values import MAX_EPOCH
from pbx_cdr.errors import NotFound, PayloadTooLarge, ServiceUnavailable, ValidationFailed
from pbx_cdr.ingest.json_cdr import ISO_WITH_OFFSET
from pbx_cdr.storage.base import StorageError
from pbx_cdr.storage.recordings import IncomingRecording, NotAWav, TooLarge, delete_recording, save_recording

router = APIRouter(prefix="/api/pbx/cdr", tags=["recordings"])
log = logging.getLogger(__name__)

_STORAGE_DOWN = "The recording storage is not available."


def parse_recorded_at(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    message = "The recorded at field must be an ISO 8601 date-time with an offset."
    if not ISO_WITH_OFFSET.match(value):
        raise ValidationFailed({"recorded_at": [message]})
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ValidationFailed({"recorded_at": [message]}) from None
    if not 0 <= moment < MAX_EPOCH:
        raise ValidationFailed({"recorded_at": ["The recorded at field is out of range."]})
    return int(moment)


UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "The WAV file's bytes (PCM, IEEE float, µ-law or A-law)",
        "content": {
            "audio/wav": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.put(
    "/{uuid}/recording",
    response_class=JSONBytes,
    status_code=201,
    responses={
        200: {"description": "The call's recording was replaced (or was already these bytes)"},
        201: {"description": "The recording was stored"},
        413: _err("The body is larger than the configured maximum"),
        422: _err("Not a WAV file this service accepts, a bad uuid or recorded_at"),
        **AUTHED,
    },
    openapi_extra=UPLOAD_BODY,
    summary="Upload a call's recording (WAV)",
)
async def upload_recording(
    uuid: str,
    request: Request,
    services: ServicesDep,
    principal: WriterDep,
    recorded_at: str | None = Query(None, description="When recording began, ISO 8601 with an offset"),
) -> JSONBytes:
    """Streamed to storage, never held in memory; the call may arrive before or after it.

    A re-upload replaces the bytes once the new ones are durable; identical bytes change nothing.
    """
    key = canonical_uuid(uuid)
    if key is None:
        raise ValidationFailed({"uuid": ["The uuid must be a valid UUID."]})
    recorded_ts = parse_recorded_at(recorded_at)
    limit = services.settings.max_recording_bytes
    too_large = f"The recording must not be larger than {limit} bytes."
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(too_large)  # refused before a byte of the body is read
    account = principal.account
    incoming = IncomingRecording(services.storage, account.id, limit)
    try:
        async for chunk in request.stream():
            await run_in_threadpool(incoming.feed, chunk)
        stored = await run_in_threadpool(incoming.finish)
    except NotAWav as exc:
        raise ValidationFailed({"recording": [str(exc)]}) from None
    except TooLarge:
        raise PayloadTooLarge(too_large) from None
    except StorageError as exc:
        log.error("recording upload failed in storage: %s", exc)
        raise ServiceUnavailable(_STORAGE_DOWN) from None
    except ClientDisconnect:
        log.info("client went away during a recording upload")
        raise
    finally:
        incoming.abort()
    now = int(services.clock.now())
    try:
        result = await run_in_threadpool(
            save_recording,
            services.engine,
            services.storage,
            account.id,
            key,
            stored,
            recorded_ts=recorded_ts,
            now=now,
        )
    except StorageError as exc:
        log.error("recording bookkeeping failed in storage: %s", exc)
        raise ServiceUnavailable(_STORAGE_DOWN) from None

    def effective() -> Any:
        with db.read(services.engine) as conn:
            return queries.get_for_call(conn, account.id, key)

    row = await run_in_threadpool(effective)
    info = stored.info
    body = {
        "data": {
            "uuid": key,
            "status": result.status,
            "call_found": result.call_found,
            "duration": stored.version.duration,
            "file_size": stored.version.file_size,
            "recorded_at": iso(row.recorded_ts) if row is not None else None,
            "format": info.audio_format,
            "sample_rate": info.sample_rate,
            "channels": info.channels,
            "sha256": stored.version.sha256,
        }
    }
    return JSONBytes(body, status_code=201 if result.status == "created" else 200)


@router.get(
    "/{uuid}/recording",
    status_code=302,
    response_class=RedirectResponse,
    responses={
        302: {
            "description": "Redirect to a freshly signed link to the .wav",
            "headers": {"Location": {"schema": {"type": "string", "format": "uri"}}},
        },
        **AUTHED,
        404: _err("No such call in this account, or the call has no recording"),
    },
    summary="Redirect to the call's signed recording link",
)
def redirect_to_recording(
    request: Request, uuid: str, services: ServicesDep, principal: ReaderDep
) -> Response:
    key = str(find_call(services, principal, uuid).uuid)
    with db.read(services.engine) as conn:
        recording = queries.get_for_call(conn, principal.account.id, key)
    if recording is None:
        raise NotFound("Recording not found.")
    url, _ = mint_link(services, principal.account.recording_url_ttl, recording)
    audit_link(services, principal, recording, client_address(request), "redirect")
    return RedirectResponse(url, status_code=302, headers=PRIVATE)


@router.delete(
    "/{uuid}/recording",
    status_code=204,
    response_class=Response,
    responses={**AUTHED, **NOT_FOUND},
    summary="Delete the call's recording",
)
def remove_recording(uuid: str, services: ServicesDep, principal: WriterDep) -> Response:
    """Links already handed out stop working at once (404)."""
    key = canonical_uuid(uuid)
    if key is None:
        raise NotFound("Recording not found.")
    try:
        removed = delete_recording(services.engine, services.storage, principal.account.id, key)
    except StorageError as exc:
        log.error("recording delete failed in storage: %s", exc)
        raise ServiceUnavailable(_STORAGE_DOWN) from None
    if not removed:
        raise NotFound("Recording not found.")
    return Response(status_code=204)
