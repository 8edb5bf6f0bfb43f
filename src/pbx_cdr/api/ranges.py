"""HTTP byte ranges (RFC 9110 §14) and a response that streams a stored object in constant memory.

One range per request: audio players ask for one at a time. A multi-range, malformed or foreign-unit
``Range`` is ignored (the whole object, 200), as the RFC allows; a range that starts past the end is
416. ``If-Range`` must name the current strong ETag, else the whole object is sent.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Send

_SPEC = re.compile(r"^\s*([0-9]*)\s*-\s*([0-9]*)\s*\Z")
_MAX_DIGITS = 19  # past this a position is larger than any object we hold


class Unsatisfiable(Exception):
    """No byte of the object is in the requested range (416)."""


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # exclusive

    @property
    def length(self) -> int:
        return self.end - self.start

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end - 1}/{size}"


def plan_range(range_header: str | None, if_range: str | None, size: int, etag: str) -> ByteRange | None:
    """The range to send, None for the whole object, or :class:`Unsatisfiable`."""
    if range_header is None:
        return None
    if if_range is not None and if_range.strip() != etag:
        return None
    unit, sep, specs = range_header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    parts = [p for p in specs.split(",") if p.strip()]
    if len(parts) != 1:
        return None
    match = _SPEC.match(parts[0])
    if match is None:
        return None
    first, last = match.groups()
    if first:
        if len(first) > _MAX_DIGITS or int(first) >= size:
            raise Unsatisfiable()
        start = int(first)
        if not last:
            return ByteRange(start, size)
        stop = size - 1 if len(last) > _MAX_DIGITS else int(last)
        if stop < start:
            return None  # an invalid range-spec: ignore the header
        return ByteRange(start, min(stop, size - 1) + 1)
    if not last:
        return None
    suffix = size if len(last) > _MAX_DIGITS else int(last)
    if suffix == 0:
        raise Unsatisfiable()
    return ByteRange(max(0, size - suffix), size)


class StoredObjectResponse(StreamingResponse):
    """Streams chunks of a stored object, one chunk in memory at a time: read on the event loop when
    the storage can tell they are cached (``next_if_cached``, local files), else in a worker thread.

    ``on_finish(bytes_sent)`` runs once when the response ends, completed or cut off by the client.
    With a local file and an ASGI server offering ``http.response.pathsend``, a whole-file response
    is handed to the server to send (sendfile).
    """

    def __init__(
        self,
        chunks: Iterator[bytes],
        *,
        status_code: int,
        headers: dict[str, str],
        media_type: str,
        on_finish: Callable[[int], Awaitable[None]],
        local_path: Path | None = None,
    ) -> None:
        self._chunks = chunks
        self._on_finish = on_finish
        self._local_path = local_path
        self._pathsend = False
        super().__init__(iter(()), status_code=status_code, headers=headers, media_type=media_type)

    async def __call__(self, scope: Any, receive: Any, send: Send) -> None:
        extensions = scope.get("extensions") or {}
        self._pathsend = self._local_path is not None and "http.response.pathsend" in extensions
        await super().__call__(scope, receive, send)

    async def stream_response(self, send: Send) -> None:
        sent = 0
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            if self._pathsend:
                await send({"type": "http.response.pathsend", "path": str(self._local_path)})
                sent = int(self.headers.get("content-length", "0"))
                return
            cached = getattr(self._chunks, "next_if_cached", None)
            while True:
                # What the page cache holds is read right here (a copy of microseconds); anything
                # that would wait for a disk or a network is read in a worker thread.
                chunk = cached() if cached is not None else None
                if chunk is None:
                    chunk = await anyio.to_thread.run_sync(next, self._chunks, None)
                else:
                    # A send returns without yielding while the socket takes the bytes: let the
                    # other requests of this loop in between chunks, as the thread hop did.
                    await asyncio.sleep(0)
                if not chunk:
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                sent += len(chunk)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            with anyio.CancelScope(shield=True):
                close = getattr(self._chunks, "close", None)
                if close is not None:
                    await anyio.to_thread.run_sync(close)
                await self._on_finish(sent)
