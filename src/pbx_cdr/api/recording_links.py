"""Minting recording links for the detail route and the redirect, each one written to the audit trail.

A link is ours (HMAC-signed, served by ``/api/public/recordings/{id}/audio``) or, with
``PBX_CDR_RECORDING_LINKS=s3``, the object store's presigned GET; both live for the account's TTL,
at most seven days.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request

from pbx_cdr.api.deps import Principal, Services
from pbx_cdr.db import engine as db
from pbx_cdr.db.queries import audit
from pbx_cdr.db.queries import recordings as queries
from pbx_cdr.domain.call import iso
from pbx_cdr.signing import link_ttl, sign_recording_url

PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def mint_link(services: Services, account_ttl: int, recording: Any) -> tuple[str, int]:
    """A fresh link to a recording's bytes and its lifetime: ours (signed) or the store's (presigned)."""
    ttl = link_ttl(account_ttl)
    settings = services.settings
    if settings.recording_links == "s3":
        url = services.storage.presigned_get(recording.storage_key, ttl, f"{recording.call_uuid}.wav")
        if url is not None:
            return url, ttl
    keys = settings.signing_keys()
    if not keys:
        raise RuntimeError("no signing key configured (PBX_CDR_SECRET_KEY)")
    return sign_recording_url(settings.public_url, recording.id, services.clock.now(), ttl, keys[0])


def audit_link(
    services: Services, principal: Principal, recording: Any, client: str | None, via: str
) -> None:
    event = audit.AuditEvent(
        kind=audit.LINK_MINTED,
        account_id=principal.account.id,
        at_ts=int(services.clock.now()),
        recording_id=recording.id,
        token_id=principal.token_id,
        client_addr=client,
        detail=orjson.dumps({"via": via, "links": services.settings.recording_links}).decode(),
    )
    with db.write(services.engine) as conn:
        audit.record(conn, event)


def recording_object(
    services: Services, principal: Principal, uuid: str, client: str | None
) -> dict[str, Any] | None:
    """The detail route's ``recording``: ``{duration, file_size, recorded_at, url, expires_in_seconds}``."""
    with db.read(services.engine) as conn:
        recording = queries.get_for_call(conn, principal.account.id, uuid)
    if recording is None:
        return None
    url, ttl = mint_link(services, principal.account.recording_url_ttl, recording)
    audit_link(services, principal, recording, client, "detail")
    return {
        "duration": recording.duration,
        "file_size": recording.file_size,
        "recorded_at": iso(recording.recorded_ts),
        "url": url,
        "expires_in_seconds": ttl,
    }
