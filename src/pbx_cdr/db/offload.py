"""Blocking database calls from the event loop: in a worker thread, never more than the pool holds.

Starlette's thread pool runs up to 40 calls at once. Forty requests each holding a pooled connection
overran a pool of 10 (+10 overflow): the rest waited, and overflow connections were closed on their
return and opened again for the next request. For PostgreSQL that is a new server process per
request, and the list route fell to a few hundred requests a second. Here the calls wait for a
connection's worth of room *before* they take a thread, so the pool's own connections are reused.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from sqlalchemy import Engine

T = TypeVar("T")

# Per engine, and per event loop: a limiter belongs to the loop it was made in (a server process
# has one; the test suite's clients make one each).
_limiters: weakref.WeakKeyDictionary[Engine, tuple[asyncio.AbstractEventLoop, CapacityLimiter]] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()


def _limiter(engine: Engine) -> CapacityLimiter:
    loop = asyncio.get_running_loop()
    with _lock:
        found = _limiters.get(engine)
        if found is None or found[0] is not loop:
            size = getattr(engine.pool, "size", None)
            tokens = size() if callable(size) else 10
            found = _limiters[engine] = (loop, CapacityLimiter(max(1, int(tokens))))
        return found[1]


async def run_db(engine: Engine, fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` in a worker thread, at most the pool's size of them at a time per engine."""
    return await anyio.to_thread.run_sync(fn, *args, limiter=_limiter(engine))
