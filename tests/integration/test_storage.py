"""The storage interface, run against local disk AND a real S3-protocol server (moto, as a process)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from pbx_cdr.api.ranges import StoredObjectResponse
from pbx_cdr.storage import (
    LocalStorage,
    ObjectMissing,
    S3Storage,
    Storage,
    StorageError,
    new_recording_key,
    storage_from_url,
)
from pbx_cdr.storage import local as local_storage
from pbx_cdr.storage.local import LOCAL_READ_CHUNK
from pbx_cdr.storage.s3 import PART_SIZE
from tests.servers import S3Server

_buckets = itertools.count()


def make_bucket(server: S3Server) -> str:
    name = f"recordings-{os.getpid()}-{next(_buckets)}"
    boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "recordings")
    request.getfixturevalue("aws_env")
    server: S3Server = request.getfixturevalue("s3")
    return S3Storage(make_bucket(server), "pbx/recordings", endpoint_url=server.endpoint, region="us-east-1")


def put(storage: Storage, key: str, data: bytes, chunk: int = 65536) -> None:
    writer = storage.open_writer(key)
    for start in range(0, len(data), chunk):
        writer.write(data[start : start + chunk])
    writer.commit()


def everything(storage: Storage) -> list[str]:
    """Every object or file the backend holds, temporary and unfinished ones included."""
    if isinstance(storage, LocalStorage):
        return sorted(str(p) for p in storage.root.rglob("*") if p.is_file()) if storage.root.exists() else []
    assert isinstance(storage, S3Storage)
    listed = storage.client.list_objects_v2(Bucket=storage.bucket).get("Contents", [])
    pending = storage.client.list_multipart_uploads(Bucket=storage.bucket).get("Uploads", [])
    return sorted([o["Key"] for o in listed] + [f"upload:{u['Key']}" for u in pending])


def read(storage: Storage, key: str, start: int, end: int) -> bytes:
    return b"".join(storage.read_range(key, start, end))


def test_round_trip_and_ranges(storage: Storage) -> None:
    data = os.urandom(300_000)
    key = new_recording_key(7)
    assert not storage.exists(key) and storage.stat(key) is None
    put(storage, key, data)
    assert storage.exists(key)
    stat = storage.stat(key)
    assert stat is not None and stat.size == len(data)
    assert read(storage, key, 0, len(data)) == data
    for start, end in [(0, 1), (5, 70_000), (65_536, 131_072), (len(data) - 10, len(data)), (7, 7)]:
        assert read(storage, key, start, end) == data[start:end]
    # Bounded chunks, so a download holds constant memory (local files: 1 MiB, see storage/local.py).
    assert all(len(c) <= 1024 * 1024 for c in storage.read_range(key, 0, len(data)))
    assert everything(storage) and len(everything(storage)) == 1


def test_nothing_is_visible_before_commit_and_abort_leaves_nothing(storage: Storage) -> None:
    key = new_recording_key(1)
    writer = storage.open_writer(key)
    writer.write(os.urandom(PART_SIZE + 1000))  # enough for S3 to have started a multipart upload
    assert not storage.exists(key)
    writer.abort()
    writer.abort()  # twice is harmless
    assert not storage.exists(key)
    assert everything(storage) == []


def test_large_object_streams_in_parts(storage: Storage) -> None:
    key = new_recording_key(2)
    digest = hashlib.sha256()
    writer = storage.open_writer(key)
    block = os.urandom(1024 * 1024)
    for n in range(2 * PART_SIZE // len(block) + 3):  # over two parts and a short last one
        piece = bytes([n % 256]) + block[1:]
        digest.update(piece)
        writer.write(piece)
    writer.commit()
    stat = storage.stat(key)
    assert stat is not None and stat.size == (2 * PART_SIZE // len(block) + 3) * len(block)
    check = hashlib.sha256()
    for chunk in storage.read_range(key, 0, stat.size):
        check.update(chunk)
    assert check.hexdigest() == digest.hexdigest()
    boundary = PART_SIZE - 3  # a range that spans a part boundary
    assert read(storage, key, boundary, boundary + 6)[3:4] == bytes([PART_SIZE // len(block) % 256])


def test_replace_is_a_new_key_and_delete_is_idempotent(storage: Storage) -> None:
    old, new = new_recording_key(3), new_recording_key(3)
    assert old != new
    put(storage, old, b"old bytes")
    put(storage, new, b"new bytes")
    storage.delete(old)
    storage.delete(old)
    assert not storage.exists(old) and read(storage, new, 0, 9) == b"new bytes"
    with pytest.raises(ObjectMissing):
        storage.read_range(old, 0, 5)


@pytest.mark.parametrize(
    "key",
    ["../etc/passwd", "1/ab/../../../x.wav", "/abs/path.wav", "1/ab/abc.wav", "x" * 300, "1/AB/" + "A" * 32],
)
def test_keys_that_are_not_ours_are_refused(storage: Storage, key: str) -> None:
    with pytest.raises(ValueError, match="not a storage key"):
        storage.open_writer(key)
    with pytest.raises(ValueError, match="not a storage key"):
        storage.read_range(key, 0, 1)


def test_check(storage: Storage) -> None:
    storage.check()


def test_presigned_get(storage: Storage) -> None:
    key = new_recording_key(4)
    put(storage, key, b"RIFF-ish bytes")
    url = storage.presigned_get(key, 60, "65569ce0-0183-4f61-a3b2-0e433cfa4031.wav")
    if isinstance(storage, LocalStorage):
        assert url is None
        assert storage.local_path(key) == storage.path_for(key)
        return
    assert url is not None and "X-Amz-Expires=60" in url
    r = httpx.get(url)
    assert r.status_code == 200 and r.content == b"RIFF-ish bytes"
    assert "65569ce0-0183-4f61-a3b2-0e433cfa4031.wav" in r.headers["content-disposition"]
    r = httpx.get(url, headers={"Range": "bytes=0-3"})
    assert r.status_code == 206 and r.content == b"RIFF"
    assert storage.local_path(key) is None


def test_local_writes_are_renamed_into_place(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "r")
    key = new_recording_key(5)
    writer = storage.open_writer(key)
    writer.write(b"abc")
    temps = [p.name for p in storage.root.rglob("*") if p.is_file()]
    assert len(temps) == 1 and temps[0].startswith(".tmp-")
    writer.commit()
    assert [p for p in storage.root.rglob("*") if p.is_file()] == [storage.path_for(key)]


@pytest.mark.s3
def test_an_unreachable_bucket_fails_check(s3: S3Server, aws_env: None) -> None:
    storage = S3Storage("no-such-bucket", endpoint_url=s3.endpoint, region="us-east-1")
    with pytest.raises(StorageError):
        storage.check()


def test_storage_urls(tmp_path: Path) -> None:
    local = storage_from_url(f"file://{tmp_path}/rec")
    assert isinstance(local, LocalStorage) and local.root == (tmp_path / "rec").resolve()
    s3 = storage_from_url("s3://bucket/some/prefix/", endpoint_url="http://127.0.0.1:9", region="eu-west-1")
    assert isinstance(s3, S3Storage) and (s3.bucket, s3.prefix) == ("bucket", "some/prefix")
    assert s3.object_key("1/ab/" + "a" * 32 + ".wav") == "some/prefix/1/ab/" + "a" * 32 + ".wav"
    for bad in ("ftp://x/y", "s3:///nobucket", "file://host/path", "/just/a/path"):
        with pytest.raises(ValueError, match=r"storage URL|PBX_CDR_STORAGE_URL"):
            storage_from_url(bad)


def _stored(tmp_path: Path, data: bytes) -> tuple[LocalStorage, str]:
    storage = LocalStorage(tmp_path / "r")
    key = new_recording_key(5)
    writer = storage.open_writer(key)
    writer.write(data)
    writer.commit()
    return storage, key


def test_local_chunks_read_the_page_cache_without_a_thread(tmp_path: Path) -> None:
    data = os.urandom(3 * LOCAL_READ_CHUNK + 12345)
    storage, key = _stored(tmp_path, data)  # just written: in the page cache
    chunks = storage.read_range(key, 100, len(data) - 7)
    got = []
    while (chunk := chunks.next_if_cached()) is not None and chunk:
        assert isinstance(chunk, bytes) and len(chunk) <= LOCAL_READ_CHUNK
        got.append(chunk)
    assert chunk == b""  # the end, told apart from "not cached" (None)
    chunks.close()
    assert b"".join(got) == data[100:-7]


def test_local_chunks_mix_cached_and_blocking_reads(tmp_path: Path) -> None:
    # Whatever the page cache holds, the bytes come out once each, in order, whichever way each
    # chunk is read (the download reads cached ones on the event loop, the rest in a thread).
    data = os.urandom(5 * LOCAL_READ_CHUNK + 1)
    storage, key = _stored(tmp_path, data)
    chunks = storage.read_range(key, 0, len(data))
    got = []
    for turn in itertools.count():
        chunk = chunks.next_if_cached() if turn % 2 else next(chunks, None)
        if not chunk:
            if chunk is None and turn % 2:
                continue
            break
        got.append(chunk)
    assert b"".join(got) == data


def test_local_chunks_fall_back_where_reads_cannot_refuse_to_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_storage, "_NOWAIT", None)  # no RWF_NOWAIT (not Linux)
    storage, key = _stored(tmp_path, b"x" * 1000)
    chunks = storage.read_range(key, 0, 1000)
    assert chunks.next_if_cached() is None
    assert b"".join(chunks) == b"x" * 1000
    assert chunks.next_if_cached() == b""


def test_local_chunks_end_early_when_the_file_shrank(tmp_path: Path) -> None:
    storage, key = _stored(tmp_path, b"y" * 5000)
    chunks = storage.read_range(key, 0, 5000)
    os.truncate(storage.path_for(key), 1000)
    assert b"".join(chunks) == b"y" * 1000


def test_a_cached_download_lets_the_event_loop_serve_others_between_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Read on the event loop, a cached file's chunks would go out back to back while the socket takes
    # them (a send that does not wait never yields): the response yields after each one.
    data = os.urandom(8 * LOCAL_READ_CHUNK)
    storage, key = _stored(tmp_path, data)  # just written: in the page cache
    blocking: list[int] = []
    read_blocking = local_storage.LocalChunks.__next__

    def counted(chunks: local_storage.LocalChunks) -> bytes:
        blocking.append(1)
        return read_blocking(chunks)

    monkeypatch.setattr(local_storage.LocalChunks, "__next__", counted)
    ticks = 0
    sent: list[tuple[int, bytes]] = []  # (the other task's ticks when the chunk went out, the chunk)
    finished: list[int] = []

    async def send(message: dict[str, Any]) -> None:  # takes every byte at once, never waits
        if message["type"] == "http.response.body":
            sent.append((ticks, message.get("body", b"")))

    async def on_finish(size: int) -> None:
        finished.append(size)

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()  # the client stays connected
        return {"type": "http.disconnect"}

    async def main() -> None:
        nonlocal ticks
        response = StoredObjectResponse(
            storage.read_range(key, 0, len(data)),
            status_code=200,
            headers={"content-length": str(len(data))},
            media_type="audio/wav",
            on_finish=on_finish,
        )
        done = asyncio.Event()

        async def other_request() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0)

        other = asyncio.create_task(other_request())
        await response({"type": "http", "method": "GET", "asgi": {"version": "3.0"}}, receive, send)
        done.set()
        await other

    asyncio.run(main())
    chunks = [(at, body) for at, body in sent if body]
    assert b"".join(body for _, body in chunks) == data and finished == [len(data)]
    assert len(chunks) == 8
    assert blocking == []  # every chunk was read on the loop, none in a worker thread
    # Between any two chunks the other task ran.
    assert all(later > earlier for (earlier, _), (later, _) in itertools.pairwise(chunks))
