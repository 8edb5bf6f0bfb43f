"""Two `pbx-cdr serve` processes on one PostgreSQL and one S3 server, requests mixed between them.

Nothing that must be shared lives in one process: an ingest through one is listed by the other, a
recording uploaded through one is downloaded through the other, a link minted by one is served by the
other, a token revoked through the CLI is refused by both.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import httpx
import pytest

from tests.conftest import cdr, new_pg_database
from tests.servers import PostgresServer, S3Server, pbx_cdr_command, pbx_server

pytestmark = [pytest.mark.postgres, pytest.mark.s3, pytest.mark.e2e]
U = "65569ce0-0183-4f61-a3b2-0e433cfa4031"
BUCKET = "pbx-cdr-multiprocess"


def wav_bytes(seconds: float = 1.0, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(int(seconds * rate) * 2))
    return buffer.getvalue()


@pytest.fixture
def shared_env(pg: PostgresServer, s3: S3Server) -> dict[str, str]:
    creds = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        **{"aws_access_key_id": "test", "aws_secret_access_key": "test", "region_name": "us-east-1"},
    ).create_bucket(Bucket=BUCKET)
    return {
        **creds,
        "PBX_CDR_DATABASE_URL": new_pg_database(pg).replace("postgresql+psycopg://", "postgresql://"),
        "PBX_CDR_STORAGE_URL": f"s3://{BUCKET}/recordings",
        "PBX_CDR_S3_ENDPOINT_URL": s3.endpoint,
        "PBX_CDR_S3_REGION": "us-east-1",
        "PBX_CDR_SECRET_KEY": "shared-secret-for-both-processes",
        "PBX_CDR_PUBLIC_URL": "http://cdr.example.test",
    }


def cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        pbx_cdr_command(*args), env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_requests_mixed_between_two_processes(shared_env: dict[str, str], tmp_path: Path) -> None:
    # Each process gets its own data folder: nothing may be shared through local disk.
    env_a = {**shared_env, "PBX_CDR_DATA_DIR": str(tmp_path / "a")}
    env_b = {**shared_env, "PBX_CDR_DATA_DIR": str(tmp_path / "b")}
    account = json.loads(cli(env_a, "accounts", "create", "shared", "--json"))["id"]
    token_info = json.loads(
        cli(env_a, "tokens", "create", str(account), "--scope", "cdr:read", "--scope", "cdr:write", "--json")
    )
    auth = {"Authorization": f"Bearer {token_info['token']}"}
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    call = cdr(
        U,
        start_time=start.isoformat(),
        answer_time=(start + timedelta(seconds=3)).isoformat(),
        end_time=(start + timedelta(seconds=63)).isoformat(),
    )
    audio = wav_bytes(2.0)

    with pbx_server(env_a) as a, pbx_server(env_b) as b:
        http_a = httpx.Client(base_url=a.base_url, headers=auth, timeout=20)
        http_b = httpx.Client(base_url=b.base_url, headers=auth, timeout=20)

        # Ingest through A, list and detail through B.
        assert http_a.post("/api/pbx/cdr", json=call).status_code == 201
        assert http_b.post("/api/pbx/cdr", json=call).status_code == 200  # the retry lands on B: no duplicate
        page = http_b.get("/api/pbx/cdr").json()
        assert page["total"] == 1 and page["data"][0]["uuid"] == U

        # Upload through B, detail and link minted by A, bytes served by B.
        r = http_b.put(f"/api/pbx/cdr/{U}/recording", content=audio, headers={"Content-Type": "audio/wav"})
        assert r.status_code in (200, 201), r.text
        detail = http_a.get(f"/api/pbx/cdr/{U}").json()["data"]
        assert detail["recording_available"] is True
        link = urlsplit(detail["recording"]["url"])
        assert link.netloc == "cdr.example.test"
        download = httpx.get(f"{b.base_url}{link.path}?{link.query}", timeout=20)
        assert download.status_code == 200 and download.content == audio
        redirect = http_b.get(f"/api/pbx/cdr/{U}/recording")
        assert redirect.status_code == 302
        moved = urlsplit(redirect.headers["location"])
        ranged = httpx.get(
            f"{a.base_url}{moved.path}?{moved.query}", headers={"Range": "bytes=0-43"}, timeout=20
        )
        assert ranged.status_code == 206 and ranged.content == audio[:44]

        # A revocation made through the CLI is seen by both processes at once.
        cli(env_b, "tokens", "revoke", str(token_info["id"]))
        assert http_a.get("/api/pbx/cdr").status_code == 401
        assert http_b.get("/api/pbx/cdr").status_code == 401


def test_serve_with_two_workers(shared_env: dict[str, str], tmp_path: Path) -> None:
    env = {**shared_env, "PBX_CDR_DATA_DIR": str(tmp_path / "w")}
    account = json.loads(cli(env, "accounts", "create", "workers", "--json"))["id"]
    token = json.loads(cli(env, "tokens", "create", str(account), "--scope", "cdr:read", "--json"))["token"]
    with pbx_server(env, workers=2) as server:
        with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}) as http:
            statuses = {http.get("/api/pbx/cdr").status_code for _ in range(20)}
        assert statuses == {200}
