"""Many lists in flight at once on one server process over PostgreSQL, whose reads are awaited on
the event loop over a pool of connections (``db/async_pg.py``): every answer is its own request's, for
its own account, never another's, with refusals and different pages mixed in."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import cdr, new_pg_database
from tests.servers import PostgresServer, pbx_cdr_command, pbx_server

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]
ACCOUNTS = 4
REQUESTS = 240


def cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        pbx_cdr_command(*args), env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_concurrent_lists_each_get_their_own_accounts_page(pg: PostgresServer, tmp_path: Path) -> None:
    env = {
        "PBX_CDR_DATABASE_URL": new_pg_database(pg),
        "PBX_CDR_DATA_DIR": str(tmp_path),
        "PBX_CDR_SECRET_KEY": "concurrent-lists",
        "PBX_CDR_LIST_CACHE_MB": "0",  # every list read from the database
        "PBX_CDR_TOKEN_CACHE_SECONDS": "0",  # and every token looked up: two reads a request
    }
    accounts: list[tuple[str, set[str]]] = []  # (token, the account's call uuids)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    for n in range(ACCOUNTS):
        account = json.loads(cli(env, "accounts", "create", f"tenant-{n}", "--json"))["id"]
        scopes = ("--scope", "cdr:read", "--scope", "cdr:write")
        token = json.loads(cli(env, "tokens", "create", str(account), *scopes, "--json"))["token"]
        accounts.append((token, {str(uuid.uuid4()) for _ in range(5 + 7 * n)}))

    async def list_page(client: httpx.AsyncClient, i: int) -> tuple[int, Any, int]:
        which = i % (ACCOUNTS + 1)
        token = accounts[which][0] if which < ACCOUNTS else "pbx_" + "x" * 43  # no such token
        per_page = 1 + i % 9
        page = 1 + i % 3
        answer = await client.get(
            "/api/pbx/cdr",
            params={"per_page": per_page, "page": page},
            headers={"Authorization": f"Bearer {token}"},
        )
        return which, answer, per_page

    async def run(base_url: str) -> list[tuple[int, Any, int]]:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:
            for token, uuids in accounts:
                calls = [
                    cdr(
                        u,
                        start_time=(start + timedelta(seconds=k)).isoformat(),
                        answer_time=None,
                        end_time=(start + timedelta(seconds=k + 30)).isoformat(),
                    )
                    for k, u in enumerate(sorted(uuids))
                ]
                posted = await client.post(
                    "/api/pbx/cdr", json={"data": calls}, headers={"Authorization": f"Bearer {token}"}
                )
                assert posted.status_code == 201, posted.text
            return await asyncio.gather(*(list_page(client, i) for i in range(REQUESTS)))

    with pbx_server(env) as server:
        answers = asyncio.run(run(server.base_url))

    for which, answer, per_page in answers:
        if which == ACCOUNTS:
            assert answer.status_code == 401, answer.text
            continue
        assert answer.status_code == 200, answer.text
        body = answer.json()
        uuids = accounts[which][1]
        assert body["total"] == len(uuids)
        got = [item["uuid"] for item in body["data"]]
        assert set(got) <= uuids  # this account's calls, and no other's
        first = (body["current_page"] - 1) * per_page
        assert len(got) == max(0, min(per_page, len(uuids) - first))
