"""LfsStore on the blob store: object sources (add_source) and the S3 backend."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from haven.server import storage
from haven.server.storage import LfsStore, open_blob_store


class DictSource:
    """An object source over a dict of oid -> bytes (as Xet reconstructs files from xorbs)."""

    def __init__(self, *objects: bytes):
        self.objects = {hashlib.sha256(o).hexdigest(): o for o in objects}
        self.reads: list[tuple[str, int, int | None]] = []

    def has(self, oid: str) -> bool:
        return oid in self.objects

    def size(self, oid: str) -> int:
        return len(self.objects[oid])

    def read(self, oid: str, start: int = 0, end: int | None = None):
        self.reads.append((oid, start, end))
        data = self.objects[oid][start:end]
        return iter([data[i : i + 1000] for i in range(0, len(data), 1000)])


def test_sources_answer_for_objects_the_store_does_not_hold(tmp_path: Path):
    lfs = LfsStore(tmp_path / "lfs")
    data = os.urandom(5000)
    oid = hashlib.sha256(data).hexdigest()
    assert not lfs.has(oid)
    source = DictSource(data)
    lfs.add_source(source)
    assert lfs.has(oid) and not lfs.holds(oid) and lfs.size(oid) == len(data)
    assert b"".join(lfs.read(oid, 100, 2100)) == data[100:2100]
    with lfs.open(oid) as f:
        assert f.read(10) == data[:10] and f.read() == data[10:]
    assert lfs.local_path(oid) is None and lfs.download_url(oid, expires=60) is None
    # an LFS upload of bytes a source already produces stores nothing more
    lfs.put(oid, len(data), iter([data]))
    assert not lfs.holds(oid)
    with pytest.raises(storage.LfsVerifyError, match="size"):
        lfs.put(oid, len(data) + 1, iter([]))
    # objects nobody has are still missing, and the store is asked before the sources
    other = os.urandom(10)
    with pytest.raises(storage.LfsObjectMissing):
        lfs.read(hashlib.sha256(other).hexdigest())
    lfs.put(hashlib.sha256(other).hexdigest(), 10, iter([other]))
    source.reads.clear()
    assert b"".join(lfs.read(hashlib.sha256(other).hexdigest())) == other and source.reads == []


def _body(data: bytes, fail_after: int | None = None):
    async def body():
        for i in range(0, len(data), 65536):
            if fail_after is not None and i >= fail_after:
                raise ConnectionResetError("client went away")
            yield data[i : i + 65536]

    return body()


def test_s3_put_async_streams_into_a_multipart_upload(s3_bucket: str, tmp_path: Path):
    blobs = open_blob_store(f"s3://{s3_bucket}/p", tmp_path)
    lfs = LfsStore(tmp_path / "lfs", blobs=blobs)
    data = os.urandom(17 << 20)  # three 8 MiB parts
    oid = hashlib.sha256(data).hexdigest()
    parts = []
    real = blobs.client.upload_part
    blobs.client.upload_part = lambda **kw: parts.append(kw["PartNumber"]) or real(**kw)
    asyncio.run(lfs.put_async(oid, len(data), _body(data)))
    assert sorted(parts) == [1, 2, 3] and lfs.holds(oid) and lfs.size(oid) == len(data)
    with lfs.open(oid) as f:
        assert hashlib.sha256(f.read()).hexdigest() == oid
    assert lfs.local_path(oid) is None and lfs.download_url(oid, expires=60).startswith("http://127.0.0.1")
    with pytest.raises(TypeError, match="no local files"):
        lfs.path(oid)

    # a client that goes away mid-upload, and bytes that do not match: nothing in the bucket
    other = os.urandom(10 << 20)
    other_oid = hashlib.sha256(other).hexdigest()
    with pytest.raises(ConnectionResetError):
        asyncio.run(lfs.put_async(other_oid, len(other), _body(other, fail_after=9 << 20)))
    with pytest.raises(storage.LfsVerifyError):
        asyncio.run(lfs.put_async(other_oid, len(other), _body(other[:-1] + b"!")))
    assert not lfs.has(other_oid)
    assert blobs.client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert [o["Key"] for o in blobs.client.list_objects_v2(Bucket=s3_bucket)["Contents"]] == [f"p/lfs/{oid}"]


def test_lfs_store_settings_are_not_ignored(tmp_path: Path):
    blobs = open_blob_store(None, tmp_path)
    with pytest.raises(ValueError, match="settings of the local store"):
        LfsStore(tmp_path / "lfs", blobs=blobs, fsync=True)
    with pytest.raises(ValueError, match="DATA/lfs"):
        LfsStore(tmp_path / "objects")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
