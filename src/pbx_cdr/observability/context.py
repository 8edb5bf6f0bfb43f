"""The request id of the request being served, for every log line written while serving it."""

from __future__ import annotations

import random
import re
import uuid
from contextvars import ContextVar

REQUEST_ID_HEADER = "X-Request-ID"
# A proxy's or client's id is kept when it is short and plain; anything else is replaced.
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")

request_id: ContextVar[str | None] = ContextVar("pbx_cdr_request_id", default=None)


# A random prefix per process and 64 bits from a generator seeded once: as unique as a uuid4, without
# a getrandom() system call per request, and without telling a client how many requests came before.
_PREFIX = uuid.uuid4().hex[:16]
_bits = random.Random(uuid.uuid4().int).getrandbits


def new_request_id() -> str:
    """32 hex digits: this process's random prefix, then 64 pseudo-random bits."""
    return f"{_PREFIX}{_bits(64):016x}"


def accept_request_id(incoming: str | None) -> str:
    """The client's ``X-Request-ID`` if it is sane (1-128 of ``A-Za-z0-9._:-``), else a new one."""
    if incoming and _ACCEPTABLE.match(incoming):
        return incoming
    return new_request_id()
