"""HTTP benchmarks through a real ``pbx-cdr serve --workers 2``, driven by ``wrk`` over loopback.

The list route for a small and for the biggest account runs next to ``/healthz`` on the same server
in the same run (ingest is in ``bench/ingest.py``, downloads in ``bench/download.py``). The server's
resident memory is sampled throughout, per process: the supervisor and each worker, never the
database server or the benchmark's own client.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

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
    """Resident memory of each process of the server's tree: the supervisor and its workers.

    Only the server's own processes: the database server and this benchmark are not in the tree.
    ``peak_kib`` is the largest any one process reached; ``peaks`` says which (``supervisor`` or
    ``worker <pid>``).
    """

    def __init__(self, root_pid: int) -> None:
        self.root = root_pid
        self.peak_kib = 0
        self.peaks: dict[str, int] = {}
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
                    role = "supervisor" if pid == self.root else f"worker {pid}"
                    kib = int(found.group(1))
                    self.peaks[role] = max(self.peaks.get(role, 0), kib)
                    self.peak_kib = max(self.peak_kib, kib)
            time.sleep(0.2)

    def largest(self) -> str:
        """Which process reached the peak, e.g. ``worker 1234``."""
        return max(self.peaks, key=self.peaks.__getitem__) if self.peaks else "-"

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def serve(url: str, data_dir: Path, *, list_cache_mb: int | None = None) -> Iterator[PbxServer]:
    """``pbx-cdr serve`` with 2 workers; ``list_cache_mb=0`` reads every list from the database."""
    env = {
        "PBX_CDR_DATABASE_URL": url,
        "PBX_CDR_DATA_DIR": str(data_dir),
        "PBX_CDR_SECRET_KEY": SECRET,
        "PBX_CDR_LOG_LEVEL": "WARNING",
        # SQLite keeps its default synchronous=FULL: every figure is of durable commits.
    }
    if list_cache_mb is not None:
        env["PBX_CDR_LIST_CACHE_MB"] = str(list_cache_mb)
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
