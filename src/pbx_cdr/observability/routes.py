"""``GET /metrics``: Prometheus text format (left out of the OpenAPI document: it is not the API)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from pbx_cdr.observability.metrics import exposition

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
def prometheus_metrics() -> Response:
    body, content_type = exposition()
    return Response(content=body, media_type=content_type, headers={"Cache-Control": "no-store"})
