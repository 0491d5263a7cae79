"""LFS objects belong to repositories: knowing a sha256 is not enough to read an object.

Mallory can read (and write) her own public repo A and knows the sha256 of an object in Bob's
private repo B. None of the LFS routes of A, nor a commit or a git push of a pointer into A,
may hand her B's bytes. Sharing an object she can already read, or uploading the bytes she
really holds, still works without friction.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download

from fixtures.server import unique_name

LFS_JSON = "application/vnd.git-lfs+json"


@pytest.fixture(scope="module")
def world(hub_server):
    bob, mallory = unique_name("bob"), unique_name("mallory")
    bob_token, mal_token = hub_server.create_user(bob), hub_server.create_user(mallory)
    bob_api = HfApi(endpoint=hub_server.url, token=bob_token)
    mal_api = HfApi(endpoint=hub_server.url, token=mal_token)
    secret = os.urandom(50_000)
    private = bob_api.create_repo(f"{bob}/vault", private=True).repo_id
    bob_api.upload_file(path_or_fileobj=secret, path_in_repo="secret.bin", repo_id=private)
    shared = os.urandom(40_000)
    public = bob_api.create_repo(f"{bob}/open").repo_id
    bob_api.upload_file(path_or_fileobj=shared, path_in_repo="shared.bin", repo_id=public)
    return {
        "url": hub_server.url,
        "server": hub_server,
        "secret": secret,
        "oid": hashlib.sha256(secret).hexdigest(),
        "shared": shared,
        "public": public,
        "private": private,
        "bob_token": bob_token,
        "mallory": mallory,
        "mal_token": mal_token,
        "mal_api": mal_api,
    }


def _repo(world, name: str) -> str:
    return world["mal_api"].create_repo(f"{world['mallory']}/{name}").repo_id


def _batch(world, repo_id: str, operation: str, oid: str, size: int, token: str) -> httpx.Response:
    return httpx.post(
        f"{world['url']}/{repo_id}.git/info/lfs/objects/batch",
        json={"operation": operation, "transfers": ["basic"], "objects": [{"oid": oid, "size": size}]},
        headers={"authorization": f"Bearer {token}", "accept": LFS_JSON, "content-type": LFS_JSON},
    )


def _commit_lfs(world, repo_id: str, path: str, oid: str, size: int) -> httpx.Response:
    lines = [
        {"key": "header", "value": {"summary": "link an object"}},
        {"key": "lfsFile", "value": {"path": path, "algo": "sha256", "oid": oid, "size": size}},
    ]
    return httpx.post(
        f"{world['url']}/api/models/{repo_id}/commit/main",
        content=b"".join(json.dumps(x).encode() + b"\n" for x in lines),
        headers={"authorization": f"Bearer {world['mal_token']}", "content-type": "application/x-ndjson"},
    )


def test_private_object_not_downloadable_through_another_repo(world):
    repo_a = _repo(world, "bait")
    oid, size, token = world["oid"], len(world["secret"]), world["mal_token"]
    # batch download through A: the per-object 404 of the LFS batch protocol, no href
    r = _batch(world, repo_a, "download", oid, size, token)
    assert r.status_code == 200, r.text
    [obj] = r.json()["objects"]
    assert "actions" not in obj and obj["error"]["code"] == 404
    # verify through A: 404
    v = httpx.post(
        f"{world['url']}/{repo_a}.git/info/lfs/verify",
        json={"oid": oid, "size": size},
        headers={"authorization": f"Bearer {token}"},
    )
    assert v.status_code == 404
    # upload batch through A: the object is "stored", yet Mallory must send the bytes
    up = _batch(world, repo_a, "upload", oid, size, token).json()["objects"][0]
    assert "upload" in up["actions"]
    # ... and a commit of a pointer to it is refused
    c = _commit_lfs(world, repo_a, "stolen.bin", oid, size)
    assert c.status_code == 422 and "upload" in c.json()["error"]
    assert "stolen.bin" not in world["mal_api"].list_repo_files(repo_a)
    # a download link signed for Bob's repo does not work with A's key, nor the other way round
    bob = _batch(world, world["private"], "download", oid, size, world["bob_token"]).json()
    href = bob["objects"][0]["actions"]["download"]["href"]
    assert httpx.get(href).content == world["secret"]  # control: Bob's own link works
    tampered = href.replace("repo=", "repo=9")
    assert httpx.get(tampered).status_code == 403


def test_upload_of_stored_object_needs_the_real_bytes(world):
    """Uploading through A proves possession: wrong bytes are refused, the right ones list it."""
    repo_a = _repo(world, "holder")
    oid, size, token = world["oid"], len(world["secret"]), world["mal_token"]
    actions = _batch(world, repo_a, "upload", oid, size, token).json()["objects"][0]["actions"]
    wrong = httpx.put(actions["upload"]["href"], content=os.urandom(size))
    assert wrong.status_code == 400
    assert _batch(world, repo_a, "download", oid, size, token).json()["objects"][0]["error"]["code"] == 404
    assert httpx.put(actions["upload"]["href"], content=world["secret"]).status_code == 200
    assert _commit_lfs(world, repo_a, "mine.bin", oid, size).status_code == 200
    got = httpx.get(
        f"{world['url']}/{repo_a}/resolve/main/mine.bin", headers={"authorization": f"Bearer {token}"}
    )
    assert got.status_code == 200 and got.content == world["secret"]


def test_readable_object_shared_without_upload(world):
    """An object Mallory can read in Bob's public repo links into her repo without re-upload."""
    repo_a = _repo(world, "fork")
    oid, size = hashlib.sha256(world["shared"]).hexdigest(), len(world["shared"])
    [obj] = _batch(world, repo_a, "upload", oid, size, world["mal_token"]).json()["objects"]
    assert "actions" not in obj  # already stored and readable: nothing to send
    assert _commit_lfs(world, repo_a, "shared.bin", oid, size).status_code == 200
    path = hf_hub_download(
        repo_a, "shared.bin", endpoint=world["url"], token=world["mal_token"],
        cache_dir=world["server"].data_dir.parent / f"hf-{repo_a.replace('/', '-')}",
    )
    assert open(path, "rb").read() == world["shared"]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git (make system)")
def test_pushed_pointer_to_foreign_object_serves_nothing(world, tmp_path):
    """git push of a hand-written pointer lands in git, but the object is not served through A."""
    repo_a = _repo(world, "pushed")
    secret = os.urandom(30_000)  # an object of Bob's that Mallory has never held
    bob_api = HfApi(endpoint=world["url"], token=world["bob_token"])
    bob_api.upload_file(path_or_fileobj=secret, path_in_repo="other.bin", repo_id=world["private"])
    oid, size = hashlib.sha256(secret).hexdigest(), len(secret)
    env = {**os.environ, "HOME": str(tmp_path), "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}
    env.pop("GIT_CONFIG_GLOBAL", None)
    remote = world["url"].replace("http://", f"http://{world['mallory']}:{world['mal_token']}@")
    work = tmp_path / "w"

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path if args[0] == "clone" else work, env=env,
                       check=True, capture_output=True, timeout=60)

    git("clone", f"{remote}/{repo_a}", str(work))
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n"
    (work / "stolen.bin").write_text(pointer)
    git("-c", "user.name=M", "-c", "user.email=m@x", "add", "stolen.bin")
    git("-c", "user.name=M", "-c", "user.email=m@x", "-c", "filter.lfs.required=false",
        "commit", "-m", "pointer")
    git("push", "origin", "main")
    files = world["mal_api"].list_repo_files(repo_a)
    assert "stolen.bin" in files
    headers = {"authorization": f"Bearer {world['mal_token']}"}
    got = httpx.get(f"{world['url']}/{repo_a}/resolve/main/stolen.bin", headers=headers)
    assert got.status_code == 404 and got.headers["x-error-code"] == "EntryNotFound"
    assert secret not in got.content
    r = _batch(world, repo_a, "download", oid, size, world["mal_token"]).json()
    assert r["objects"][0]["error"]["code"] == 404


def test_regular_file_over_10mb_refused(world):
    repo_a = _repo(world, "big")
    data = os.urandom(10 * 1024 * 1024 + 1)
    lines = [
        {"key": "header", "value": {"summary": "too big"}},
        {"key": "file", "value": {"path": "big.bin", "content": base64.b64encode(data).decode(),
                                  "encoding": "base64"}},
    ]
    r = httpx.post(
        f"{world['url']}/api/models/{repo_a}/commit/main",
        content=b"".join(json.dumps(x).encode() + b"\n" for x in lines),
        headers={"authorization": f"Bearer {world['mal_token']}", "content-type": "application/x-ndjson"},
        timeout=60,
    )
    assert r.status_code == 413 and "LFS" in r.json()["error"]
    assert "big.bin" not in world["mal_api"].list_repo_files(repo_a)


def test_endless_line_refused_early(world):
    """A body without newlines is cut off once one line passes the limit, not buffered whole."""
    repo_a = _repo(world, "endless")

    def body():
        yield b'{"key": "header", "value": {"summary": "x"}}\n{"key": "file", "value": {"content": "'
        for _ in range(40):  # 40 MB of base64 on one line
            yield b"A" * (1 << 20)

    r = httpx.post(
        f"{world['url']}/api/models/{repo_a}/commit/main",
        content=body(),
        headers={"authorization": f"Bearer {world['mal_token']}", "content-type": "application/x-ndjson"},
        timeout=60,
    )
    assert r.status_code == 413 and "LFS" in r.json()["error"]


def test_existing_data_dir_backfilled_once(tmp_path):
    """A data dir made before the table existed: the first start lists what its refs point to."""
    from haven.server import db, storage
    from haven.server.api import lfsrefs
    from haven.server.app import create_app
    from haven.server.settings import Settings

    settings = Settings.load(data_dir=tmp_path / "data")
    settings.prepare()
    db.upgrade(settings.db_url)
    lfs = storage.LfsStore(settings.data_dir / "lfs")
    repos = storage.RepoStore(settings.data_dir / "repos", lfs)
    data = os.urandom(5000)
    oid = hashlib.sha256(data).hexdigest()
    lfs.put(oid, len(data), [data])
    repos.create("model", "old/model", author="old")
    repos.commit("model", "old/model", "main", [storage.AddLfsFile(path="w.bin", oid=oid, size=len(data))],
                 message="before the upgrade", author="old")
    sm = db.make_sessionmaker(db.make_engine(settings.db_url))
    with sm() as session:
        session.add(db.Repo(type="model", namespace="old", name="model", tags=[]))
        session.commit()
        pk = session.query(db.Repo).one().id
    create_app(settings)
    with sm() as session:
        assert lfsrefs.listed(session, pk, [oid]) == {oid}
        session.query(db.RepoLfsObject).delete()
        session.commit()
    create_app(settings)  # the marker says the backfill ran: nothing is listed again
    with sm() as session:
        assert lfsrefs.listed(session, pk, [oid]) == set()
