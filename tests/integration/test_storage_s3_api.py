"""The recording routes on S3 storage (a real moto server): bytes through our signed route, or presigned."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from pbx_cdr.app import create_app
from pbx_cdr.clock import FrozenClock
from pbx_cdr.config import Settings
from pbx_cdr.demo.audio import demo_recording
from pbx_cdr.storage import S3Storage, StorageError, storage_from_settings
from pbx_cdr.storage.s3 import PART_SIZE
from tests.conftest import Tenant, cdr
from tests.integration.test_storage import make_bucket
from tests.servers import S3Server

pytestmark = pytest.mark.s3
UUID = "65569ce0-0183-4f61-a3b2-0e433cfa4031"


@pytest.fixture
def s3_settings(settings: Settings, s3: S3Server, aws_env: None) -> Settings:
    return settings.model_copy(
        update={
            "storage_url": f"s3://{make_bucket(s3)}/recordings",
            "s3_endpoint_url": s3.endpoint,
            "s3_region": "us-east-1",
        }
    )


def client_for(settings: Settings, clock: FrozenClock, engine: Engine) -> TestClient:
    return TestClient(create_app(settings, clock=clock, engine=engine))


@pytest.fixture
def app_links(s3_settings: Settings, clock: FrozenClock, engine: Engine) -> Iterator[TestClient]:
    with client_for(s3_settings, clock, engine) as client:
        yield client


@pytest.fixture
def s3_links(s3_settings: Settings, clock: FrozenClock, engine: Engine) -> Iterator[TestClient]:
    with client_for(s3_settings.model_copy(update={"recording_links": "s3"}), clock, engine) as client:
        yield client


def objects(client: TestClient) -> list[str]:
    storage: Any = client.app.state.services.storage  # type: ignore[attr-defined]
    assert isinstance(storage, S3Storage)
    listed = storage.client.list_objects_v2(Bucket=storage.bucket).get("Contents", [])
    return [o["Key"] for o in listed]


def test_app_links_serve_s3_bytes_with_ranges(app_links: TestClient, tenant: Tenant) -> None:
    client = app_links
    assert client.get("/readyz").status_code == 200
    wav = demo_recording(4, 8, "alaw")
    client.post("/api/pbx/cdr", json=cdr(UUID), headers=tenant.write)
    r = client.put(f"/api/pbx/cdr/{UUID}/recording", content=wav, headers=tenant.write)
    assert r.status_code == 201, r.text
    (key,) = objects(client)
    assert key.startswith(f"recordings/{tenant.id}/") and key.endswith(".wav")
    url = client.get(f"/api/pbx/cdr/{UUID}", headers=tenant.read).json()["data"]["recording"]["url"]
    assert url.startswith("http://testserver/api/public/recordings/")
    assert client.get(url).content == wav
    r = client.get(url, headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == wav[100:200]
    assert client.head(url).headers["content-length"] == str(len(wav))
    r = client.put(f"/api/pbx/cdr/{UUID}/recording", content=demo_recording(5, 3), headers=tenant.write)
    assert r.json()["data"]["status"] == "replaced"
    assert len(objects(client)) == 1 and objects(client) != [key]  # the old object was deleted
    assert client.delete(f"/api/pbx/cdr/{UUID}/recording", headers=tenant.write).status_code == 204
    assert objects(client) == [] and client.get(url).status_code == 404


def test_a_large_upload_goes_up_in_parts(app_links: TestClient, tenant: Tenant) -> None:
    client = app_links
    seconds = PART_SIZE * 2 // 16000 + 30  # PCM 16-bit 8 kHz: over two 8 MiB parts
    wav = demo_recording(6, seconds)
    r = client.put(f"/api/pbx/cdr/{UUID}/recording", content=wav, headers=tenant.write)
    assert r.status_code == 201 and r.json()["data"]["duration"] == seconds
    client.post("/api/pbx/cdr", json=cdr(UUID), headers=tenant.write)
    url = client.get(f"/api/pbx/cdr/{UUID}", headers=tenant.read).json()["data"]["recording"]["url"]
    r = client.get(url, headers={"Range": f"bytes={PART_SIZE - 5}-{PART_SIZE + 4}"})
    assert r.content == wav[PART_SIZE - 5 : PART_SIZE + 5]


def test_s3_links_are_presigned_with_the_account_ttl(
    s3_links: TestClient, make_tenant: Any, engine: Engine
) -> None:
    client = s3_links
    tenant = make_tenant("presigned", recording_url_ttl=900)
    wav = demo_recording(7, 4, "mulaw")
    client.post("/api/pbx/cdr", json=cdr(UUID), headers=tenant.write)
    client.put(f"/api/pbx/cdr/{UUID}/recording", content=wav, headers=tenant.write)
    rec = client.get(f"/api/pbx/cdr/{UUID}", headers=tenant.read).json()["data"]["recording"]
    assert rec["expires_in_seconds"] == 900
    storage: Any = client.app.state.services.storage  # type: ignore[attr-defined]
    assert rec["url"].startswith(f"{storage.endpoint_url}/{storage.bucket}/recordings/")
    query = parse_qs(urlsplit(rec["url"]).query)
    assert query["X-Amz-Expires"] == ["900"]
    assert query["response-content-disposition"] == [f'attachment; filename="{UUID}.wav"']
    fetched = httpx.get(rec["url"])  # straight from the object store: the bytes never pass through the API
    assert fetched.status_code == 200 and fetched.content == wav
    r = client.get(f"/api/pbx/cdr/{UUID}/recording", headers=tenant.read, follow_redirects=False)
    assert r.status_code == 302 and r.headers["cache-control"] == "no-store"
    assert r.headers["location"].startswith(storage.endpoint_url)
    assert httpx.get(r.headers["location"], headers={"Range": "bytes=0-3"}).content == b"RIFF"


def test_s3_links_need_s3_storage(settings: Settings) -> None:
    with pytest.raises(ValueError, match="PBX_CDR_RECORDING_LINKS=s3"):
        storage_from_settings(settings.model_copy(update={"recording_links": "s3"}))


def test_a_bucket_that_is_gone_answers_503(
    s3_settings: Settings, clock: FrozenClock, engine: Engine, tenant: Tenant
) -> None:
    gone = s3_settings.model_copy(update={"storage_url": "s3://bucket-that-does-not-exist/x"})
    with client_for(gone, clock, engine) as client:
        r = client.put(f"/api/pbx/cdr/{UUID}/recording", content=demo_recording(1, 2), headers=tenant.write)
        ready = client.get("/readyz")
    assert r.status_code == 503 and r.json() == {"message": "The recording storage is not available."}
    assert ready.status_code == 503 and ready.json() == {"message": "The recording storage is not reachable."}
    with pytest.raises(StorageError):
        storage_from_settings(gone).check()
