"""Storing a recording: bytes to storage, facts to the database, the two kept consistent.

The order is what makes it safe:

1. the bytes stream into storage under a fresh key of ours, checked as WAV and hashed on the way;
2. they are made durable (fsync and rename, or a completed upload) before anything else happens;
3. one transaction points the call's recording row at the new key;
4. only after that commit are the old bytes deleted.

A failure before 3 removes the new bytes and leaves no row; a crash between 3 and 4 leaves an
unreferenced old file, never a row without its bytes. The upload route and ``import recordings``
both go through :class:`IncomingRecording` and :func:`save_recording`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Engine

from pbx_cdr.audio import NotAWav, WavInfo, WavSniffer
from pbx_cdr.db import engine as db
from pbx_cdr.db.queries import calls as call_queries
from pbx_cdr.db.queries import recordings as queries
from pbx_cdr.storage.base import Storage, StorageError, Writer, new_recording_key

log = logging.getLogger(__name__)


class TooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"The recording must not be larger than {limit} bytes.")
        self.limit = limit


@dataclass(frozen=True)
class StoredBytes:
    version: queries.NewVersion
    info: WavInfo


@dataclass(frozen=True)
class SaveResult:
    recording_id: int
    status: str  # created, replaced or unchanged
    call_found: bool
    stored: StoredBytes


class IncomingRecording:
    """One upload in progress: fed chunk by chunk, refused as early as the bytes allow."""

    def __init__(self, storage: Storage, account_id: int, max_bytes: int) -> None:
        self.storage = storage
        self.key = new_recording_key(account_id)
        self.max_bytes = max_bytes
        self.size = 0
        self._hash = hashlib.sha256()
        self._sniffer = WavSniffer()
        self._writer: Writer | None = None
        self._done = False

    def feed(self, chunk: bytes) -> None:
        """Check, hash and write one chunk. Raises NotAWav or TooLarge (the upload is then aborted)."""
        if not chunk:
            return
        self.size += len(chunk)
        try:
            if self.size > self.max_bytes:
                raise TooLarge(self.max_bytes)
            self._sniffer.feed(chunk)
            self._hash.update(chunk)
            if self._writer is None:
                self._writer = self.storage.open_writer(self.key)
            self._writer.write(chunk)
        except BaseException:
            self.abort()
            raise

    def finish(self) -> StoredBytes:
        """Validate the whole file and make it durable under :attr:`key`."""
        try:
            info = self._sniffer.finish(self.size)
            assert self._writer is not None  # a valid header means bytes were written
            self._writer.commit()
        except BaseException:
            self.abort()
            raise
        self._done = True
        version = queries.NewVersion(
            storage_key=self.key,
            file_size=self.size,
            duration=info.duration_for(self.size),
            sha256=self._hash.hexdigest(),
            audio_format=info.audio_format,
        )
        return StoredBytes(version=version, info=info)

    def abort(self) -> None:
        if self._writer is not None and not self._done:
            self._writer.abort()
        self._done = True


def save_recording(
    engine: Engine,
    storage: Storage,
    account_id: int,
    uuid: str,
    stored: StoredBytes,
    *,
    recorded_ts: int | None,
    now: int,
) -> SaveResult:
    """Attach durable bytes to the call ``uuid`` (which may not have arrived yet)."""
    try:
        with db.write(engine) as conn:
            saved = queries.save_version(
                conn, account_id, uuid, stored.version, recorded_ts=recorded_ts, now=now
            )
            call_found = bool(queries.existing_calls(conn, account_id, [uuid]))
            if call_found:
                call_queries.set_recording_available(conn, account_id, uuid, True)
    except BaseException:
        discard(storage, stored.version.storage_key)
        raise
    if saved.stale_key is not None:
        discard(storage, saved.stale_key)
    return SaveResult(recording_id=saved.id, status=saved.status, call_found=call_found, stored=stored)


def store_chunks(
    engine: Engine,
    storage: Storage,
    account_id: int,
    uuid: str,
    chunks: Iterable[bytes],
    *,
    max_bytes: int,
    recorded_ts: int | None,
    now: int,
) -> SaveResult:
    """The whole path for bytes already at hand (a file, generated audio): stream, check, save."""
    incoming = IncomingRecording(storage, account_id, max_bytes)
    try:
        for chunk in chunks:
            incoming.feed(chunk)
        stored = incoming.finish()
    finally:
        incoming.abort()
    return save_recording(engine, storage, account_id, uuid, stored, recorded_ts=recorded_ts, now=now)


def delete_recording(engine: Engine, storage: Storage, account_id: int, uuid: str) -> bool:
    """Remove a call's recording: the row first (links stop working), then the bytes."""
    with db.write(engine) as conn:
        key = queries.delete_for_call(conn, account_id, uuid)
        if key is not None:
            call_queries.set_recording_available(conn, account_id, uuid, False)
    if key is None:
        return False
    discard(storage, key)
    return True


def discard(storage: Storage, key: str) -> None:
    """Delete bytes no row points at. A failure only leaves an orphan, so it is logged, not raised."""
    try:
        storage.delete(key)
    except (StorageError, OSError) as exc:
        log.warning("could not delete unreferenced recording bytes %s: %s", key, exc)


__all__ = [
    "IncomingRecording",
    "NotAWav",
    "SaveResult",
    "StoredBytes",
    "TooLarge",
    "delete_recording",
    "save_recording",
    "store_chunks",
]
