"""`haven serve --blob-store s3://...` end to end (moto's S3 server, see conftest): the hub's LFS-path
client tests run here again on the S3 backend, downloads are 302s to presigned URLs of the bucket,
git clone + git lfs get the bytes, and refusals leave nothing in the bucket."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import httpx
import pytest

from fixtures.server import start_server, unique_name
from server import test_hub_client as client_tests

# The LFS-path client tests (HF_HUB_DISABLE_XET=1, set by tests/conftest.py) run again on this
# folder's S3 hub, in their file's order (the upload comes first).
owner, folder, uploaded = client_tests.owner, client_tests.folder, client_tests.uploaded
test_upload_folder_stores_regular_and_lfs_files = client_tests.test_upload_folder_stores_regular_and_lfs_files
test_create_commit_with_deletes_and_parent = client_tests.test_create_commit_with_deletes_and_parent
test_hf_hub_download_cache_hit_and_snapshot = client_tests.test_hf_hub_download_cache_hit_and_snapshot
test_client_resumes_with_range = client_tests.test_client_resumes_with_range


def _bucket_keys(hub_server) -> dict[str, int]:
    s3 = boto3.client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=hub_server.bucket)
    return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}


def _open_uploads(hub_server) -> list:
    return boto3.client("s3").list_multipart_uploads(Bucket=hub_server.bucket).get("Uploads", [])


def test_lfs_objects_live_in_the_bucket_and_downloads_redirect(hub_server, owner, folder, uploaded):
    _, token, api = owner
    repo_id, _ = uploaded
    data = (folder / "big.txt").read_bytes()  # 11 MiB: two multipart parts
    oid = hashlib.sha256(data).hexdigest()
    assert _bucket_keys(hub_server)[f"hub/lfs/{oid}"] == len(data)
    assert not list((hub_server.data_dir / "lfs" / "objects").rglob("*" + oid))  # no local copy

    auth = {"authorization": f"Bearer {token}"}
    url = f"{hub_server.url}/{repo_id}/resolve/main/big.txt"
    r = httpx.get(url, headers=auth)
    assert r.status_code == 302 and r.content == b""
    location = r.headers["location"]
    assert location.startswith(os.environ["AWS_ENDPOINT_URL"] + "/")
    assert r.headers["x-linked-etag"].strip('"') == oid and int(r.headers["x-linked-size"]) == len(data)
    part = httpx.get(location, headers={"Range": "bytes=1000-1999"})  # the client sends Range to S3
    assert part.status_code == 206 and part.content == data[1000:2000]
    assert "big.txt" in part.headers["content-disposition"]
    assert httpx.get(url, headers=auth, follow_redirects=True).content == data

    # the LFS batch API hands git-lfs the bucket's URL too
    batch = httpx.post(
        f"{hub_server.url}/{repo_id}.git/info/lfs/objects/batch",
        headers={**auth, "accept": "application/vnd.git-lfs+json"},
        json={"operation": "download", "objects": [{"oid": oid, "size": len(data)}]},
    )
    href = batch.json()["objects"][0]["actions"]["download"]["href"]
    assert href.startswith(os.environ["AWS_ENDPOINT_URL"] + "/")
    assert hashlib.sha256(httpx.get(href).content).hexdigest() == oid


def test_corrupt_lfs_upload_leaves_nothing_in_the_bucket(hub_server, owner):
    _, token, api = owner
    repo_id = f"{owner[0]}/{unique_name('corrupt')}"
    api.create_repo(repo_id)
    data = os.urandom(9 << 20)  # over one 8 MiB part: a multipart upload is under way when it fails
    oid = hashlib.sha256(data).hexdigest()
    batch = httpx.post(
        f"{hub_server.url}/{repo_id}.git/info/lfs/objects/batch",
        headers={"authorization": f"Bearer {token}", "accept": "application/vnd.git-lfs+json"},
        json={"operation": "upload", "objects": [{"oid": oid, "size": len(data)}]},
    )
    href = batch.json()["objects"][0]["actions"]["upload"]["href"]
    bad = data[:-1] + bytes([data[-1] ^ 1])
    r = httpx.put(href, content=bad, timeout=60)
    assert r.status_code == 400 and "sha256" in r.text
    assert not [k for k in _bucket_keys(hub_server) if oid in k]
    assert _open_uploads(hub_server) == []
    r = httpx.put(href, content=data, timeout=60)  # the right bytes are then accepted
    assert r.status_code == 200 and _bucket_keys(hub_server)[f"hub/lfs/{oid}"] == len(data)


@pytest.mark.skipif(shutil.which("git-lfs") is None, reason="needs git and git-lfs (`make system`)")
def test_git_clone_with_lfs_gets_the_bytes_from_the_bucket(hub_server, owner, folder, uploaded, tmp_path):
    name, token, _ = owner
    repo_id, _ = uploaded
    env = {
        **os.environ, "HOME": str(tmp_path / "home"), "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "", "SSH_ASKPASS": "",
    }
    (tmp_path / "home").mkdir()
    subprocess.run(["git", "lfs", "install", "--skip-repo"], env=env, check=True, capture_output=True)
    parts = urlsplit(hub_server.url)
    work = tmp_path / "clone"
    done = subprocess.run(
        ["git", "clone", "-q", f"{parts.scheme}://{name}:{token}@{parts.netloc}/{repo_id}.git", str(work)],
        env=env, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    for path in ("big.txt", "model.safetensors", "config.json"):
        assert (work / path).read_bytes() == (folder / path).read_bytes(), path


def test_missing_bucket_stops_the_server_with_the_setting_named(s3_endpoint, tmp_path: Path):
    with pytest.raises(RuntimeError) as err:
        start_server(tmp_path, args=("--blob-store", "s3://no-such-bucket/x"))
    assert "exited with 2" in str(err.value)
    assert "--blob-store / HAVEN_BLOB_STORE=s3://no-such-bucket" in str(err.value)
    assert "does not exist" in str(err.value) and "Traceback" not in str(err.value)
