"""The HTTP protocol of server processes: uvicorn's httptools protocol with limits on the request head.

uvicorn puts no deadline on a request's head and no bound on its size: a client can hold a
connection open forever by sending a header a byte at a time (slowloris), or grow the server's
memory with an endless URL or header. This protocol refuses both before the application runs,
answering in the contract's error shape and closing the connection:

- no complete request line and headers within ``header_timeout`` seconds -> 408
- a URL over ``max_url_bytes``                                           -> 414
- headers over ``max_header_bytes`` or ``max_header_count``              -> 431
- anything httptools cannot parse                                        -> 400

``pbx-cdr serve`` selects it with ``http="pbx_cdr.api.protocol:GuardedHttpProtocol"``; limits come
from the same ``PBX_CDR_*`` settings as the application's own checks (``api/middleware.py``).
"""

from __future__ import annotations

import asyncio
import sys
from functools import cache
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from pbx_cdr.config import Settings
from pbx_cdr.errors import ApiError, BadRequest, HeadersTooLarge, RequestTimeout, UriTooLong, error_body

LINGER_SECONDS = 5.0  # how long the rest of a refused request is drained before the socket closes


@cache
def _settings() -> Settings:
    return Settings()


class _HeadRefused(Exception):
    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


class GuardedHttpProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = _settings()
        self._head_timeout = settings.header_timeout
        self._max_url = settings.max_url_bytes
        self._max_header_bytes = settings.max_header_bytes
        self._max_header_count = settings.max_header_count
        self._head_timer: asyncio.TimerHandle | None = None
        self._draining = False
        self._url_bytes = 0
        self._header_bytes = 0
        self._header_count = 0

    # The deadline runs from the connection's start, or from a request's first byte, to the end
    # of its headers. Between requests uvicorn's keep-alive timeout applies instead.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._url_bytes = self._header_bytes = self._header_count = 0
        if self._head_timer is None:
            self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._url_bytes += len(url)
        if self._url_bytes > self._max_url:
            raise _HeadRefused(UriTooLong(f"The request URI must not be longer than {self._max_url} bytes."))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._header_bytes += len(name) + len(value)
        if self._header_count > self._max_header_count:
            raise _HeadRefused(
                HeadersTooLarge(f"A request must not have more than {self._max_header_count} headers.")
            )
        if self._header_bytes > self._max_header_bytes:
            raise _HeadRefused(
                HeadersTooLarge(f"The request headers must not exceed {self._max_header_bytes} bytes.")
            )
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        # Called while uvicorn handles the parser's error. httptools reports an exception raised in
        # our callbacks as HttpParserCallbackError, with ours as its context: answer with ours.
        parser_error = sys.exc_info()[1]
        cause = parser_error.__context__ if parser_error is not None else None
        if isinstance(cause, _HeadRefused):
            self._answer_and_close(cause.error)
        else:
            self._answer_and_close(BadRequest("Invalid HTTP request received."))

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(self._head_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # a response is on its way: do not interleave another
            return
        self._answer_and_close(
            RequestTimeout(f"The request headers were not received within {self._head_timeout:g} seconds.")
        )

    def _answer_and_close(self, error: ApiError) -> None:
        body = error_body(error)
        head = [
            STATUS_LINE[error.status_code],
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n",
            b"\r\n",
        ]
        if self.transport.is_closing():
            return
        self.transport.write(b"".join(head) + body)
        # Close gently: a client still sending its oversized request would get a reset, and lose
        # our answer, if we closed with its bytes unread. Half-close, drain a while, then close.
        self._draining = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def data_received(self, data: bytes) -> None:
        if self._draining:
            return  # the rest of a refused request: read and dropped
        super().data_received(data)
