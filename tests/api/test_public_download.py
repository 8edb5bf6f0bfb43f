"""GET/HEAD /api/public/recordings/{id}/audio: signatures, ranges, headers, deletion, audit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from pbx_cdr.app import create_app
from pbx_cdr.clock import FrozenClock
from pbx_cdr.config import Settings
from pbx_cdr.db import engine as db
from pbx_cdr.db.queries import audit
from pbx_cdr.demo.audio import demo_recording
from pbx_cdr.signing import sign_url
from tests.conftest import SECRET, Tenant, cdr

UUID = "65569ce0-0183-4f61-a3b2-0e433cfa4031"
UUID2 = "7a1f4f51-1111-4a2b-9c3d-0123456789ab"
WAV = demo_recording(11, 9)
INVALID = {"message": "Invalid signature."}


def add_recording(client: TestClient, tenant: Tenant, uuid: str = UUID, body: bytes = WAV) -> str:
    """Ingest a call with a recording; its signed link, path and query only."""
    client.post("/api/pbx/cdr", json=cdr(uuid), headers=tenant.write)
    assert client.put(f"/api/pbx/cdr/{uuid}/recording", content=body, headers=tenant.write).status_code == 201
    url = client.get(f"/api/pbx/cdr/{uuid}", headers=tenant.read).json()["data"]["recording"]["url"]
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == "http://testserver"
    return f"{parts.path}?{parts.query}"


@pytest.fixture
def link(client: TestClient, tenant: Tenant) -> str:
    return add_recording(client, tenant)


def split(link: str) -> tuple[str, str, str]:
    path, query = link.split("?")
    expires = query.split("&")[0].removeprefix("expires=")
    signature = query.split("signature=")[1]
    return path, expires, signature


def test_whole_file_and_headers(client: TestClient, link: str) -> None:
    r = client.get(link)
    assert r.status_code == 200 and r.content == WAV
    h = r.headers
    assert h["content-type"] == "audio/wav"
    assert h["content-length"] == str(len(WAV))
    assert h["accept-ranges"] == "bytes"
    assert h["etag"].startswith('"') and len(h["etag"]) == 66
    assert h["content-disposition"] == f'attachment; filename="{UUID}.wav"'
    assert h["cache-control"] == "no-store"
    assert h["referrer-policy"] == "no-referrer"


def test_head(client: TestClient, link: str) -> None:
    r = client.head(link)
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-length"] == str(len(WAV)) and r.headers["content-type"] == "audio/wav"
    r = client.head(link, headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.headers["content-range"] == f"bytes 10-19/{len(WAV)}"


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=0-99", 0, 100), ("bytes=100-", 100, None), ("bytes=-44", -44, None), ("bytes=5-5", 5, 6)],
)
def test_ranges(client: TestClient, link: str, header: str, start: int, end: int | None) -> None:
    r = client.get(link, headers={"Range": header})
    assert r.status_code == 206
    expected = WAV[start:end]
    assert r.content == expected and r.headers["content-length"] == str(len(expected))
    first = start % len(WAV)
    assert r.headers["content-range"] == f"bytes {first}-{first + len(expected) - 1}/{len(WAV)}"


def test_unsatisfiable_range(client: TestClient, link: str) -> None:
    r = client.get(link, headers={"Range": f"bytes={len(WAV)}-"})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{len(WAV)}"
    assert r.json() == {"message": "The requested range is not satisfiable."}
    assert r.headers["cache-control"] == "no-store"


def test_if_range_with_a_stale_etag_sends_the_whole_file(client: TestClient, link: str) -> None:
    etag = client.head(link).headers["etag"]
    assert client.get(link, headers={"Range": "bytes=0-9", "If-Range": etag}).status_code == 206
    r = client.get(link, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert r.status_code == 200 and r.content == WAV


def test_multi_range_and_malformed_ranges_send_the_whole_file(client: TestClient, link: str) -> None:
    for header in ("bytes=0-1,4-5", "bytes=9-2", "pages=1-2", "bytes=x-y"):
        r = client.get(link, headers={"Range": header})
        assert r.status_code == 200 and r.content == WAV, header


def tampered_links(link: str, other_link: str) -> dict[str, str]:
    path, expires, signature = split(link)
    flipped = ("0" if signature[-1] != "0" else "1").join((signature[:-1], ""))
    return {
        "flipped signature": f"{path}?expires={expires}&signature={flipped}",
        "expires+1": f"{path}?expires={int(expires) + 1}&signature={signature}",
        "expires-1": f"{path}?expires={int(expires) - 1}&signature={signature}",
        "missing signature": f"{path}?expires={expires}",
        "missing expires": f"{path}?signature={signature}",
        "no query": path,
        "extra parameter": f"{path}?expires={expires}&signature={signature}&download=1",
        "repeated signature": f"{path}?expires={expires}&signature={signature}&signature={signature}",
        "repeated expires": f"{path}?expires={expires}&expires={expires}&signature={signature}",
        "array parameter": f"{path}?expires={expires}&signature[]={signature}",
        "array expires": f"{path}?expires[]={expires}&signature={signature}",
        "uppercase signature": f"{path}?expires={expires}&signature={signature.upper()}",
        "short signature": f"{path}?expires={expires}&signature={signature[:40]}",
        "non-ascii signature": f"{path}?expires={expires}&signature={signature[:62]}%C3%A9",
        "huge expires": f"{path}?expires={'9' * 400}&signature={signature}",
        "another recording's signature": f"{path}?{other_link.split('?')[1]}",
        "another recording's path": f"{split(other_link)[0]}?expires={expires}&signature={signature}",
        "odd id": f"/api/public/recordings/01/audio?expires={expires}&signature={signature}",
        "text id": f"/api/public/recordings/abc/audio?expires={expires}&signature={signature}",
        "huge id": f"/api/public/recordings/{'9' * 300}/audio?expires={expires}&signature={signature}",
    }


CASES = list(tampered_links("/p?expires=1&signature=" + "a" * 64, "/q?expires=1&signature=" + "b" * 64))


@pytest.mark.parametrize("case", CASES)
def test_every_bad_link_is_the_same_403(client: TestClient, tenant: Tenant, link: str, case: str) -> None:
    other = add_recording(client, tenant, UUID2, demo_recording(12, 2))
    bad = tampered_links(link, other)[case]
    for method in ("GET", "HEAD"):
        r = client.request(method, bad)
        assert r.status_code == 403, (case, method)
        if method == "GET":
            assert r.json() == INVALID
        assert r.headers["cache-control"] == "no-store"
    assert client.get(link).status_code == 200  # the genuine link still works


def test_expiry_follows_the_clock(client: TestClient, link: str, clock: FrozenClock) -> None:
    clock.advance(1800)
    assert client.get(link).status_code == 200  # valid through its last second
    clock.advance(1)
    r = client.get(link)
    assert r.status_code == 403 and r.json() == INVALID


def test_spoofed_host_and_forwarded_headers_change_nothing(client: TestClient, tenant: Tenant) -> None:
    spoof = {
        "Host": "evil.example",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-For": "203.0.113.9",
        "Forwarded": "host=evil.example;proto=https",
    }
    client.post("/api/pbx/cdr", json=cdr(UUID), headers=tenant.write)
    client.put(f"/api/pbx/cdr/{UUID}/recording", content=WAV, headers=tenant.write)
    r = client.get(f"/api/pbx/cdr/{UUID}", headers={**tenant.read, **spoof})
    url = r.json()["data"]["recording"]["url"]
    assert url.startswith("http://testserver/api/public/recordings/")  # minted from PBX_CDR_PUBLIC_URL
    r = client.get(f"/api/pbx/cdr/{UUID}/recording", headers={**tenant.read, **spoof}, follow_redirects=False)
    assert r.headers["location"].startswith("http://testserver/")
    path = urlsplit(url).path
    assert client.get(f"{path}?{urlsplit(url).query}", headers=spoof).status_code == 200
    # A link signed over the spoofed origin (what a Host-trusting server would mint) is refused.
    expires = int(urlsplit(url).query.split("&")[0].split("=")[1])
    for origin in ("http://evil.example", "https://evil.example"):
        forged = sign_url(origin, path, expires, SECRET.encode())
        r = client.get(forged.removeprefix(origin), headers=spoof)
        assert r.status_code == 403 and r.json() == INVALID


@pytest.fixture
def rotated(settings: Settings, clock: FrozenClock, engine: Engine) -> Iterator[TestClient]:
    """The same service after a key rotation: a new key, the old one retired but still accepted."""
    new = settings.model_copy(update={"secret_key": "brand-new-key", "previous_keys": f"unrelated, {SECRET}"})
    with TestClient(create_app(new, clock=clock, engine=engine)) as client:
        yield client


@pytest.fixture
def retired(settings: Settings, clock: FrozenClock, engine: Engine) -> Iterator[TestClient]:
    """After the rotation is over: the old key is gone."""
    new = settings.model_copy(update={"secret_key": "brand-new-key", "previous_keys": ""})
    with TestClient(create_app(new, clock=clock, engine=engine)) as client:
        yield client


def test_key_rotation(link: str, rotated: TestClient, retired: TestClient, tenant: Tenant) -> None:
    assert rotated.get(link).status_code == 200  # minted under the old key, accepted during rotation
    fresh = rotated.get(f"/api/pbx/cdr/{UUID}", headers=tenant.read).json()["data"]["recording"]["url"]
    assert retired.get(fresh).status_code == 200  # new links use the new key
    r = retired.get(link)
    assert r.status_code == 403 and r.json() == INVALID  # the retired key no longer verifies


def test_a_recording_deleted_since_the_link_was_made_is_404(
    client: TestClient, tenant: Tenant, link: str
) -> None:
    client.delete(f"/api/pbx/cdr/{UUID}/recording", headers=tenant.write)
    for method in ("GET", "HEAD"):
        r = client.request(method, link)
        assert r.status_code == 404, method
    assert client.get(link).json() == {"message": "Recording not found."}


def test_bytes_missing_from_storage_are_404_not_500(client: TestClient, link: str, app: Any) -> None:
    for path in app.state.services.storage.root.rglob("*.wav"):
        path.unlink()
    assert client.get(link).status_code == 404
    assert client.head(link).status_code == 404
    assert client.get(link, headers={"Range": "bytes=0-1"}).status_code == 404


def test_downloads_are_audited(client: TestClient, tenant: Tenant, link: str, engine: Engine) -> None:
    client.get(link)
    client.get(link, headers={"Range": "bytes=0-99"})
    client.head(link)
    client.get(link, headers={"Range": f"bytes={len(WAV) + 5}-"})
    with db.read(engine) as conn:
        events = audit.list_events(conn, account_id=tenant.id, kind=audit.DOWNLOAD)
    got = sorted((e.status, e.bytes_sent) for e in events)
    assert got == sorted([(200, len(WAV)), (206, 100), (200, 0), (416, 0)])
    assert all(e.client_addr == "testclient" and e.token_id is None for e in events)
    assert all("signature" not in (e.detail or "") for e in events)
