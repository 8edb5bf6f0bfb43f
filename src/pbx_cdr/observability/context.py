"""The request id of the request being served, for every log line written while serving it."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

REQUEST_ID_HEADER = "X-Request-ID"
# A proxy's or client's id is kept when it is short and plain; anything else is replaced.
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")

request_id: ContextVar[str | None] = ContextVar("pbx_cdr_request_id", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept_request_id(incoming: str | None) -> str:
    """The client's ``X-Request-ID`` if it is sane (1-128 of ``A-Za-z0-9._:-``), else a new one."""
    if incoming and _ACCEPTABLE.match(incoming):
        return incoming
    return new_request_id()
