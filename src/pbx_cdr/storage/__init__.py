"""Where recording bytes live: one interface (:mod:`.base`), a local-disk and an S3 backend.

:func:`storage_from_settings` picks the backend from ``PBX_CDR_STORAGE_URL``: ``file:///PATH`` (the
default, under the data folder) or ``s3://BUCKET/PREFIX``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from pbx_cdr.config import Settings
from pbx_cdr.storage.base import ObjectMissing, ObjectStat, Storage, StorageError, Writer, new_recording_key
from pbx_cdr.storage.local import LocalStorage
from pbx_cdr.storage.s3 import S3Storage

__all__ = [
    "LocalStorage",
    "ObjectMissing",
    "ObjectStat",
    "S3Storage",
    "Storage",
    "StorageError",
    "Writer",
    "new_recording_key",
    "storage_from_settings",
]


class StorageConfigError(ValueError):
    """The storage settings cannot work; the message says which one."""


def storage_from_url(url: str, *, endpoint_url: str = "", region: str = "") -> Storage:
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise StorageConfigError(f"a file:// storage URL names a local folder, not a host: {url!r}")
        path = unquote(parts.path)
        if not path:
            raise StorageConfigError("the file:// storage URL has no folder")
        return LocalStorage(Path(path))
    if parts.scheme == "s3":
        if not parts.netloc:
            raise StorageConfigError(f"the s3:// storage URL has no bucket: {url!r}")
        return S3Storage(parts.netloc, unquote(parts.path), endpoint_url=endpoint_url, region=region)
    raise StorageConfigError(f"PBX_CDR_STORAGE_URL must be file://PATH or s3://BUCKET/PREFIX, not {url!r}")


def storage_from_settings(settings: Settings) -> Storage:
    storage = storage_from_url(
        settings.storage_url, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region
    )
    if settings.recording_links == "s3" and not isinstance(storage, S3Storage):
        raise StorageConfigError("PBX_CDR_RECORDING_LINKS=s3 needs PBX_CDR_STORAGE_URL=s3://...")
    return storage
