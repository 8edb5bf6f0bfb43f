"""HTTP benchmarks through a real ``pbx-cdr serve --workers 2``, driven by ``wrk`` over loopback.

The list route for a small and for the biggest account runs next to ``/healthz`` on the same server
in the same run; single-call POSTs come from a ``wrk`` Lua script that makes a fresh UUID per
request; 1000-call batches from a few client threads. The server's resident memory (all its
processes) is sampled throughout.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from tests.servers import PbxServer, pbx_server

from pbx_cdr import tokens
from pbx_cdr.db import engine as db
from pbx_cdr.db.engine import make_engine
from pbx_cdr.db.queries import tokens as token_queries

SECRET = secrets.token_hex(32)  # a throwaway signing key for the benchmark server
WRK_CONNECTIONS = 32
WORKERS = 2


def ensure_wrk() -> str:
    """Debian's wrk, installed when missing."""
    found = shutil.which("wrk")
    if found:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env, stdout=subprocess.DEVNULL)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is not installed and apt-get could not install it")
    return found


def issue_token(url: str, account_id: int, scopes: list[str]) -> str:
    engine = make_engine(url)
    token = tokens.new_token()
    with db.write(engine) as conn:
        token_queries.create_token(
            conn,
            account_id=account_id,
            name="bench",
            token_hash=tokens.hash_token(token),
            scopes=scopes,
            now=0,
        )
    engine.dispose()
    return token


class RssSampler:
    """The largest resident set of any one process of the server's tree (the supervisor and workers)."""

    def __init__(self, root_pid: int) -> None:
        self.root = root_pid
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _tree(self) -> list[int]:
        pids, frontier = [self.root], [self.root]
        while frontier:
            pid = frontier.pop()
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            pids += [int(c) for c in children]
            frontier += [int(c) for c in children]
        return pids

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self._tree():
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                found = re.search(r"VmRSS:\s+(\d+) kB", status)
                if found:
                    self.peak_kib = max(self.peak_kib, int(found.group(1)))
            time.sleep(0.2)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def serve(url: str, data_dir: Path) -> Iterator[PbxServer]:
    env = {
        "PBX_CDR_DATABASE_URL": url,
        "PBX_CDR_DATA_DIR": str(data_dir),
        "PBX_CDR_SECRET_KEY": SECRET,
        "PBX_CDR_LOG_LEVEL": "WARNING",
        "PBX_CDR_SQLITE_SYNCHRONOUS": "NORMAL",
    }
    with pbx_server(env, workers=WORKERS) as server:
        yield server


@dataclass
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(
    target: str, seconds: int, headers: dict[str, str] | None = None, script: str | None = None
) -> WrkResult:
    cmd = [ensure_wrk(), "-t2", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run([*cmd, target], check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"\s+(50|99)%\s+([\d.]+\w+)", out))
    p50, p99 = (re.match(r"([\d.]+)(\w+)", lat[k]) for k in ("50", "99"))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return WrkResult(
        rps,
        _ms(*p50.groups()),  # type: ignore[union-attr]
        _ms(*p99.groups()),  # type: ignore[union-attr]
        int(non2xx.group(1)) if non2xx else 0,
    )


# A fresh, valid UUID per request: thread number and a counter, version 4, RFC 4122 variant.
SINGLE_POST_LUA = """
local counter = 0
local thread_id = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end
function request()
  counter = counter + 1
  local uuid = string.format("%08x-%04x-4%03x-8000-%012x", thread_id, math.random(0, 65535),
                             math.random(0, 4095), counter)
  local body = '{"uuid":"' .. uuid .. '","direction":"outbound","caller_number":"1001",' ..
    '"destination_number":"0987654321","start_time":"2026-06-27T08:15:42+00:00",' ..
    '"answer_time":"2026-06-27T08:15:50+00:00","end_time":"2026-06-27T08:16:56+00:00"}'
  return wrk.format("POST", "/api/pbx/cdr", {["Content-Type"] = "application/json",
                                            ["Authorization"] = "Bearer TOKEN"}, body)
end
"""


def single_posts(server: PbxServer, token: str, seconds: int) -> WrkResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(SINGLE_POST_LUA.replace("TOKEN", token))
    try:
        return wrk(server.base_url + "/api/pbx/cdr", seconds, script=handle.name)
    finally:
        os.unlink(handle.name)


def batch_posts(server: PbxServer, token: str, bodies: list[bytes], threads: int = 4) -> tuple[float, int]:
    """Calls per second through 1000-call batches; and how many came back created."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    created = 0

    def post(body: bytes) -> int:
        with httpx.Client(base_url=server.base_url, timeout=120) as client:
            r = client.post("/api/pbx/cdr", content=body, headers=headers)
            r.raise_for_status()
            return int(r.json()["created"])

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        created = sum(pool.map(post, bodies))
    elapsed = time.perf_counter() - started
    return created / elapsed, created


def batch_bodies(calls: list[dict[str, Any]], size: int = 1000) -> list[bytes]:
    return [orjson.dumps({"data": calls[i : i + size]}) for i in range(0, len(calls), size)]
