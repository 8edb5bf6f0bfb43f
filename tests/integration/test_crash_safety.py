"""Crash safety: SIGKILL `pbx-cdr serve` in the middle of a stream of ingest posts and recording
uploads, restart it on the same data, and find every acknowledged call and recording intact and
nothing half-written. Then eight clients post one call at once: exactly one call is made.

Both on SQLite (the data dir) and on the real PostgreSQL the test run starts.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from pbx_cdr.cli.accounts import create_account
from pbx_cdr.cli.context import CliContext
from pbx_cdr.cli.tokens import issue_token
from pbx_cdr.demo.audio import wav_bytes
from tests.conftest import cdr, new_pg_database
from tests.servers import pbx_server

pytestmark = pytest.mark.e2e
WRITERS = 4
KILL_AFTER = 120  # acknowledged writes before the kill


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    values = {"PBX_CDR_DATA_DIR": str(tmp_path / "data")}
    if request.param == "postgresql":
        values["PBX_CDR_DATABASE_URL"] = new_pg_database(request.getfixturevalue("pg"))
    return values


@pytest.fixture
def token(env: dict[str, str]) -> str:
    ctx = CliContext(
        overrides={"data_dir": Path(env["PBX_CDR_DATA_DIR"]), "database_url": env.get("PBX_CDR_DATABASE_URL")}
    )
    account = create_account(ctx, "crash", rate_limit_per_minute=0)
    _, plain = issue_token(ctx, account.id, "rw", ["cdr:read", "cdr:write"])
    ctx.engine().dispose()
    return plain


def recent_call(call_uuid: str, n: int) -> dict[str, Any]:
    """A call in the last day, so the server's real clock lists it by default."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2, seconds=n)
    return cdr(
        call_uuid,
        caller_number=f"09{n:08d}",
        start_time=start.isoformat(),
        answer_time=(start + timedelta(seconds=3)).isoformat(),
        end_time=(start + timedelta(seconds=30 + n % 50)).isoformat(),
    )


@dataclass
class Ledger:
    """What the server acknowledged, and everything that was sent (acknowledged or not)."""

    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    recordings: dict[str, str] = field(default_factory=dict)  # uuid -> sha256 of acknowledged bytes
    sent_calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    sent_recordings: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def acknowledged(self) -> int:
        with self.lock:
            return len(self.calls) + len(self.recordings)


def stream_writes(
    base_url: str, auth: dict[str, str], ledger: Ledger, worker: int, stop: threading.Event
) -> None:
    n = 0
    with httpx.Client(base_url=base_url, headers=auth, timeout=30) as http:
        while not stop.is_set():
            n += 1
            call_uuid = str(uuid.uuid4())
            body = recent_call(call_uuid, worker * 10_000 + n)
            audio = wav_bytes([(i * 37 + n) % 2000 - 1000 for i in range(8000 + 160 * (n % 25))])
            try:
                if n % 2:  # recordings arrive before or after their call
                    order = [("call", body), ("recording", audio)]
                else:
                    order = [("recording", audio), ("call", body)]
                for kind, payload in order:
                    if kind == "call":
                        with ledger.lock:
                            ledger.sent_calls[call_uuid] = payload
                        r = http.post("/api/pbx/cdr", json=payload)
                        if r.status_code in (200, 201):
                            with ledger.lock:
                                ledger.calls[call_uuid] = payload
                    else:
                        digest = hashlib.sha256(payload).hexdigest()  # type: ignore[arg-type]
                        with ledger.lock:
                            ledger.sent_recordings[call_uuid] = digest
                        r = http.put(
                            f"/api/pbx/cdr/{call_uuid}/recording",
                            content=payload,  # type: ignore[arg-type]
                            headers={"Content-Type": "audio/wav"},
                        )
                        if r.status_code in (200, 201):
                            with ledger.lock:
                                ledger.recordings[call_uuid] = digest
            except httpx.HTTPError:
                return  # the server is gone


def all_listed(http: httpx.Client) -> Iterator[dict[str, Any]]:
    page = 1
    while True:
        body = http.get("/api/pbx/cdr", params={"per_page": 200, "page": page}).json()
        yield from body["data"]
        if page >= body["last_page"]:
            return
        page += 1


def test_sigkill_mid_stream_loses_nothing_acknowledged(env: dict[str, str], token: str) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    ledger = Ledger()
    stop = threading.Event()
    with pbx_server(env) as server:
        writers = [
            threading.Thread(target=stream_writes, args=(server.base_url, auth, ledger, w, stop))
            for w in range(WRITERS)
        ]
        for t in writers:
            t.start()
        while ledger.acknowledged() < KILL_AFTER and any(t.is_alive() for t in writers):
            writers[0].join(0.01)
        os.killpg(server.proc.pid, signal.SIGKILL)  # mid-stream: requests are in flight
        server.proc.wait()
        stop.set()
        for t in writers:
            t.join()
    assert len(ledger.calls) > 10 and len(ledger.recordings) > 10

    with pbx_server(env) as server, httpx.Client(base_url=server.base_url, headers=auth, timeout=30) as http:
        listed = {item["uuid"]: item for item in all_listed(http)}
        # Every acknowledged call is there, with what was sent.
        for call_uuid, sent in ledger.calls.items():
            assert call_uuid in listed, f"acknowledged call {call_uuid} lost"
            assert listed[call_uuid]["caller_number"] == sent["caller_number"]
            assert listed[call_uuid]["start_time"] == sent["start_time"]
        # Nothing listed that was not sent whole: every row is one of ours, complete.
        for call_uuid, item in listed.items():
            sent = ledger.sent_calls[call_uuid]
            assert (item["caller_number"], item["end_time"]) == (sent["caller_number"], sent["end_time"])
        # Every acknowledged recording is there and byte-identical; every visible one is whole.
        has_recording = {u for u, item in listed.items() if item["recording_available"]}
        assert {u for u in ledger.recordings if u in listed} <= has_recording
        for call_uuid in has_recording:
            detail = http.get(f"/api/pbx/cdr/{call_uuid}").json()["data"]["recording"]
            link = urlsplit(detail["url"])
            audio = http.get(f"{link.path}?{link.query}", headers={"Authorization": ""})
            assert audio.status_code == 200
            assert hashlib.sha256(audio.content).hexdigest() == ledger.sent_recordings[call_uuid]
            assert detail["file_size"] == len(audio.content)
        # Acknowledged recordings whose call never arrived are kept, waiting for it.
        for call_uuid, digest in ledger.recordings.items():
            if call_uuid not in listed:
                r = http.post(
                    "/api/pbx/cdr", json=ledger.sent_calls.get(call_uuid) or recent_call(call_uuid, 1)
                )
                assert r.status_code == 201
                detail = http.get(f"/api/pbx/cdr/{call_uuid}").json()["data"]
                assert detail["recording_available"] is True, f"acknowledged recording {call_uuid} lost"
                link = urlsplit(detail["recording"]["url"])
                audio = http.get(f"{link.path}?{link.query}")
                assert hashlib.sha256(audio.content).hexdigest() == digest


def post_at_once(base_url: str, auth: dict[str, str], body: dict[str, Any], clients: int) -> list[int]:
    """``clients`` connections post ``body`` together (released by one barrier); their statuses."""
    barrier = threading.Barrier(clients)
    statuses: list[int] = []
    lock = threading.Lock()

    def post() -> None:
        with httpx.Client(base_url=base_url, headers=auth, timeout=30) as http:
            barrier.wait()
            status = http.post("/api/pbx/cdr", json=body).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=post) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def test_eight_clients_posting_one_call_make_one_call(env: dict[str, str], token: str) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    with pbx_server(env, workers=2) as server:
        for round_ in range(5):
            call_uuid = str(uuid.uuid4())
            body = recent_call(call_uuid, round_)
            statuses = post_at_once(server.base_url, auth, body, clients=8)
            assert sorted(statuses) == [200] * 7 + [201]
        with httpx.Client(base_url=server.base_url, headers=auth, timeout=30) as http:
            page = http.get("/api/pbx/cdr", params={"per_page": 200}).json()
            assert page["total"] == 5 == len(page["data"])
            assert len({item["uuid"] for item in page["data"]}) == 5
