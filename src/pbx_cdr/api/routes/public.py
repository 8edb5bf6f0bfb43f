"""``/api/public/recordings/{id}/audio``: the signed link's target. No token: the signature is the key.

Every failure of the signature (tampered, expired, malformed, extra or repeated parameters) is the
same 403; a recording deleted since the link was made is 404. Each download (GET or HEAD, whole or a
range, completed or cut off) is written to the audit trail with the bytes actually sent.
"""

from __future__ import annotations

import logging
from email.utils import formatdate
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from pbx_cdr.api.deps import Services, ServicesDep
from pbx_cdr.api.ranges import ByteRange, StoredObjectResponse, Unsatisfiable, plan_range
from pbx_cdr.api.responses import _err
from pbx_cdr.db import engine as db
from pbx_cdr.db.queries import audit
from pbx_cdr.db.queries import recordings as queries
from pbx_cdr.errors import InvalidSignature, NotFound, RangeNotSatisfiable, ServiceUnavailable
from pbx_cdr.signing import verify_recording_request
from pbx_cdr.storage.base import ObjectMissing, StorageError

router = APIRouter(prefix="/api/public/recordings", tags=["recordings"])
log = logging.getLogger(__name__)

PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"}
AUDIO_HEADERS = {
    "Content-Length": {"schema": {"type": "integer"}},
    "Accept-Ranges": {"schema": {"type": "string"}},
    "ETag": {"schema": {"type": "string"}},
    "Content-Disposition": {"schema": {"type": "string"}},
}
AUDIO = {"audio/wav": {"schema": {"type": "string", "format": "binary"}}}


def _detail(method: str, byte_range: str | None) -> str:
    return orjson.dumps({"method": method, "range": byte_range}).decode()


def _audit_download(
    services: Services, row: Any, client: str | None, sent: int, status: int, detail: str
) -> None:
    event = audit.AuditEvent(
        kind=audit.DOWNLOAD,
        account_id=row.account_id,
        at_ts=int(services.clock.now()),
        recording_id=row.id,
        client_addr=client,
        bytes_sent=sent,
        status=status,
        detail=detail,
    )
    with db.write(services.engine) as conn:
        audit.record(conn, event)


DOWNLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The whole recording", "content": AUDIO, "headers": AUDIO_HEADERS},
    206: {
        "description": "The requested byte range",
        "content": AUDIO,
        "headers": {**AUDIO_HEADERS, "Content-Range": {"schema": {"type": "string"}}},
    },
    403: _err("Invalid signature: tampered, expired or malformed link"),
    404: _err("The recording was deleted since the link was made"),
    416: _err("The range starts past the end of the recording"),
    503: _err("The database or the recording storage cannot be reached"),
}


@router.get(
    "/{recording_id}/audio",
    operation_id="download_recording_audio",
    response_class=Response,
    responses=DOWNLOAD_RESPONSES,
    summary="Download a recording through a signed link",
)
@router.head(
    "/{recording_id}/audio",
    operation_id="head_recording_audio",
    response_class=Response,
    responses=DOWNLOAD_RESPONSES,
    summary="Headers of a recording download (size, ETag) through a signed link",
)
async def download_recording(recording_id: str, request: Request, services: ServicesDep) -> Response:
    """``expires`` and ``signature`` come from the link; ``Range`` and ``If-Range`` are honoured."""
    settings = services.settings
    try:
        rid = verify_recording_request(
            settings.public_url,
            recording_id,
            request.scope.get("query_string", b""),
            settings.signing_keys(),
            services.clock.now(),
        )
    except InvalidSignature:
        log.info("refused a recording link with an invalid signature")
        raise InvalidSignature(headers=PRIVATE) from None

    def lookup() -> Any:
        with db.read(services.engine) as conn:
            return queries.get_by_id(conn, rid)

    row = await run_in_threadpool(lookup)
    if row is None:
        raise NotFound("Recording not found.", headers=PRIVATE)
    client = request.client.host if request.client else None
    size = int(row.file_size)
    etag = f'"{row.sha256}"'
    method = request.method
    try:
        byte_range = plan_range(request.headers.get("range"), request.headers.get("if-range"), size, etag)
    except Unsatisfiable:
        await run_in_threadpool(_audit_download, services, row, client, 0, 416, _detail(method, None))
        raise RangeNotSatisfiable(headers={**PRIVATE, "Content-Range": f"bytes */{size}"}) from None
    part = byte_range or ByteRange(0, size)
    status = 206 if byte_range is not None else 200
    headers = {
        **PRIVATE,
        "Content-Length": str(part.length),
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Last-Modified": formatdate(int(row.created_ts), usegmt=True),
        "Content-Disposition": f'attachment; filename="{row.call_uuid}.wav"',
    }
    if byte_range is not None:
        headers["Content-Range"] = byte_range.content_range(size)
    detail = _detail(method, f"{part.start}-{part.end - 1}")
    storage = services.storage
    try:
        if method == "HEAD":
            if await run_in_threadpool(storage.stat, row.storage_key) is None:
                raise ObjectMissing(row.storage_key)
            await run_in_threadpool(_audit_download, services, row, client, 0, status, detail)
            return Response(status_code=status, headers=headers, media_type="audio/wav")
        chunks = await run_in_threadpool(storage.read_range, row.storage_key, part.start, part.end)
    except ObjectMissing:
        raise NotFound("Recording not found.", headers=PRIVATE) from None
    except StorageError as exc:
        log.error("recording download failed in storage: %s", exc)
        raise ServiceUnavailable("The recording storage is not available.", headers=PRIVATE) from None

    async def finished(sent: int) -> None:
        await run_in_threadpool(_audit_download, services, row, client, sent, status, detail)

    return StoredObjectResponse(
        chunks,
        status_code=status,
        headers=headers,
        media_type="audio/wav",
        on_finish=finished,
        local_path=storage.local_path(row.storage_key) if byte_range is None else None,
    )
