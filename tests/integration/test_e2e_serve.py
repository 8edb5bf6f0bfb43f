"""End to end: `pbx-cdr serve` as a real process on a free port, HTTP over a socket."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import cdr
from tests.servers import pbx_cdr_command, pbx_server

pytestmark = pytest.mark.e2e
U = "65569ce0-0183-4f61-a3b2-0e433cfa4031"


def cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        pbx_cdr_command(*args), env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_serve_ingest_list_detail_over_http(tmp_path: Path) -> None:
    env = {"PBX_CDR_DATA_DIR": str(tmp_path)}
    account = json.loads(cli(env, "accounts", "create", "e2e", "--json"))["id"]
    token = json.loads(
        cli(env, "tokens", "create", str(account), "--scope", "cdr:read", "--scope", "cdr:write", "--json")
    )["token"]
    auth = {"Authorization": f"Bearer {token}"}
    with pbx_server(env) as server, httpx.Client(base_url=server.base_url, headers=auth, timeout=10) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/readyz").status_code == 200
        # A recent call, so it falls in the default window of the server's real clock.
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        call = cdr(
            U,
            start_time=start.isoformat(),
            answer_time=(start + timedelta(seconds=5)).isoformat(),
            end_time=(start + timedelta(seconds=60)).isoformat(),
        )
        r = http.post("/api/pbx/cdr", json=call)
        assert r.status_code == 201
        assert http.post("/api/pbx/cdr", json=call).status_code == 200  # a retry changes nothing
        page = http.get("/api/pbx/cdr", params={"phone": "+84987654321"}).json()
        assert page["total"] == 1 and page["data"][0]["uuid"] == U
        detail = http.get(f"/api/pbx/cdr/{U}").json()["data"]
        assert detail["billsec"] == 55 and detail["recording"] is None
        assert http.get("/api/pbx/cdr", headers={"Authorization": "Bearer nope"}).status_code == 401
        spec = http.get("/openapi.json").json()
        assert "/api/pbx/cdr" in spec["paths"]


def test_python_dash_m_is_the_same_command() -> None:
    out = subprocess.run(pbx_cdr_command("--help"), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for name in ("migrate", "accounts", "tokens", "serve", "demo"):
        assert name in out.stdout
