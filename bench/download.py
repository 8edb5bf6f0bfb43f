"""Download benchmark: a 50 MB recording through the signed public route, next to reading the file."""

from __future__ import annotations

import re
import struct
import subprocess
import time
import uuid as uuidlib
from pathlib import Path

import httpx
from tests.servers import PbxServer

from bench.http import WRK_CONNECTIONS, ensure_wrk

SIZE = 50 * 1024 * 1024


def write_wav(path: Path, size: int = SIZE) -> None:
    """A valid PCM WAV (8 kHz, 16-bit, mono) of ``size`` bytes: a quiet ramp, not zeros."""
    data_len = size - 44
    header = (
        b"RIFF"
        + struct.pack("<I", size - 8)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
    )
    header += b"data" + struct.pack("<I", data_len)
    block = bytes(range(256)) * 4096
    with path.open("wb") as handle:
        handle.write(header)
        left = data_len
        while left:
            handle.write(block[: min(left, len(block))])
            left -= min(left, len(block))


def _gbps(text: str) -> float:
    value, unit = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"B": 1e-9, "KB": 1024 / 1e9, "MB": 1024**2 / 1e9, "GB": 1024**3 / 1e9}[unit]


def bench_download(
    server: PbxServer, writer: str, reader: str, work: Path, seconds: int
) -> tuple[float, float]:
    """(GB/s through the signed route, GB/s reading the same file with cat), same run."""
    wav = work / "bench-50mb.wav"
    write_wav(wav)
    call = str(uuidlib.uuid4())
    call_json = {
        "uuid": call,
        "direction": "inbound",
        "caller_number": "0987654321",
        "destination_number": "19006868",
        "start_time": "2026-06-27T08:15:42+00:00",
        "answer_time": "2026-06-27T08:15:50+00:00",
        "end_time": "2026-06-27T09:10:56+00:00",
    }
    with httpx.Client(base_url=server.base_url, timeout=120) as client, wav.open("rb") as body:
        client.post(
            "/api/pbx/cdr", json=call_json, headers={"Authorization": f"Bearer {writer}"}
        ).raise_for_status()
        r = client.put(
            f"/api/pbx/cdr/{call}/recording",
            content=body.read(),
            headers={"Authorization": f"Bearer {writer}", "Content-Type": "audio/wav"},
        )
        r.raise_for_status()
        link = client.get(f"/api/pbx/cdr/{call}/recording", headers={"Authorization": f"Bearer {reader}"})
        if link.status_code != 302:
            raise RuntimeError(f"recording redirect answered {link.status_code}: {link.text[:200]}")
        url = link.headers["location"]
        assert client.get(url).content[:4] == b"RIFF"
    out = subprocess.run(
        [ensure_wrk(), "-t2", f"-c{min(4, WRK_CONNECTIONS)}", f"-d{seconds}s", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    route = _gbps(out)
    subprocess.run(["cat", str(wav)], check=True, stdout=subprocess.DEVNULL)  # warm the page cache
    rounds, started = 20, time.perf_counter()
    for _ in range(rounds):
        subprocess.run(["cat", str(wav)], check=True, stdout=subprocess.DEVNULL)
    cat = rounds * SIZE / (time.perf_counter() - started) / 1e9
    return route, cat
