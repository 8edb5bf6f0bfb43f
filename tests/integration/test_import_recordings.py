"""``pbx-cdr import recordings`` and ``pbx-cdr audit list`` as operators run them (real processes)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from pbx_cdr.cli.accounts import create_account
from pbx_cdr.cli.context import CliContext
from pbx_cdr.db import engine as db
from pbx_cdr.db.queries import calls as call_queries
from pbx_cdr.db.tables import calls, recordings
from pbx_cdr.demo.audio import demo_recording
from pbx_cdr.ingest.json_cdr import parse_payload
from tests.conftest import cdr
from tests.servers import pbx_cdr_command

A = "11111111-1111-4111-8111-111111111111"
B = "22222222-2222-4222-8222-222222222222"
C = "33333333-3333-4333-8333-333333333333"
UNMATCHED = "44444444-4444-4444-8444-444444444444"
BROKEN = "55555555-5555-4555-8555-555555555555"
LATE = "66666666-6666-4666-8666-666666666666"


def run(data_dir: Path, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PBX_CDR_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    env.pop("PBX_CDR_DATABASE_URL", None)
    env.pop("PBX_CDR_STORAGE_URL", None)
    result = subprocess.run(pbx_cdr_command(*args), env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == code, result.stdout + result.stderr
    return result


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, int, CliContext, Path]:
    """An account with calls A, B, C and a FreeSWITCH-like recordings folder."""
    data = tmp_path / "data"
    ctx = CliContext(overrides={"data_dir": data})
    account = create_account(ctx, "import test", timezone="UTC")
    batch, _ = parse_payload({"data": [cdr(u) for u in (A, B, C)]})
    with db.write(ctx.engine()) as conn:
        call_queries.upsert_calls(conn, account.id, "VN", batch, origin="api", now=0)
    folder = tmp_path / "freeswitch" / "recordings"
    (folder / "2026" / "06" / "27").mkdir(parents=True)
    (folder / "archive").mkdir()
    (folder / "2026" / "06" / "27" / f"{A}.wav").write_bytes(demo_recording(1, 3))
    (folder / "2026" / "06" / "27" / f"{B}.WAV").write_bytes(demo_recording(2, 4, "mulaw"))
    (folder / f"20260627-081542_{C}.wav").write_bytes(demo_recording(3, 5, "alaw"))
    (folder / f"{UNMATCHED}.wav").write_bytes(demo_recording(4, 2))
    (folder / f"{BROKEN}.wav").write_bytes(b"this is an mp3, honestly")
    (folder / "notes.wav").write_bytes(demo_recording(5, 1))
    (folder / "archive" / f"{A}.wav").write_bytes(demo_recording(6, 1))  # a second file for A
    (folder / f"{A}.txt").write_text("not audio")
    return data, account.id, ctx, folder


def stored(ctx: CliContext) -> dict[str, Any]:
    with db.read(ctx.engine()) as conn:
        return {r.call_uuid: r for r in conn.execute(select(recordings))}


def available(ctx: CliContext) -> dict[str, bool]:
    with db.read(ctx.engine()) as conn:
        return {
            r.uuid: r.recording_available
            for r in conn.execute(select(calls.c.uuid, calls.c.recording_available))
        }


def test_import_report_and_rerun(setup: tuple[Path, int, CliContext, Path]) -> None:
    data, account_id, ctx, folder = setup
    result = run(data, "import", "recordings", str(folder), "--account", str(account_id), "--json", code=1)
    report = json.loads(result.stdout)
    names = {k: sorted(Path(p).name for p in v) for k, v in report.items() if k != "failed"}
    assert names["imported"] == sorted(
        [f"{A}.wav", f"{B}.WAV", f"20260627-081542_{C}.wav", f"{UNMATCHED}.wav"]
    )
    assert names["unmatched"] == [f"{UNMATCHED}.wav"]
    assert names["unnamed"] == ["notes.wav"]
    assert names["duplicates"] == [f"{A}.wav"] and "archive" in report["duplicates"][0]
    assert [Path(p).name for p in report["failed"]] == [f"{BROKEN}.wav"]
    assert "not a WAV" in next(iter(report["failed"].values()))

    rows = stored(ctx)
    assert set(rows) == {A, B, C, UNMATCHED}
    assert (rows[A].duration, rows[B].audio_format, rows[C].audio_format) == (3, "mulaw", "alaw")
    assert available(ctx) == {A: True, B: True, C: True}
    files = sorted(p for p in (data / "recordings").rglob("*") if p.is_file())
    assert len(files) == 4 and not any(p.name.startswith(".tmp-") for p in files)

    # A re-run skips what is there by content hash and rewrites nothing.
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    report = json.loads(
        run(data, "import", "recordings", str(folder), "--account", str(account_id), "--json", code=1).stdout
    )
    assert len(report["unchanged"]) == 4 and report["imported"] == [] and report["replaced"] == []
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes

    # A changed file replaces the stored one, keeping the recording's id.
    (folder / f"{UNMATCHED}.wav").write_bytes(demo_recording(9, 6))
    (folder / f"{BROKEN}.wav").unlink()
    report = json.loads(
        run(data, "import", "recordings", str(folder), "--account", str(account_id), "--json").stdout
    )
    assert [Path(p).name for p in report["replaced"]] == [f"{UNMATCHED}.wav"]
    after = stored(ctx)
    assert after[UNMATCHED].id == rows[UNMATCHED].id and after[UNMATCHED].duration == 6
    assert len([p for p in (data / "recordings").rglob("*") if p.is_file()]) == 4


def test_human_output_skip_unmatched_and_dry_run(setup: tuple[Path, int, CliContext, Path]) -> None:
    data, account_id, ctx, folder = setup
    (folder / f"{BROKEN}.wav").unlink()
    dry = run(data, "import", "recordings", str(folder), "--account", str(account_id), "--dry-run")
    assert "would import 4" in dry.stdout and f"{UNMATCHED}.wav" in dry.stdout
    assert stored(ctx) == {}
    out = run(data, "import", "recordings", str(folder), "--account", str(account_id), "--skip-unmatched")
    assert "imported 3, replaced 0, unchanged 0, failed 0" in out.stdout
    assert "files that match no call (skipped) (1):" in out.stdout and f"{UNMATCHED}.wav" in out.stdout
    assert "no call uuid in their name" in out.stdout and "notes.wav" in out.stdout
    assert set(stored(ctx)) == {A, B, C}


def test_a_recording_imported_before_its_call_is_attached_when_the_call_arrives(
    setup: tuple[Path, int, CliContext, Path], tmp_path: Path
) -> None:
    data, account_id, ctx, _ = setup
    early = tmp_path / "early"
    early.mkdir()
    (early / f"{LATE}.wav").write_bytes(demo_recording(7, 2))
    report = json.loads(
        run(data, "import", "recordings", str(early), "--account", str(account_id), "--json").stdout
    )
    assert [Path(p).name for p in report["unmatched"]] == [f"{LATE}.wav"]
    batch, _ = parse_payload(cdr(LATE))
    with db.write(ctx.engine()) as conn:
        call_queries.upsert_calls(conn, account_id, "VN", batch, origin="api", now=0)
    assert available(ctx)[LATE] is True


def test_operator_mistakes_are_one_line_errors(setup: tuple[Path, int, CliContext, Path]) -> None:
    data, _, _, folder = setup
    result = run(data, "import", "recordings", str(folder), "--account", "999", code=1)
    assert result.stderr.strip() == "error: no account with id 999"
    result = run(data, "import", "recordings", str(folder / "missing"), "--account", "1", code=2)
    assert "does not exist" in result.stderr


def test_audit_list(setup: tuple[Path, int, CliContext, Path]) -> None:
    from fastapi.testclient import TestClient

    from pbx_cdr.app import create_app
    from pbx_cdr.cli.tokens import issue_token

    data, account_id, ctx, folder = setup
    run(data, "import", "recordings", str(folder), "--account", str(account_id), code=1)
    token_id, token = issue_token(ctx, account_id, "auditor", ["cdr:read"])
    with TestClient(create_app(ctx.settings)) as client:
        url = client.get(f"/api/pbx/cdr/{A}", headers={"Authorization": f"Bearer {token}"}).json()["data"][
            "recording"
        ]["url"]
        assert client.get(url, headers={"Range": "bytes=0-43"}).status_code == 206
    events = json.loads(run(data, "audit", "list", "--account", str(account_id), "--json").stdout)
    assert [e["kind"] for e in events] == ["download", "link_minted"]
    download, minted = events
    assert (download["status"], download["bytes_sent"], download["detail"]) == (
        206,
        44,
        {"method": "GET", "range": "0-43"},
    )
    assert minted["token_id"] == token_id and minted["recording_id"] == download["recording_id"]
    assert minted["client_addr"] == "testclient"
    everything = run(data, "audit", "list").stdout + json.dumps(events)
    assert token not in everything and url.split("signature=")[1] not in everything
    assert json.loads(run(data, "audit", "list", "--since", "2999-01-01", "--json").stdout) == []
    assert json.loads(run(data, "audit", "list", "--kind", "download", "--json").stdout)[0]["status"] == 206
    assert json.loads(run(data, "audit", "list", "--account", "999", "--json").stdout) == []
    assert run(data, "audit", "list", "--since", "last week", code=1).stderr.startswith("error: --since")


def test_demo_calls_get_playable_recordings(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from pbx_cdr.app import create_app
    from pbx_cdr.audio import inspect_wav
    from pbx_cdr.cli.demo import load_demo
    from pbx_cdr.cli.recordings import attach_demo_recordings, newest_recorded_call
    from pbx_cdr.cli.tokens import issue_token

    ctx = CliContext(overrides={"data_dir": tmp_path / "data"})
    account_id, _ = load_demo(ctx, 200, seed=1)
    assert attach_demo_recordings(ctx, account_id, 12, seed=1) == 12
    assert attach_demo_recordings(ctx, account_id, 12, seed=1) == 0  # a re-run adds none
    uuid = newest_recorded_call(ctx, account_id)
    assert uuid is not None
    _, token = issue_token(ctx, account_id, "demo", ["cdr:read"])
    formats = set()
    with TestClient(create_app(ctx.settings)) as client:
        r = client.get(f"/api/pbx/cdr/{uuid}/recording", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
        info, duration = inspect_wav(r.content)
        assert (info.sample_rate, info.channels) == (8000, 1) and 2 <= duration <= 8
    for row in stored(ctx).values():
        formats.add(row.audio_format)
    assert formats == {"pcm_s16le", "mulaw", "alaw"}
    assert all(available(ctx)[u] for u in stored(ctx))
