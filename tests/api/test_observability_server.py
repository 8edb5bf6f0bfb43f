"""`pbx-cdr serve --workers 2` with JSON logs: metrics summed across workers, logs free of secrets."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from pbx_cdr.cli.accounts import create_account
from pbx_cdr.cli.context import CliContext
from pbx_cdr.cli.tokens import issue_token
from pbx_cdr.demo.audio import wav_bytes
from tests.conftest import cdr
from tests.servers import free_port, pbx_cdr_command

pytestmark = pytest.mark.e2e
U = "65569ce0-0183-4f61-a3b2-0e433cfa4031"
CALLER, DESTINATION = "0912345678", "+84987654321"


@dataclass
class Served:
    base_url: str
    stdout: Path
    stderr: Path
    data: Path


@contextmanager
def serve_logged(data: Path, workers: int) -> Iterator[Served]:
    """Like tests.servers.pbx_server, but keeping stdout and stderr in files to read afterwards."""
    port = free_port()
    out, err = data / "stdout.log", data / "stderr.log"
    env = {**os.environ, "PBX_CDR_DATA_DIR": str(data), "PBX_CDR_LOG_JSON": "true"}
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            pbx_cdr_command("serve", "--port", str(port), "--workers", str(workers)),
            env=env,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, err.read_text()
                try:
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "pbx-cdr serve did not come up"
                time.sleep(0.1)
            yield Served(base, out, err, data)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def healthz_count(scrape: str) -> float:
    total = 0.0
    for line in scrape.splitlines():
        if line.startswith("pbx_cdr_http_requests_total{") and 'route="/healthz"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_and_logs_with_two_workers(tmp_path: Path) -> None:
    ctx = CliContext(overrides={"data_dir": tmp_path})
    account = create_account(ctx, "obs", rate_limit_per_minute=0)
    _, token = issue_token(ctx, account.id, "rw", ["cdr:read", "cdr:write"])
    ctx.engine().dispose()
    auth = {"Authorization": f"Bearer {token}"}
    with serve_logged(tmp_path, workers=2) as served:
        for _ in range(40):  # a connection each, so both workers take some
            assert httpx.get(served.base_url + "/healthz", headers={"Connection": "close"}).status_code == 200
        with httpx.Client(base_url=served.base_url, headers=auth, timeout=30) as http:
            assert (
                http.post(
                    "/api/pbx/cdr", json=cdr(U, caller_number=CALLER, destination_number=DESTINATION)
                ).status_code
                == 201
            )
            put = http.put(
                f"/api/pbx/cdr/{U}/recording",
                content=wav_bytes([0] * 8000),
                headers={"Content-Type": "audio/wav"},
            )
            assert put.status_code == 201
            link = urlsplit(http.get(f"/api/pbx/cdr/{U}").json()["data"]["recording"]["url"])
            signature = link.query.split("signature=")[1]
            assert http.get(f"{link.path}?{link.query}").status_code == 200
            assert http.get(f"/api/pbx/cdr?phone={DESTINATION}&signature={signature}").status_code == 200
            assert http.get("/api/pbx/cdr", headers={"X-Request-ID": "trace-me-1"}).status_code == 200
        # Whichever worker answers the scrape, it reports the server's whole count.
        scrapes = [
            httpx.get(served.base_url + "/metrics", headers={"Connection": "close"}).text for _ in range(8)
        ]
        # 40 probes plus the readiness polls made while the server started (at least one).
        counts = {healthz_count(s) for s in scrapes}
        assert len(counts) == 1 and counts.pop() >= 41
        pids = {p.name.split("_")[-1] for p in (served.data / "metrics").glob("counter_*.db")}
        assert len(pids) >= 2
    logged = served.stdout.read_text() + served.stderr.read_text()
    for secret in (token, signature, CALLER, DESTINATION, DESTINATION.lstrip("+"), "987654321"):
        assert secret not in logged, f"{secret!r} leaked into the server's output"
        assert all(secret not in s for s in scrapes)
    access = [orjson.loads(line) for line in served.stdout.read_text().splitlines() if line.startswith("{")]
    assert access and all(a["logger"] == "pbx_cdr.access" for a in access)
    traced = [a for a in access if a["request_id"] == "trace-me-1"]
    assert len(traced) == 1 and traced[0]["route"] == "/api/pbx/cdr" and traced[0]["status"] == 200
    assert all(len(a["request_id"]) >= 1 and a["request_id"] != "-" for a in access)
    assert any(a["path"].startswith("/api/pbx/cdr?phone=********321&signature=[redacted]") for a in access)
    for line in served.stderr.read_text().splitlines():
        if line.startswith("{"):
            assert set(orjson.loads(line)) >= {"time", "level", "logger", "message", "request_id"}
