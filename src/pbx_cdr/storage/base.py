"""The storage interface: where recording bytes live, behind five operations.

Two backends implement it: :mod:`.local` (a folder; the embedded default) and :mod:`.s3` (any
S3-compatible object store). Callers never build keys from client input: :func:`new_recording_key`
makes them from our own ids, and every backend refuses a key outside :data:`KEY_PATTERN`.

The interface is synchronous; async routes call it through a worker thread, one chunk at a time.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

KEY_PATTERN = re.compile(r"^[0-9]{1,12}/[0-9a-f]{2}/[0-9a-f]{32}\.wav\Z")
READ_CHUNK = 64 * 1024


class StorageError(Exception):
    """The storage backend failed (disk full, object store unreachable)."""


class ObjectMissing(StorageError):
    """No object under that key (deleted, or never written)."""


@dataclass(frozen=True)
class ObjectStat:
    size: int


def new_recording_key(account_id: int) -> str:
    """A fresh key for one version of a recording: the account, then a random id of ours.

    Every upload gets a new key, so a replacement is written beside the old bytes and the database
    switches to it only once it is durable.
    """
    name = secrets.token_hex(16)
    return f"{int(account_id)}/{name[:2]}/{name}.wav"


def check_key(key: str) -> str:
    if not KEY_PATTERN.match(key):
        raise ValueError(f"not a storage key of ours: {key!r}")
    return key


class Writer(Protocol):
    """One object being written. Nothing is visible under the key before :meth:`commit` returns."""

    def write(self, chunk: bytes) -> None: ...

    def commit(self) -> None:
        """Make the bytes durable and visible under the key (fsync and rename; complete upload)."""
        ...

    def abort(self) -> None:
        """Drop everything written so far; safe to call more than once and after a failure."""
        ...


class Storage(Protocol):
    """Recording bytes by key."""

    @property
    def description(self) -> str:
        """Where the bytes go, for operators (never with credentials)."""
        ...

    def open_writer(self, key: str) -> Writer: ...

    def read_range(self, key: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``start`` to ``end`` (exclusive), in chunks of a size the backend picks.

        Raises :class:`ObjectMissing` before yielding anything when the object is gone. The iterator
        may also offer ``next_if_cached() -> bytes | None``: the next chunk if it can be read without
        waiting (``b""`` at the end), else None; downloads then read those on the event loop
        (``local.LocalChunks``; ``api/ranges.py``).
        """
        ...

    def stat(self, key: str) -> ObjectStat | None: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove the object; no error when it is already gone."""
        ...

    def local_path(self, key: str) -> Path | None:
        """The file behind a key when the bytes are on this machine's disk (for sendfile), else None."""
        ...

    def presigned_get(self, key: str, ttl: int, filename: str) -> str | None:
        """A time-limited URL that downloads the object from the store itself, if the store can."""
        ...

    def check(self) -> None:
        """Raise :class:`StorageError` when the storage cannot be used (readiness)."""
        ...
