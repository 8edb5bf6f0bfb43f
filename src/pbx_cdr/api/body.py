"""Reading request bodies with a cap, so a huge body is refused (413) before it is read to the end."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from starlette.requests import ClientDisconnect

from pbx_cdr.errors import BadRequest, PayloadTooLarge


async def read_capped(request: Request, limit: int) -> bytes:
    """The whole body, or 413 as soon as it grows past ``limit`` (or declares it will).

    Reads the ASGI messages itself: the body of a POST nearly always arrives in one message, and
    Starlette's ``stream()`` generator cost four times as much as that one ``receive``.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request body must not be larger than {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The request body must not be larger than {limit} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise BadRequest("The request body is empty.")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc.msg}.") from exc
