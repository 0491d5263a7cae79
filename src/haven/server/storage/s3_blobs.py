"""The S3-compatible backend of the blob store (see blobs.py), through boto3.

Endpoint, region and credentials come from the standard AWS settings (AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_PROFILE, ~/.aws/config ...). A key `k` is
stored as `<prefix>/k` in the bucket.

Writes are multipart uploads of `part_size` parts (at least 8 MiB; S3's minimum is 5 MiB), a few
sent at once while the next fills, so memory stays bounded (about four parts): nothing is visible under the key until `complete_multipart_upload`, which runs
only after the sha256 checked out. Any failure aborts the upload, so the bucket keeps nothing of
it. Objects smaller than one part go up in one `put_object`, after the check.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

from .blobs import READ_BLOCK, BlobEntry, BlobNotFound, BlobStoreError, _Hashing, check_key, check_range

DEFAULT_PART_SIZE = 8 << 20
PARTS_IN_FLIGHT = 3  # parts uploading at once, while the next one fills (memory: 4 parts per upload)
STALE_UPLOAD = 24 * 3600  # sweep_tmp aborts multipart uploads older than this
_SETTINGS = "--blob-store / HAVEN_BLOB_STORE"


def _code(err: Exception) -> str:
    return str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))


def _missing(err: Exception) -> bool:
    return _code(err) in ("404", "NoSuchKey", "NotFound")


def _disposition(filename: str) -> str:
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


class S3BlobStore:
    """Objects in `bucket` under `prefix`. Build with `S3BlobStore.connect` (checks the bucket)."""

    def __init__(self, client, bucket: str, prefix: str = "", *, part_size: int = DEFAULT_PART_SIZE):
        if part_size < DEFAULT_PART_SIZE:
            raise ValueError(f"part_size must be at least {DEFAULT_PART_SIZE} bytes, not {part_size}")
        self.client, self.bucket, self.prefix, self.part_size = client, bucket, prefix.strip("/"), part_size

    def __repr__(self) -> str:
        return f"S3BlobStore('s3://{self.bucket}/{self.prefix}')"

    @classmethod
    def connect(cls, bucket: str, prefix: str = "", **kwargs) -> S3BlobStore:
        """A store on `bucket`, after checking that the bucket exists and the credentials may use
        it; BlobStoreError naming the setting to fix otherwise."""
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

        if not bucket:
            raise BlobStoreError(f"{_SETTINGS}: s3:// needs a bucket name, as in s3://bucket/prefix.")
        try:
            client = boto3.session.Session().client("s3")  # a new session reads the settings now
            client.head_bucket(Bucket=bucket)
        except NoCredentialsError:
            raise BlobStoreError(
                f"{_SETTINGS}=s3://{bucket}: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE / ~/.aws/credentials)."
            ) from None
        except NoRegionError:
            raise BlobStoreError(f"{_SETTINGS}=s3://{bucket}: no AWS region set; set AWS_REGION.") from None
        except ClientError as err:
            code = _code(err)
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise BlobStoreError(
                    f"{_SETTINGS}=s3://{bucket}: the bucket {bucket!r} does not exist at "
                    f"{client.meta.endpoint_url} (AWS_ENDPOINT_URL); create it first."
                ) from None
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise BlobStoreError(
                    f"{_SETTINGS}=s3://{bucket}: access to the bucket was refused ({code}); check "
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)."
                ) from None
            raise BlobStoreError(f"{_SETTINGS}=s3://{bucket}: {err}") from None
        except BotoCoreError as err:
            raise BlobStoreError(
                f"{_SETTINGS}=s3://{bucket}: cannot reach the S3 endpoint ({err}); check AWS_ENDPOINT_URL."
            ) from None
        return cls(client, bucket, prefix, **kwargs)

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _head(self, key: str) -> dict | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as err:
            if _missing(err):
                return None
            raise

    def put(self, key: str, chunks: Iterable[bytes], *, sha256: str | None = None) -> int:
        head = self._head(key)
        if head is not None:
            return int(head["ContentLength"])
        name, state = self._key(key), _Hashing(key, sha256)
        buffer, upload_id, parts, sent = bytearray(), None, [], []
        try:
            with ThreadPoolExecutor(PARTS_IN_FLIGHT, thread_name_prefix="s3-part") as pool:
                try:
                    for chunk in chunks:
                        state.update(chunk)
                        buffer += chunk
                        if len(buffer) >= self.part_size:
                            if upload_id is None:
                                upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=name)[
                                    "UploadId"
                                ]
                            if len(sent) - len(parts) >= PARTS_IN_FLIGHT:  # bound the memory held
                                parts.append(sent[len(parts)].result())
                            sent.append(pool.submit(self._part, name, upload_id, len(sent) + 1, bytes(buffer)))
                            buffer = bytearray()
                    state.verify()
                    if upload_id is not None and buffer:
                        sent.append(pool.submit(self._part, name, upload_id, len(sent) + 1, bytes(buffer)))
                    parts += [f.result() for f in sent[len(parts) :]]
                except BaseException:
                    for future in sent:
                        future.cancel()
                    raise
            if upload_id is None:
                self.client.put_object(Bucket=self.bucket, Key=name, Body=bytes(buffer))
            else:
                self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=name, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
        except BaseException:
            if upload_id is not None:  # the pool has finished: no part arrives after the abort
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)
            raise
        return state.size

    def _part(self, name: str, upload_id: str, number: int, data: bytes) -> dict:
        answer = self.client.upload_part(
            Bucket=self.bucket, Key=name, UploadId=upload_id, PartNumber=number, Body=data
        )
        return {"PartNumber": number, "ETag": answer["ETag"]}

    def exists(self, key: str) -> bool:
        try:
            return self._head(key) is not None
        except ValueError:
            return False

    def size(self, key: str) -> int:
        head = self._head(key)
        if head is None:
            raise BlobNotFound(f"{key} is not in the blob store.")
        return int(head["ContentLength"])

    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes [start, end) of `key`: one ranged GET, started now (BlobNotFound, ValueError for
        a range outside the object), read as the iterator is consumed."""
        stop = check_range(start, end, self.size(key), key)
        if stop == start:
            return iter(())
        try:
            body = self.client.get_object(
                Bucket=self.bucket, Key=self._key(key), Range=f"bytes={start}-{stop - 1}"
            )["Body"]
        except Exception as err:
            if _missing(err):
                raise BlobNotFound(f"{key} is not in the blob store.") from None
            raise
        return _stream(body)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def presigned_url(self, key: str, *, expires: int, filename: str | None = None) -> str | None:
        params = {"Bucket": self.bucket, "Key": self._key(key)}
        if filename:
            params["ResponseContentDisposition"] = _disposition(filename)
        return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires)

    def local_path(self, key: str) -> Path | None:
        return None

    def entries(self, prefix: str) -> Iterator[BlobEntry]:
        base = f"{self.prefix}/" if self.prefix else ""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base + prefix)
        for page in pages:
            for item in page.get("Contents", []):
                yield BlobEntry(item["Key"][len(base):], int(item["Size"]), item["LastModified"].timestamp())

    def sweep_tmp(self) -> int:
        """Abort multipart uploads under the prefix that a killed process left (started more than a
        day ago, so uploads of other running servers are left alone); returns how many."""
        removed = 0
        listing = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self.prefix)
        for upload in listing.get("Uploads", []):
            if time.time() - upload["Initiated"].timestamp() > STALE_UPLOAD:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                removed += 1
        return removed


def _stream(body) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(READ_BLOCK)
    finally:
        body.close()
