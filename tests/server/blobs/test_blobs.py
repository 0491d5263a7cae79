"""The blob store contract, on both backends: local files and S3 (moto's server, see conftest)."""

from __future__ import annotations

import hashlib
import os
import time
import urllib.request
from pathlib import Path

import pytest

from haven.server.storage import open_blob_store
from haven.server.storage.blobs import (
    BlobIntegrityError,
    BlobNotFound,
    BlobStoreError,
    LocalBlobStore,
    usage,
)
from haven.server.storage.s3_blobs import S3BlobStore


def pieces(data: bytes, n: int = 100_000):
    for i in range(0, len(data), n):
        yield data[i : i + n]


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path: Path):
    if request.param == "local":
        return LocalBlobStore(tmp_path / "data")
    bucket = request.getfixturevalue("s3_bucket")
    return open_blob_store(f"s3://{bucket}/some/prefix", tmp_path / "data")


def _leftovers(store) -> list:
    """What a failed put could have left: temp files, stored objects, open multipart uploads."""
    if isinstance(store, LocalBlobStore):
        return [p for p in store.root.rglob("*") if p.is_file()]
    objects = store.client.list_objects_v2(Bucket=store.bucket).get("Contents", [])
    uploads = store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
    return objects + uploads


def test_put_read_size_delete(store):
    data = os.urandom(300_001)
    sha = hashlib.sha256(data).hexdigest()
    key = f"lfs/{sha}"
    assert not store.exists(key)
    assert store.put(key, pieces(data), sha256=sha) == len(data)
    assert store.exists(key) and store.size(key) == len(data)
    assert b"".join(store.read(key)) == data
    assert b"".join(store.read(key, 1000, 250_000)) == data[1000:250_000]
    assert b"".join(store.read(key, 5, 5)) == b""
    assert b"".join(store.read(key, 299_999)) == data[299_999:]
    with pytest.raises(ValueError, match="outside"):
        store.read(key, 10, len(data) + 1)
    store.delete(key)
    assert not store.exists(key)
    with pytest.raises(BlobNotFound):
        store.size(key)
    with pytest.raises(BlobNotFound):
        store.read(key)


def test_put_is_idempotent_and_does_not_read_again(store):
    data = b"hello blob"
    assert store.put("xet/xorbs/abcdef", [data]) == len(data)

    def never():
        raise AssertionError("an existing key must not be written again")
        yield b""

    assert store.put("xet/xorbs/abcdef", never()) == len(data)
    assert b"".join(store.read("xet/xorbs/abcdef")) == data


def test_corrupt_upload_stores_nothing(store):
    data = os.urandom(200_000)
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(BlobIntegrityError, match="nothing stored"):
        store.put(f"lfs/{wrong}", pieces(data), sha256=wrong)
    assert not store.exists(f"lfs/{wrong}")
    assert _leftovers(store) == []


def test_failing_stream_stores_nothing(store):
    def broken():
        yield os.urandom(1000)
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        store.put("lfs/" + "a" * 64, broken())
    assert _leftovers(store) == []


def test_entries_and_usage_by_prefix(store):
    before = time.time() - 5  # S3 keeps whole seconds; a clock may be a little apart
    store.put("xet/xorbs/" + "1" * 64, [b"x" * 10])
    store.put("xet/xorbs/" + "2" * 64, [b"x" * 20])
    store.put("xet/shards/" + "3" * 64, [b"x" * 5])
    store.put("lfs/" + "4" * 64, [b"x" * 7])
    entries = sorted(store.entries("xet/"))
    assert [(e.key, e.size) for e in entries] == [
        ("xet/shards/" + "3" * 64, 5), ("xet/xorbs/" + "1" * 64, 10), ("xet/xorbs/" + "2" * 64, 20)]
    assert all(before <= e.modified <= time.time() + 5 for e in entries)
    assert usage(store, "xet/xorbs/") == (2, 30)
    assert usage(store, "xet/") == (3, 35)
    assert usage(store, "lfs/") == (1, 7)
    assert usage(store, "nothing/") == (0, 0)


def test_keys_are_checked(store):
    for bad in ("", "../etc/passwd", "lfs/../x", "/abs", "lfs//x", "lfs/.hidden"):
        with pytest.raises(ValueError, match="Invalid blob key"):
            store.put(bad, [b"x"])
        assert not store.exists(bad)


def test_local_layout_keeps_lfs_objects_where_they_were(tmp_path: Path):
    store = open_blob_store(None, tmp_path)
    oid = hashlib.sha256(b"abc").hexdigest()
    store.put(f"lfs/{oid}", [b"abc"], sha256=oid)
    path = tmp_path / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
    assert store.local_path(f"lfs/{oid}") == path and path.read_bytes() == b"abc"
    assert store.presigned_url(f"lfs/{oid}", expires=60) is None
    assert not any(p.is_file() for p in (tmp_path / "tmp").rglob("*"))  # the temporary file went


def test_s3_multipart_upload_and_presigned_get(s3_bucket: str, tmp_path: Path):
    store = open_blob_store(f"s3://{s3_bucket}", tmp_path)
    assert isinstance(store, S3BlobStore) and store.local_path("lfs/x") is None
    data = os.urandom(2 * store.part_size + 12345)  # three parts
    sha = hashlib.sha256(data).hexdigest()
    calls = []
    real = store.client.upload_part
    store.client.upload_part = lambda **kw: calls.append(kw["PartNumber"]) or real(**kw)
    assert store.put(f"lfs/{sha}", pieces(data, 1 << 20), sha256=sha) == len(data)
    assert sorted(calls) == [1, 2, 3]
    head = store.client.head_object(Bucket=s3_bucket, Key=f"lfs/{sha}")
    assert head["ContentLength"] == len(data)

    url = store.presigned_url(f"lfs/{sha}", expires=60, filename="model weights.bin")
    assert url.startswith(os.environ["AWS_ENDPOINT_URL"])
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=100-199"})) as r:
        assert r.status == 206 and r.read() == data[100:200]
        assert "model%20weights.bin" in r.headers["Content-Disposition"]
    with urllib.request.urlopen(url) as r:
        assert hashlib.sha256(r.read()).hexdigest() == sha


def test_s3_corrupt_multipart_upload_is_aborted(s3_bucket: str, tmp_path: Path):
    store = open_blob_store(f"s3://{s3_bucket}/p", tmp_path)
    data = os.urandom(store.part_size + 1)
    wrong = "0" * 64
    with pytest.raises(BlobIntegrityError):
        store.put(f"lfs/{wrong}", pieces(data, 1 << 20), sha256=wrong)
    assert store.client.list_objects_v2(Bucket=s3_bucket).get("KeyCount", 0) == 0
    assert store.client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_missing_bucket_names_the_setting(s3_endpoint: str, tmp_path: Path):
    with pytest.raises(BlobStoreError, match=r"HAVEN_BLOB_STORE.*'no-such-bucket' does not exist"):
        open_blob_store("s3://no-such-bucket/x", tmp_path)


def test_missing_credentials_name_the_settings(s3_endpoint: str, tmp_path: Path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(BlobStoreError, match="AWS_ACCESS_KEY_ID"):
        open_blob_store("s3://any-bucket", tmp_path)


def test_unsupported_scheme_is_refused(tmp_path: Path):
    with pytest.raises(BlobStoreError, match="not supported"):
        open_blob_store("gs://bucket/prefix", tmp_path)
    with pytest.raises(BlobStoreError, match="bucket name"):
        open_blob_store("s3://", tmp_path)


def test_rejected_credentials_name_the_settings(tmp_path: Path, monkeypatch):
    """A moto server that checks credentials (IAM on from the first request) refuses unknown keys."""
    from server.blobs.conftest import aws_env, moto_server

    with moto_server(tmp_path / "moto.log", {"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as url:
        for name, value in aws_env(url).items():
            monkeypatch.setenv(name, value)
        with pytest.raises(BlobStoreError, match=r"refused \(403\); check AWS_ACCESS_KEY_ID"):
            open_blob_store("s3://some-bucket", tmp_path)


def test_blob_store_setting_flag_wins_over_environment(tmp_path: Path, monkeypatch):
    from haven.server.settings import Settings

    monkeypatch.setenv("HAVEN_BLOB_STORE", "s3://from-env/p")
    assert Settings.load(data_dir=tmp_path).blob_store == "s3://from-env/p"
    assert Settings.load(data_dir=tmp_path, blob_store=str(tmp_path / "b")).blob_store == str(tmp_path / "b")
    monkeypatch.delenv("HAVEN_BLOB_STORE")
    assert Settings.load(data_dir=tmp_path).blob_store == ""
    store = open_blob_store(str(tmp_path / "b"), tmp_path)  # a directory of its own
    store.put("lfs/" + "5" * 64, [b"x"])
    assert (tmp_path / "b" / "lfs" / "objects" / "55" / "55" / ("5" * 64)).is_file()


def test_s3_failing_part_aborts_the_upload(s3_bucket: str, tmp_path: Path):
    store = open_blob_store(f"s3://{s3_bucket}", tmp_path)
    real = store.client.upload_part

    def flaky(**kw):
        if kw["PartNumber"] == 2:
            raise ConnectionError("the network dropped part 2")
        return real(**kw)

    store.client.upload_part = flaky
    with pytest.raises(ConnectionError, match="part 2"):
        store.put("lfs/" + "b" * 64, pieces(os.urandom(3 * store.part_size), 1 << 20))
    assert store.client.list_objects_v2(Bucket=s3_bucket).get("KeyCount", 0) == 0
    assert store.client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
