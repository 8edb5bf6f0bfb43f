"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from pbx_cdr.api.deps import ServicesDep
from pbx_cdr.api.responses import UNAVAILABLE, JSONBytes
from pbx_cdr.api.schemas import Health
from pbx_cdr.db import engine as db
from pbx_cdr.errors import ServiceUnavailable
from pbx_cdr.storage.base import StorageError

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, response_class=JSONBytes)
async def healthz() -> JSONBytes:
    """The process is up."""
    return JSONBytes({"status": "ok"})


@router.get("/readyz", response_model=Health, response_class=JSONBytes, responses={**UNAVAILABLE})
def readyz(services: ServicesDep) -> JSONBytes:
    """The database (and the recording storage, where configured) answer."""
    try:
        with db.read(services.engine) as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        raise ServiceUnavailable("The database is not reachable.") from exc
    try:
        services.storage.check()
    except StorageError as exc:
        raise ServiceUnavailable("The recording storage is not reachable.") from exc
    return JSONBytes({"status": "ready"})
