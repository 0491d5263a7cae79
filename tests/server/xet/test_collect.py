"""`haven admin gc`: after a repository is deleted, the large files only it could serve are removed
(LFS objects, Xet file records, xorbs, shards); what another repository still serves stays and
downloads with identical bytes, and what is younger than the grace period stays. A hub of its own
(a collection with no grace would take other tests' uploads in flight)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time

import pytest
from huggingface_hub import HfApi

from fixtures.server import start_server, stop_server, unique_name
from haven.server.storage import open_blob_store
from haven.server.xet.collect import collect
from haven.server.xet.hashing import chunk_hash, from_hex, to_hex
from haven.server.xet.store import dedup_eligible

from .conftest import run_client
from .test_refusals import Cas, make_shard, make_xorb, user_with_repo, xet_token

MB = 1 << 20

XET_UPLOAD = """
from huggingface_hub import HfApi
api = HfApi()
for repo, path in P["uploads"]:
    api.upload_file(path_or_fileobj=path, path_in_repo=os.path.basename(path), repo_id=repo)
"""


def gc(hub, *flags: str) -> str:
    cmd = [sys.executable, "-m", "haven.cli", "admin", "gc", "--data", str(hub.data_dir), *flags]
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout


def keys(hub) -> dict[str, int]:
    blobs = open_blob_store(None, hub.data_dir)
    return {e.key: e.size for area in ("lfs/", "xet/") for e in blobs.entries(area)}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("gc-hub"))
    try:
        yield server
    finally:
        stop_server(server)


def test_deleted_repositories_large_files_are_collected(hub, tmp_path):
    user = unique_name("gina")
    token = hub.create_user(user)
    api = HfApi(endpoint=hub.url, token=token)  # this process has HF_HUB_DISABLE_XET=1: the LFS path
    a, b = api.create_repo(f"{user}/a").repo_id, api.create_repo(f"{user}/b").repo_id
    files = {}
    for name in ("only_a.bin", "shared.bin"):  # through Xet, one commit each: xorbs of their own
        files[name] = tmp_path / name
        files[name].write_bytes(os.urandom(3 * MB))
    run_client(hub, token, XET_UPLOAD, uploads=[(a, str(files["only_a.bin"])), (a, str(files["shared.bin"])),
                                                (b, str(files["shared.bin"]))])
    lfs_a, lfs_shared = os.urandom(300_000), os.urandom(200_000)
    api.upload_file(path_or_fileobj=lfs_a, path_in_repo="lfs_a.bin", repo_id=a)
    for repo in (a, b):
        api.upload_file(path_or_fileobj=lfs_shared, path_in_repo="lfs_shared.bin", repo_id=repo)
    oid_a, oid_shared = (f"lfs/{hashlib.sha256(x).hexdigest()}" for x in (lfs_a, lfs_shared))
    stored = keys(hub)
    assert oid_a in stored and oid_shared in stored
    xet_before = sum(size for key, size in stored.items() if key.startswith("xet/xorbs/"))
    assert xet_before >= 6 * MB  # random bytes: each file's xorb holds them whole

    assert gc(hub, "--grace", "0").startswith("removed 0 LFS objects, 0 xorbs, 0 shards and 0 Xet file records")
    api.delete_repo(a)
    assert gc(hub).startswith("removed 0 LFS objects, 0 xorbs, 0 shards and 0 Xet file records")  # within the grace
    dry = gc(hub, "--grace", "0", "--dry-run")
    assert dry.startswith("would remove 1 LFS objects, 1 xorbs, ") and "and 1 Xet file records" in dry
    assert keys(hub) == stored  # a dry run removes nothing
    out = gc(hub, "--grace", "0")
    assert out.splitlines()[0] == dry.splitlines()[0].replace("would remove", "removed")
    after = keys(hub)
    assert oid_a not in after and oid_shared in after
    xet_after = sum(size for key, size in after.items() if key.startswith("xet/xorbs/"))
    assert xet_before - xet_after >= 3 * MB  # only_a.bin's xorb
    shards = [key for key in stored if key.startswith("xet/shards/")]
    kept = [key for key in after if key.startswith("xet/shards/")]
    assert 1 <= len(kept) < len(shards)  # a's shards went, b's stayed

    # b still serves both of its files, through Xet and through LFS, with the same bytes
    got = run_client(hub, token, 'from huggingface_hub import hf_hub_download\nOUT = hf_hub_download(P["repo"], '
                     '"shared.bin")', repo=b)
    assert open(got, "rb").read() == files["shared.bin"].read_bytes()
    got = api.hf_hub_download(b, "lfs_shared.bin", cache_dir=tmp_path / "cache")
    assert open(got, "rb").read() == lfs_shared
    assert gc(hub, "--grace", "0").startswith("removed 0 LFS objects, 0 xorbs, 0 shards and 0 Xet file records")


def test_xorbs_a_client_was_just_told_about_outlive_the_grace(hub):
    """An old xorb that a new upload deduplicates against (the dedup query names it, or its upload
    is answered "already stored", so the client does not send it) stays through a collection until
    the client's shard uses it; an old xorb nobody named goes. Before, both went, and the client's
    shard was refused for a xorb it had been told the hub has."""
    _, token, repo = user_with_repo(hub, "gus", "dedup")
    cas = Cas(hub, xet_token(hub, repo, token))
    eligible = next(c for c in iter(lambda: os.urandom(2_000), None) if dedup_eligible(chunk_hash(c)))
    files = {"named": [eligible, os.urandom(5_000)], "again": [os.urandom(6_000)], "unnamed": [os.urandom(7_000)]}
    xorbs = {name: make_xorb(chunks) for name, chunks in files.items()}
    for h, body in xorbs.values():
        assert cas("POST", f"/v1/xorbs/default/{h}", content=body).json() == {"was_inserted": True}
    time.sleep(1.5)  # all three are now older than the 1 s grace below

    r = cas("GET", f"/v1/chunks/default-merkledb/{to_hex(chunk_hash(eligible))}")
    assert r.status_code == 200 and from_hex(xorbs["named"][0]) in r.content  # the answer names it
    h, body = xorbs["again"]
    assert cas("POST", f"/v1/xorbs/default/{h}", content=body).json() == {"was_inserted": False}
    collect(hub._sessionmaker(), open_blob_store(None, hub.data_dir), grace=1.0)

    stored = keys(hub)
    assert f"xet/xorbs/{xorbs['unnamed'][0]}" not in stored
    for name in ("named", "again"):
        h = xorbs[name][0]
        assert f"xet/xorbs/{h}" in stored, name
        file_id, shard = make_shard(files[name], h)
        r = cas("POST", "/v1/shards", content=shard)
        assert r.status_code == 200, r.text
        assert cas("GET", f"/v1/reconstructions/{file_id}").status_code == 200
    file_id, shard = make_shard(files["unnamed"], xorbs["unnamed"][0])
    assert cas("POST", "/v1/shards", content=shard).status_code == 400
