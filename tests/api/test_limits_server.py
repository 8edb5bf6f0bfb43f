"""Limits that only a real server process can show: slow clients, oversized heads at the socket,
and constant memory while serving a huge recording and a flood of small Range requests.

RSS is read from /proc/<pid>/status of the `pbx-cdr serve` process (one worker: it serves in-process).
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from pbx_cdr.cli.accounts import create_account
from pbx_cdr.cli.context import CliContext
from pbx_cdr.cli.tokens import issue_token
from tests.conftest import cdr
from tests.servers import PbxServer, pbx_server

pytestmark = pytest.mark.e2e
U = "65569ce0-0183-4f61-a3b2-0e433cfa4031"
HUGE = 256 * 1024 * 1024
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PbxServer, str]]:
    data = tmp_path_factory.mktemp("limits")
    ctx = CliContext(overrides={"data_dir": data})
    account = create_account(ctx, "limits", rate_limit_per_minute=0)
    _, token = issue_token(ctx, account.id, "rw", ["cdr:read", "cdr:write"])
    ctx.engine().dispose()
    env = {
        "PBX_CDR_DATA_DIR": str(data),
        "PBX_CDR_HEADER_TIMEOUT": "1",
        "PBX_CDR_BODY_IDLE_TIMEOUT": "1",
        "PBX_CDR_MAX_RECORDING_BYTES": str(HUGE + MiB),
    }
    with pbx_server(env) as server:
        yield server, token


def exchange(port: int, data: bytes, *, wait: float = 20.0) -> bytes:
    """Send ``data``, then read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:

        def send() -> None:
            with contextlib.suppress(OSError):  # the server may stop reading once it has refused
                sock.sendall(data)

        sender = threading.Thread(target=send)
        sender.start()
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        sender.join()
        return received


def status_and_body(raw: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower()
    return status, orjson.loads(body)


def test_a_head_sent_too_slowly_is_408_and_the_connection_closed(served: tuple[PbxServer, str]) -> None:
    server, _ = served
    status, body = status_and_body(exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "))
    assert status == 408
    assert "headers were not received within 1 seconds" in str(body["message"])


def test_a_silent_connection_is_closed(served: tuple[PbxServer, str]) -> None:
    server, _ = served
    status, _ = status_and_body(exchange(server.port, b""))
    assert status == 408


def test_a_stalled_body_is_408(served: tuple[PbxServer, str]) -> None:
    server, token = served
    head = (
        f"POST /api/pbx/cdr HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    ).encode()
    status, body = status_and_body(exchange(server.port, head + b'{"uuid": '))
    assert status == 408
    assert "stalled" in str(body["message"])


def test_an_endless_url_is_414_at_the_socket(served: tuple[PbxServer, str]) -> None:
    server, _ = served
    request = b"GET /healthz?" + b"a" * (2 * MiB) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    status, body = status_and_body(exchange(server.port, request))
    assert status == 414 and body == {"message": "The request URI must not be longer than 4096 bytes."}


def test_endless_headers_are_431_at_the_socket(served: tuple[PbxServer, str]) -> None:
    server, _ = served
    filler = b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 1000) for i in range(2000))
    status, _ = status_and_body(
        exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + filler + b"\r\n")
    )
    assert status == 431


def test_garbage_is_400_in_the_error_shape(served: tuple[PbxServer, str]) -> None:
    server, _ = served
    status, body = status_and_body(exchange(server.port, b"\x16\x03\x01 not http at all\r\n\r\n"))
    assert status == 400 and body == {"message": "Invalid HTTP request received."}


def test_the_server_still_serves_after_all_that(served: tuple[PbxServer, str]) -> None:
    server, _ = served
    assert httpx.get(server.base_url + "/healthz", timeout=10).status_code == 200


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def wav_stream(data_bytes: int) -> Iterator[bytes]:
    """A PCM WAV (8 kHz, 16-bit mono) of ``data_bytes`` of audio, produced a chunk at a time."""
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    yield b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
    yield b"data" + struct.pack("<I", data_bytes)
    chunk = bytes(range(256)) * 4096  # 1 MiB
    left = data_bytes
    while left:
        yield chunk[: min(left, len(chunk))]
        left -= min(left, len(chunk))


def test_a_huge_download_and_a_range_flood_stay_in_constant_memory(served: tuple[PbxServer, str]) -> None:
    server, token = served
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.base_url, headers=auth, timeout=300) as http:
        assert http.post("/api/pbx/cdr", json=cdr(U)).status_code in (200, 201)
        up = http.put(
            f"/api/pbx/cdr/{U}/recording", content=wav_stream(HUGE), headers={"Content-Type": "audio/wav"}
        )
        assert up.status_code in (200, 201), up.text
        link = urlsplit(http.get(f"/api/pbx/cdr/{U}").json()["data"]["recording"]["url"])
    url = f"{server.base_url}{link.path}?{link.query}"
    total = HUGE + 44
    with httpx.Client(timeout=300) as public:
        assert public.get(url, headers={"Range": "bytes=0-1023"}).status_code == 206  # warm up
        baseline = rss_bytes(server.proc.pid)
        peak = baseline
        received = 0
        with public.stream("GET", url) as r:
            assert r.status_code == 200 and int(r.headers["content-length"]) == total
            for piece in r.iter_bytes(MiB):
                received += len(piece)
                if received % (16 * MiB) < len(piece):
                    peak = max(peak, rss_bytes(server.proc.pid))
        assert received == total
    print(f"download: baseline RSS {baseline / MiB:.0f} MiB, peak {peak / MiB:.0f} MiB")
    assert peak - baseline < 64 * MiB, f"RSS grew by {(peak - baseline) / MiB:.0f} MiB for a 256 MiB file"

    statuses: list[int] = []
    lock = threading.Lock()

    def flood(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(timeout=60) as c:
            for _ in range(150):
                start = rng.randrange(0, total - 4096)
                r = c.get(url, headers={"Range": f"bytes={start}-{start + 4095}"})
                with lock:
                    statuses.append(r.status_code if len(r.content) == 4096 else -1)

    threads = [threading.Thread(target=flood, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        peak = max(peak, rss_bytes(server.proc.pid))
        threads[0].join(0.05)
    for t in threads:
        t.join()
    assert statuses == [206] * (16 * 150)
    print(f"range flood: peak RSS {peak / MiB:.0f} MiB")
    assert peak - baseline < 64 * MiB, f"RSS grew by {(peak - baseline) / MiB:.0f} MiB under the Range flood"
