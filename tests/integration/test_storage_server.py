"""Recordings through a real ``pbx-cdr serve`` process: the early 413 and constant memory both ways."""

from __future__ import annotations

import hashlib
import select
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pbx_cdr.cli.accounts import create_account
from pbx_cdr.cli.context import CliContext
from pbx_cdr.cli.tokens import issue_token
from tests.servers import PbxServer, pbx_server

pytestmark = pytest.mark.e2e
UUID = "65569ce0-0183-4f61-a3b2-0e433cfa4031"
MB = 1024 * 1024


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[PbxServer, str, Path]]:
    """A server with a 150 MB recording limit and a write+read token."""
    data = tmp_path / "data"
    ctx = CliContext(overrides={"data_dir": data})
    account = create_account(ctx, "big files", timezone="UTC")
    _, token = issue_token(ctx, account.id, "both", ["cdr:read", "cdr:write"])
    env = {"PBX_CDR_DATA_DIR": str(data), "PBX_CDR_MAX_RECORDING_BYTES": str(150 * MB)}
    with pbx_server(env) as server:
        yield server, token, data


def peak_rss(server: PbxServer) -> int:
    """The server process's peak resident memory so far, in bytes (Linux VmHWM)."""
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def wav_stream(seconds: int) -> tuple[int, Iterator[bytes]]:
    """A PCM 8 kHz 16-bit WAV of ``seconds``, generated 1 MiB at a time; (size, chunks)."""
    data_size = seconds * 16000
    header = (
        b"RIFF"
        + struct.pack("<I", 36 + data_size)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
        + b"data"
        + struct.pack("<I", data_size)
    )

    def chunks() -> Iterator[bytes]:
        yield header
        left, n = data_size, 0
        while left:
            size = min(MB, left)
            yield bytes([n % 251]) * size
            left -= size
            n += 1

    return 44 + data_size, chunks()


def raw_put(server: PbxServer, token: str, head_extra: str, body: bytes) -> bytes:
    """Send a request head and part of a body, then read whatever the server answers."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        head = (
            f"PUT /api/pbx/cdr/{UUID}/recording HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: audio/wav\r\n{head_extra}\r\n"
        )
        sock.sendall(head.encode() + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            piece = sock.recv(65536)
            if not piece:
                break
            answer += piece
        return answer


def test_413_comes_before_the_body_is_read(served: tuple[PbxServer, str, Path]) -> None:
    server, token, data = served
    _, chunks = wav_stream(10)
    first = next(chunks) + next(chunks)[:65536]
    # Declares 500 MB, sends 64 kB, and waits: the answer arrives without the rest being sent.
    answer = raw_put(server, token, f"Content-Length: {500 * MB}\r\n", first)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # Chunked, with no length declared: refused once the limit is passed, not at the end.
    over = 150 * MB + MB
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        head = (
            f"PUT /api/pbx/cdr/{UUID}/recording HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        sock.sendall(head.encode())
        _, chunks = wav_stream(over // 16000 + 600)
        sent = 0
        answer = b""
        try:
            for chunk in chunks:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
                if select.select([sock], [], [], 0)[0]:
                    break  # the server has answered
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # it stopped reading, as it should
        sock.settimeout(10)
        while b"\r\n\r\n" not in answer:
            piece = sock.recv(65536)
            if not piece:
                break
            answer += piece
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < over + 16 * MB  # stopped soon after the limit, long before the 160 MB end
    with httpx.Client(base_url=server.base_url) as http:
        assert http.get("/healthz").status_code == 200
        assert (
            http.get(
                f"/api/pbx/cdr/{UUID}/recording", headers={"Authorization": f"Bearer {token}"}
            ).status_code
            == 404
        )
    leftovers = [p for p in (data / "recordings").rglob("*") if p.is_file()]
    assert leftovers == []  # neither refused upload left a file, temporary or not


def test_big_recording_round_trip_in_constant_memory(served: tuple[PbxServer, str, Path]) -> None:
    server, token, _ = served
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.base_url, headers=auth, timeout=120) as http:
        warm, chunks = wav_stream(1)
        http.put(f"/api/pbx/cdr/{UUID}/recording", content=b"".join(chunks))
        http.get("/healthz")
        before = peak_rss(server)

        size, chunks = wav_stream(9000)  # 2.5 hours of 8 kHz PCM: 144 MB
        sent = hashlib.sha256()

        def hashed() -> Iterator[bytes]:
            for chunk in chunks:
                sent.update(chunk)
                yield chunk

        r = http.put(
            f"/api/pbx/cdr/{UUID}/recording", content=hashed(), headers={"Content-Length": str(size)}
        )
        assert r.status_code == 200, r.text
        assert r.json()["data"]["duration"] == 9000 and r.json()["data"]["file_size"] == size
        assert r.json()["data"]["sha256"] == sent.hexdigest()
        after_upload = peak_rss(server)

        http.post(
            "/api/pbx/cdr",
            json={
                "uuid": UUID,
                "direction": "inbound",
                "caller_number": "0987654321",
                "destination_number": "19006868",
                "start_time": "2026-06-27T08:15:42+00:00",
                "end_time": "2026-06-27T10:45:42+00:00",
            },
        )
        url = http.get(f"/api/pbx/cdr/{UUID}").json()["data"]["recording"]["url"]
        got = hashlib.sha256()
        received = 0
        with httpx.stream("GET", url, timeout=120) as download:
            assert download.status_code == 200
            assert download.headers["content-length"] == str(size)
            for piece in download.iter_raw(MB):
                got.update(piece)
                received += len(piece)
        assert received == size and got.hexdigest() == sent.hexdigest()
        with httpx.stream("GET", url, headers={"Range": f"bytes={size - 10 * MB}-"}) as tail:
            assert tail.status_code == 206
            assert sum(len(p) for p in tail.iter_raw(MB)) == 10 * MB
        after_download = peak_rss(server)
    growth_up = after_upload - before
    growth_down = after_download - after_upload
    print(
        f"peak RSS {before / MB:.1f} MB; +{growth_up / MB:.1f} MB for a {size / MB:.0f} MB upload, "
        f"+{growth_down / MB:.1f} MB for its download"
    )
    assert growth_up < 40 * MB and growth_down < 40 * MB
    del warm
