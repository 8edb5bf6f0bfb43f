"""Recordings in an S3-compatible object store (AWS S3, MinIO, Ceph RGW, moto).

Configured by ``PBX_CDR_STORAGE_URL=s3://BUCKET/PREFIX``, ``PBX_CDR_S3_ENDPOINT_URL`` (for anything but
AWS), ``PBX_CDR_S3_REGION`` and the standard AWS credential chain (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, instance roles...), read by boto3 itself.

Uploads stream: bytes are buffered up to one part (8 MiB) and sent as a multipart upload, so memory
stays bounded whatever the size; a recording smaller than one part is a single PUT. Nothing is
visible under the key until the upload completes. Reads ask the store for the byte range only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from pbx_cdr.storage.base import READ_CHUNK, ObjectMissing, ObjectStat, StorageError, check_key

PART_SIZE = 8 * 1024 * 1024  # S3's minimum part is 5 MiB (except the last)
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Writer:
    def __init__(self, storage: S3Storage, key: str) -> None:
        self._s3 = storage
        self._key = storage.object_key(key)
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._closed = False

    def write(self, chunk: bytes) -> None:
        if self._closed:
            raise StorageError("the writer is closed")
        self._buffer += chunk
        while len(self._buffer) >= PART_SIZE:
            part = bytes(self._buffer[:PART_SIZE])
            del self._buffer[:PART_SIZE]
            self._send_part(part)

    def _send_part(self, part: bytes) -> None:
        client, bucket = self._s3.client, self._s3.bucket
        try:
            if self._upload_id is None:
                created = client.create_multipart_upload(
                    Bucket=bucket, Key=self._key, ContentType="audio/wav"
                )
                self._upload_id = str(created["UploadId"])
            number = len(self._parts) + 1
            sent = client.upload_part(
                Bucket=bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=part
            )
            self._parts.append({"PartNumber": number, "ETag": sent["ETag"]})
        except (BotoCoreError, ClientError) as exc:
            self.abort()
            raise StorageError(f"cannot upload to the object store: {exc}") from exc

    def commit(self) -> None:
        if self._closed:
            raise StorageError("the writer is closed")
        client, bucket = self._s3.client, self._s3.bucket
        try:
            if self._upload_id is None:
                client.put_object(
                    Bucket=bucket, Key=self._key, Body=bytes(self._buffer), ContentType="audio/wav"
                )
            else:
                if self._buffer:
                    self._send_part(bytes(self._buffer))
                client.complete_multipart_upload(
                    Bucket=bucket,
                    Key=self._key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                )
        except (BotoCoreError, ClientError) as exc:
            self.abort()
            raise StorageError(f"cannot upload to the object store: {exc}") from exc
        self._buffer = bytearray()
        self._closed = True

    def abort(self) -> None:
        self._buffer = bytearray()
        self._closed = True
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            # If this fails too, the bucket's lifecycle rule for incomplete uploads cleans up.
            with contextlib.suppress(BotoCoreError, ClientError):
                self._s3.client.abort_multipart_upload(
                    Bucket=self._s3.bucket, Key=self._key, UploadId=upload_id
                )


class S3Storage:
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        client: Any = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        # Path-style addressing for custom endpoints: MinIO and most on-premises stores need it.
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            retries={"max_attempts": 5, "mode": "standard"},
        )
        self.client = client or boto3.client(
            "s3", endpoint_url=endpoint_url or None, region_name=region or None, config=config
        )

    @property
    def description(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"

    def object_key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def open_writer(self, key: str) -> S3Writer:
        return S3Writer(self, key)

    def read_range(self, key: str, start: int, end: int) -> Iterator[bytes]:
        if end <= start:
            return iter(())
        try:
            response = self.client.get_object(
                Bucket=self.bucket, Key=self.object_key(key), Range=f"bytes={start}-{end - 1}"
            )
        except ClientError as exc:
            if _code(exc) in _MISSING_CODES:
                raise ObjectMissing(key) from exc
            raise StorageError(f"cannot read from the object store: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot read from the object store: {exc}") from exc
        return self._chunks(response["Body"])

    @staticmethod
    def _chunks(body: Any) -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(READ_CHUNK)
        finally:
            body.close()

    def stat(self, key: str) -> ObjectStat | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if _code(exc) in _MISSING_CODES:
                return None
            raise StorageError(f"cannot reach the object store: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot reach the object store: {exc}") from exc
        return ObjectStat(size=int(head["ContentLength"]))

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot delete from the object store: {exc}") from exc

    def local_path(self, key: str) -> Path | None:
        return None

    def presigned_get(self, key: str, ttl: int, filename: str) -> str | None:
        url: str = self.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": self.object_key(key),
                "ResponseContentType": "audio/wav",
                "ResponseContentDisposition": f'attachment; filename="{filename}"',
                "ResponseCacheControl": "no-store",
            },
            ExpiresIn=ttl,
        )
        return url

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"the bucket {self.bucket!r} cannot be reached: {exc}") from exc
