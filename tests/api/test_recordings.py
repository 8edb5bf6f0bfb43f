"""PUT/GET/DELETE /api/pbx/cdr/{uuid}/recording and the detail's recording object (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from pbx_cdr.app import create_app
from pbx_cdr.clock import FrozenClock
from pbx_cdr.config import Settings
from pbx_cdr.db import engine as db
from pbx_cdr.db.queries import audit
from pbx_cdr.db.tables import recordings
from pbx_cdr.demo.audio import demo_recording
from pbx_cdr.storage import LocalStorage
from tests.conftest import Tenant, cdr

UUID = "65569ce0-0183-4f61-a3b2-0e433cfa4031"
OTHER = "0d9cbbd2-51a4-4bd1-8e1c-2a2f3d9b7a11"
WAV = demo_recording(1, 14)
WAV2 = demo_recording(2, 5, "mulaw")


def upload(client: TestClient, tenant: Tenant, uuid: str, body: Any, **params: str) -> Any:
    return client.put(f"/api/pbx/cdr/{uuid}/recording", content=body, headers=tenant.write, params=params)


def stored_files(app: Any) -> list[Path]:
    root: Path = app.state.services.storage.root
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def row_count(engine: Engine) -> int:
    with db.read(engine) as conn:
        return int(conn.execute(select(func.count()).select_from(recordings)).scalar_one())


def detail(client: TestClient, tenant: Tenant, uuid: str = UUID) -> Any:
    return client.get(f"/api/pbx/cdr/{uuid}", headers=tenant.read)


def test_recording_after_its_call(client: TestClient, tenant: Tenant, app: Any) -> None:
    assert client.post("/api/pbx/cdr", json=cdr(UUID), headers=tenant.write).status_code == 201
    r = upload(client, tenant, UUID, WAV)
    assert r.status_code == 201, r.text
    body = r.json()["data"]
    assert body["status"] == "created" and body["call_found"] is True
    assert body["duration"] == 14 and body["file_size"] == len(WAV)
    assert (body["format"], body["sample_rate"], body["channels"]) == ("pcm_s16le", 8000, 1)
    assert body["recorded_at"] == "2026-06-27T08:15:50+00:00"  # the call's answer time
    item = detail(client, tenant).json()["data"]
    assert item["recording_available"] is True
    rec = item["recording"]
    assert set(rec) == {"duration", "file_size", "recorded_at", "url", "expires_in_seconds"}
    assert (rec["duration"], rec["file_size"], rec["expires_in_seconds"]) == (14, len(WAV), 1800)
    assert rec["recorded_at"] == "2026-06-27T08:15:50+00:00"
    assert rec["url"].startswith("http://testserver/api/public/recordings/")
    assert client.get(rec["url"]).content == WAV
    assert len(stored_files(app)) == 1


def test_recording_before_its_call_is_kept_and_attached(client: TestClient, tenant: Tenant) -> None:
    r = upload(client, tenant, UUID.upper(), WAV2)
    assert r.status_code == 201, r.text
    assert r.json()["data"]["call_found"] is False
    assert r.json()["data"]["recorded_at"] is None
    assert r.json()["data"]["uuid"] == UUID  # stored in canonical form
    assert detail(client, tenant).status_code == 404
    client.post("/api/pbx/cdr", json=cdr(UUID, answer_time=None), headers=tenant.write)
    listed = client.get("/api/pbx/cdr", headers=tenant.read).json()["data"][0]
    assert listed["recording_available"] is True
    rec = detail(client, tenant).json()["data"]["recording"]
    assert rec["duration"] == 5 and rec["recorded_at"] == "2026-06-27T08:15:42+00:00"  # start time
    assert client.get(rec["url"]).content == WAV2


def test_recorded_at_parameter(client: TestClient, tenant: Tenant) -> None:
    client.post("/api/pbx/cdr", json=cdr(UUID), headers=tenant.write)
    r = upload(client, tenant, UUID, WAV, recorded_at="2026-06-27T15:15:57+07:00")
    assert r.json()["data"]["recorded_at"] == "2026-06-27T08:15:57+00:00"
    assert detail(client, tenant).json()["data"]["recording"]["recorded_at"] == "2026-06-27T08:15:57+00:00"
    r = upload(client, tenant, UUID, WAV2)  # a re-upload without it keeps the explicit time
    assert r.json()["data"]["recorded_at"] == "2026-06-27T08:15:57+00:00"


def test_reupload_replaces_and_identical_bytes_change_nothing(
    client: TestClient, tenant: Tenant, app: Any
) -> None:
    client.post("/api/pbx/cdr", json=cdr(UUID), headers=tenant.write)
    upload(client, tenant, UUID, WAV)
    first = stored_files(app)
    link = detail(client, tenant).json()["data"]["recording"]["url"]
    r = upload(client, tenant, UUID, WAV2)
    assert r.status_code == 200 and r.json()["data"]["status"] == "replaced"
    after = stored_files(app)
    assert len(after) == 1 and after != first  # the old bytes are gone, the new ones in place
    assert client.get(link).content == WAV2  # the id in links stays the same
    r = upload(client, tenant, UUID, WAV2)
    assert r.status_code == 200 and r.json()["data"]["status"] == "unchanged"
    assert stored_files(app) == after
    assert detail(client, tenant).json()["data"]["recording"]["duration"] == 5


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"<html>not audio</html>", "not a WAV"),
        (b"ID3" + b"\0" * 5000, "not a WAV"),
        (WAV[:30], "cut short"),
        (WAV[:44], "no audio"),
        (b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x55\0\x01\0" + b"\0" * 200, "0x0055"),
    ],
)
def test_not_a_wav_is_422_and_leaves_nothing(
    client: TestClient, tenant: Tenant, app: Any, engine: Engine, body: bytes, message: str
) -> None:
    r = upload(client, tenant, UUID, body)
    assert r.status_code == 422, r.text
    assert message in r.json()["errors"]["recording"][0]
    assert r.json()["message"] == r.json()["errors"]["recording"][0]
    assert stored_files(app) == [] and row_count(engine) == 0


def test_bad_uuid_and_recorded_at_are_422(client: TestClient, tenant: Tenant) -> None:
    r = upload(client, tenant, "not-a-uuid", WAV)
    assert r.status_code == 422 and "uuid" in r.json()["errors"]
    for bad in ("yesterday", "2026-06-27T08:15:57", "2026-13-45T99:00:00+00:00", "9999-12-31T23:59:59+00:00"):
        r = upload(client, tenant, UUID, WAV, recorded_at=bad)
        assert r.status_code == 422 and "recorded_at" in r.json()["errors"], bad


def test_scopes_and_tokens(client: TestClient, tenant: Tenant) -> None:
    r = client.put(f"/api/pbx/cdr/{UUID}/recording", content=WAV, headers=tenant.read)
    assert r.status_code == 403 and r.json() == {"message": "This action is unauthorized."}
    assert client.put(f"/api/pbx/cdr/{UUID}/recording", content=WAV).status_code == 401
    assert client.get(f"/api/pbx/cdr/{UUID}/recording").status_code == 401
    assert client.delete(f"/api/pbx/cdr/{UUID}/recording", headers=tenant.read).status_code == 403


@pytest.fixture
def small_client(settings: Settings, clock: FrozenClock, engine: Engine) -> Iterator[tuple[TestClient, Any]]:
    app = create_app(settings.model_copy(update={"max_recording_bytes": 20_000}), clock=clock, engine=engine)
    with TestClient(app) as client:
        yield client, app


def test_size_limit_by_content_length(
    small_client: tuple[TestClient, Any], tenant: Tenant, engine: Engine
) -> None:
    client, app = small_client
    r = upload(client, tenant, UUID, demo_recording(3, 2))  # 32 kB over a 20 kB limit
    assert r.status_code == 413
    assert r.json() == {"message": "The recording must not be larger than 20000 bytes."}
    assert stored_files(app) == [] and row_count(engine) == 0
    assert upload(client, tenant, UUID, demo_recording(3, 1)).status_code == 201


def test_size_limit_without_content_length(
    small_client: tuple[TestClient, Any], tenant: Tenant, engine: Engine
) -> None:
    client, app = small_client
    data = demo_recording(3, 3)
    pulled: list[int] = []

    def chunked() -> Iterator[bytes]:
        for start in range(0, len(data), 4096):
            pulled.append(start)
            yield data[start : start + 4096]

    r = client.put(f"/api/pbx/cdr/{UUID}/recording", content=chunked(), headers=tenant.write)
    assert r.status_code == 413
    assert stored_files(app) == [] and row_count(engine) == 0


def test_redirect(client: TestClient, tenant: Tenant) -> None:
    client.post("/api/pbx/cdr", json=cdr(UUID), headers=tenant.write)
    r = client.get(f"/api/pbx/cdr/{UUID}/recording", headers=tenant.read, follow_redirects=False)
    assert r.status_code == 404 and r.json() == {"message": "Recording not found."}
    upload(client, tenant, UUID, WAV)
    r = client.get(f"/api/pbx/cdr/{UUID}/recording", headers=tenant.read, follow_redirects=False)
    assert r.status_code == 302
    assert r.headers["cache-control"] == "no-store"
    location = urlsplit(r.headers["location"])
    assert location.path.startswith("/api/public/recordings/") and location.query.startswith("expires=")
    assert client.get(r.headers["location"]).content == WAV
    r = client.get(f"/api/pbx/cdr/{OTHER}/recording", headers=tenant.read, follow_redirects=False)
    assert r.status_code == 404 and r.json() == {"message": "Call not found."}
    assert client.get("/api/pbx/cdr/nonsense/recording", headers=tenant.read).status_code == 404


def test_redirect_ttl_from_the_account(client: TestClient, make_tenant: Any) -> None:
    short = make_tenant("short links", recording_url_ttl=60)
    client.post("/api/pbx/cdr", json=cdr(UUID), headers=short.write)
    upload(client, short, UUID, WAV)
    assert detail(client, short).json()["data"]["recording"]["expires_in_seconds"] == 60
    r = client.get(f"/api/pbx/cdr/{UUID}/recording", headers=short.read, follow_redirects=False)
    expires = int(r.headers["location"].split("expires=")[1].split("&")[0])
    assert expires == int(client.app.state.services.clock.now()) + 60  # type: ignore[attr-defined]


def test_delete(client: TestClient, tenant: Tenant, app: Any, engine: Engine) -> None:
    client.post("/api/pbx/cdr", json=cdr(UUID), headers=tenant.write)
    upload(client, tenant, UUID, WAV)
    link = detail(client, tenant).json()["data"]["recording"]["url"]
    r = client.delete(f"/api/pbx/cdr/{UUID}/recording", headers=tenant.write)
    assert r.status_code == 204
    item = detail(client, tenant).json()["data"]
    assert item["recording"] is None and item["recording_available"] is False
    assert client.get(link).status_code == 404
    assert stored_files(app) == [] and row_count(engine) == 0
    assert client.delete(f"/api/pbx/cdr/{UUID}/recording", headers=tenant.write).status_code == 404


def test_every_recording_route_across_two_accounts(
    client: TestClient, tenant: Tenant, make_tenant: Any, app: Any
) -> None:
    other = make_tenant("other")
    client.post("/api/pbx/cdr", json=cdr(UUID), headers=tenant.write)
    upload(client, tenant, UUID, WAV)
    not_found = {"message": "Call not found."}
    assert detail(client, other).json() == not_found
    r = client.get(f"/api/pbx/cdr/{UUID}/recording", headers=other.read, follow_redirects=False)
    assert r.status_code == 404 and r.json() == not_found
    r = client.delete(f"/api/pbx/cdr/{UUID}/recording", headers=other.write)
    assert r.status_code == 404
    # The other account's upload under the same uuid is its own early recording; it touches nothing of ours.
    r = upload(client, other, UUID, WAV2)
    assert r.status_code == 201 and r.json()["data"]["call_found"] is False
    assert detail(client, other).status_code == 404
    mine = detail(client, tenant).json()["data"]["recording"]
    assert mine["duration"] == 14 and client.get(mine["url"]).content == WAV
    assert len(stored_files(app)) == 2


def test_links_are_audited(client: TestClient, tenant: Tenant, engine: Engine) -> None:
    client.post("/api/pbx/cdr", json=cdr(UUID), headers=tenant.write)
    upload(client, tenant, UUID, WAV)
    link = detail(client, tenant).json()["data"]["recording"]["url"]
    client.get(f"/api/pbx/cdr/{UUID}/recording", headers=tenant.read, follow_redirects=False)
    client.get(link, headers={"Range": "bytes=0-9"})
    with db.read(engine) as conn:
        events = audit.list_events(conn, account_id=tenant.id)
    minted = [e for e in events if e.kind == "link_minted"]
    assert len(minted) == 2 and {e.detail.split('"via":"')[1].split('"')[0] for e in minted} == {
        "detail",
        "redirect",
    }
    assert all(e.token_id is not None and e.client_addr == "testclient" for e in minted)
    (download,) = [e for e in events if e.kind == "download"]
    assert (download.status, download.bytes_sent, download.recording_id) == (206, 10, minted[0].recording_id)
    signature = link.split("signature=")[1]
    assert all(signature not in (e.detail or "") for e in events)


class FullDisk:
    """A file on a disk that fills up after 1000 bytes: part of a write lands, then ENOSPC."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.written = 0

    def write(self, data: bytes) -> int:
        room = 1000 - self.written
        if len(data) > room:
            self.real.write(data[:room])
            self.written += room
            raise OSError(28, "No space left on device")
        self.written += len(data)
        return int(self.real.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class FailingStorage(LocalStorage):
    """The real local storage, on a disk that fills up during the write."""

    def open_writer(self, key: str) -> Any:
        writer = super().open_writer(key)
        writer._file = FullDisk(writer._file)  # type: ignore[assignment]
        return writer


def test_a_storage_failure_leaves_no_file_and_no_row(
    settings: Settings, clock: FrozenClock, engine: Engine, tenant: Tenant, tmp_path: Path
) -> None:
    storage = FailingStorage(tmp_path / "disk")
    app = create_app(settings, clock=clock, engine=engine, storage=storage)
    data = demo_recording(5, 3)
    with TestClient(app) as client:
        r = client.put(
            f"/api/pbx/cdr/{UUID}/recording",
            content=iter([data[i : i + 512] for i in range(0, len(data), 512)]),
            headers=tenant.write,
        )
    assert r.status_code == 503, r.text
    assert r.json() == {"message": "The recording storage is not available."}
    assert [p for p in storage.root.rglob("*") if p.is_file()] == []
    assert row_count(engine) == 0


def test_a_database_failure_after_the_bytes_are_stored_removes_them(
    client: TestClient, tenant: Tenant, app: Any, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pbx_cdr.db.queries import recordings as queries

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("the database went away mid-transaction")

    monkeypatch.setattr(queries, "save_version", broken)
    with pytest.raises(RuntimeError):
        upload(client, tenant, UUID, WAV)
    assert stored_files(app) == [] and row_count(engine) == 0
