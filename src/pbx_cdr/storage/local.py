"""Recordings on local disk: one file per key under a root folder.

Durability: a file is written under a temporary name in its final folder, fsynced, renamed over its
key and the folder fsynced, all before :meth:`LocalWriter.commit` returns. A crash at any point
leaves either no file or the complete one; stray temporary files start with ``.tmp-`` and are never
served.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from pbx_cdr.storage.base import ObjectMissing, ObjectStat, StorageError, check_key

TEMP_PREFIX = ".tmp-"
# Reads from a local file are mostly page-cache copies, made on the event loop when the pages are
# cached (LocalChunks.next_if_cached). Below glibc's mmap threshold (pbx_cdr/memory.py, 256 KiB), so a
# chunk's buffer comes from the heap and is reused: 1 MiB chunks were each a fresh mmap, zeroed and
# faulted in page by page (measured on a 50 MB download, same moment: 1.6-1.8 GB/s at 1 MiB, 2.2 at 224 KiB).
LOCAL_READ_CHUNK = 224 * 1024
# preadv2's "fail rather than wait for the disk" flag (Linux 4.14+); without it every read is a thread's.
_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalWriter:
    def __init__(self, storage: LocalStorage, key: str) -> None:
        self._final = storage.path_for(key)
        folder = self._final.parent
        storage.make_folder(folder)
        self._temp = folder / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        try:
            self._file: BinaryIO | None = open(self._temp, "xb")  # noqa: SIM115 - closed in commit/abort
        except OSError as exc:
            raise StorageError(f"cannot create a file in {folder}: {exc.strerror}") from exc

    def write(self, chunk: bytes) -> None:
        if self._file is None:
            raise StorageError("the writer is closed")
        try:
            self._file.write(chunk)
        except OSError as exc:
            self.abort()
            raise StorageError(f"cannot write the recording: {exc.strerror}") from exc

    def commit(self) -> None:
        if self._file is None:
            raise StorageError("the writer is closed")
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            os.replace(self._temp, self._final)
            _fsync_dir(self._final.parent)
        except OSError as exc:
            self.abort()
            raise StorageError(f"cannot store the recording: {exc.strerror}") from exc

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._temp.unlink(missing_ok=True)


class LocalStorage:
    """Files under ``root``; keys are relative paths we made ourselves (see ``base.check_key``)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    @property
    def description(self) -> str:
        return f"file://{self.root}"

    def path_for(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root):  # belt and braces: check_key already forbids '..'
            raise ValueError(f"key {key!r} leaves the storage folder")
        return path

    def make_folder(self, folder: Path) -> None:
        """Create ``folder`` and fsync each new level's parent, so the new entries survive a crash."""
        missing = []
        current = folder
        while not current.exists() and current != current.parent:
            missing.append(current)
            current = current.parent
        for level in reversed(missing):
            try:
                level.mkdir(exist_ok=True)
                _fsync_dir(level.parent)
            except OSError as exc:
                raise StorageError(f"cannot create {level}: {exc.strerror}") from exc

    def open_writer(self, key: str) -> LocalWriter:
        return LocalWriter(self, key)

    def read_range(self, key: str, start: int, end: int) -> LocalChunks:
        return LocalChunks(self._open(key), start, end)

    def _open(self, key: str) -> BinaryIO:
        try:
            return open(self.path_for(key), "rb")
        except FileNotFoundError as exc:
            raise ObjectMissing(key) from exc
        except OSError as exc:
            raise StorageError(f"cannot read the recording: {exc.strerror}") from exc

    def stat(self, key: str) -> ObjectStat | None:
        try:
            return ObjectStat(size=self.path_for(key).stat().st_size)
        except FileNotFoundError:
            return None

    def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def delete(self, key: str) -> None:
        path = self.path_for(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        _fsync_dir(path.parent)

    def local_path(self, key: str) -> Path | None:
        return self.path_for(key)

    def presigned_get(self, key: str, ttl: int, filename: str) -> str | None:
        return None

    def check(self) -> None:
        try:
            self.make_folder(self.root)
        except StorageError:
            raise
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"the storage folder {self.root} is not writable")


class LocalChunks(Iterator[bytes]):
    """Bytes ``[start, end)`` of an open file, in chunks of :data:`LOCAL_READ_CHUNK`.

    ``next()`` may wait for the disk (run it in a worker thread); :meth:`next_if_cached` never does,
    so a download reads what the page cache holds on the event loop, without a thread hop per chunk.
    """

    def __init__(self, handle: BinaryIO, start: int, end: int) -> None:
        self._handle = handle
        self._fd = handle.fileno()
        self._offset = start
        self._end = end
        self._nowait = _NOWAIT  # None once the file system has refused the flag

    def __next__(self) -> bytes:
        if self._offset >= self._end:
            raise StopIteration
        chunk = os.pread(self._fd, min(LOCAL_READ_CHUNK, self._end - self._offset), self._offset)
        if not chunk:  # the file is shorter than it was: end here
            self._end = self._offset
            raise StopIteration
        self._offset += len(chunk)
        return chunk

    def next_if_cached(self) -> bytes | None:
        """The next chunk if the page cache holds (part of) it, ``b""`` at the end, or None when
        reading would wait for the disk (then use ``next()``, in a worker thread)."""
        if self._offset >= self._end:
            return b""
        if self._nowait is None:
            return None
        buffer = bytearray(min(LOCAL_READ_CHUNK, self._end - self._offset))
        try:
            size = os.preadv(self._fd, [buffer], self._offset, self._nowait)
        except BlockingIOError:  # not cached (EAGAIN)
            return None
        except OSError:  # no RWF_NOWAIT on this file system (EOPNOTSUPP): stop asking
            self._nowait = None
            return None
        if size == 0:
            return None  # end of file before ``end``, or nothing cached: next() tells which
        self._offset += size
        del buffer[size:]
        return bytes(buffer)

    def close(self) -> None:
        self._handle.close()
