"""`git push` of LFS files on every blob store: the push policy asks the hub (its `LfsStore`: the
blob store it serves from, and files uploaded through Xet), not a folder on the hub's disk. A
pushed pointer to an object nobody uploaded is still refused, on S3 and on a directory store."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download

from fixtures.server import start_server, stop_server, unique_name
from haven.server.storage import LfsStore, format_pointer, open_blob_store
from haven.server.storage.githttp import HOOK_SCRIPT, LfsCheck
from server.xet.conftest import run_client

pytestmark = pytest.mark.skipif(
    shutil.which("git") is None
    or subprocess.run(["git", "lfs", "version"], capture_output=True).returncode != 0,
    reason="needs git and git-lfs (make system)",
)


@pytest.fixture(scope="module")
def git_env(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("git-home")
    env = {**os.environ, "HOME": str(home), "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}
    env.pop("GIT_CONFIG_GLOBAL", None)
    subprocess.run(["git", "lfs", "install", "--skip-repo"], env=env, check=True, capture_output=True)
    for key, value in (("user.name", "Tester"), ("user.email", "t@example.org"), ("init.defaultBranch", "main")):
        subprocess.run(["git", "config", "--global", key, value], env=env, check=True)
    return env


@pytest.fixture(scope="module")
def dir_hub(tmp_path_factory):
    """`haven serve --blob-store <a directory outside its data dir>`."""
    base = tmp_path_factory.mktemp("dirhub")
    server = start_server(base, args=("--blob-store", str(base / "blobs")))
    server.blob_store = str(base / "blobs")
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture(params=["s3", "directory"])
def store_hub(request):
    return request.getfixturevalue("hub_server" if request.param == "s3" else "dir_hub")


def _git(env: dict, *args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _clone(hub, env: dict, user: str, token: str, repo_id: str, dest: Path) -> Path:
    parts = urlsplit(hub.url)
    _git(env, "clone", "-q", f"{parts.scheme}://{user}:{token}@{parts.netloc}/{repo_id}.git", str(dest))
    return dest


def _remote_head(env: dict, work: Path) -> str:
    return _git(env, "ls-remote", "origin", "refs/heads/main", cwd=work).stdout.split()[0]


def _refused_ghost(env: dict, work: Path, name: str) -> None:
    """Commit a pointer to an object nobody uploaded and push it without git-lfs's upload: refused
    with the policy's message, the branch unchanged."""
    before = _remote_head(env, work)
    ghost = hashlib.sha256(os.urandom(32)).hexdigest()
    (work / name).write_bytes(format_pointer(ghost, 1234))  # what git-lfs would commit
    _git(env, "add", name, cwd=work)
    _git(env, "commit", "-q", "-m", "ghost", cwd=work)
    pushed = _git(env, "push", "--no-verify", "origin", "main", cwd=work, check=False)  # no pre-push upload
    assert pushed.returncode != 0
    assert f"{name} is an LFS pointer to {ghost[:12]}..., but that object was never uploaded." in pushed.stderr
    assert "git lfs push --all origin" in pushed.stderr
    assert _remote_head(env, work) == before


def test_git_lfs_push_of_a_new_file(store_hub, git_env, tmp_path):
    """git-lfs uploads the object into the hub's blob store, and the push that names it is accepted."""
    user = unique_name("pia")
    token = store_hub.create_user(user)
    api = HfApi(endpoint=store_hub.url, token=token)
    repo_id = api.create_repo(f"{user}/pushed", private=True).repo_id
    work = _clone(store_hub, git_env, user, token, repo_id, tmp_path / "c")
    data = os.urandom(150_000)
    oid = hashlib.sha256(data).hexdigest()
    (work / "w.bin").write_bytes(data)
    _git(git_env, "add", "w.bin", cwd=work)
    _git(git_env, "commit", "-q", "-m", "weights over git", cwd=work)
    _git(git_env, "push", "origin", "main", cwd=work)

    assert open_blob_store(store_hub.blob_store, store_hub.data_dir).size(f"lfs/{oid}") == len(data)
    assert not list((store_hub.data_dir / "lfs").rglob(oid))  # not a file in the hub's data dir
    assert api.list_repo_commits(repo_id)[0].title == "weights over git"
    path = hf_hub_download(repo_id, "w.bin", endpoint=store_hub.url, token=token, cache_dir=tmp_path / "hf")
    assert Path(path).read_bytes() == data

    _refused_ghost(git_env, work, "ghost.bin")


def test_git_push_of_a_pointer_to_a_xet_upload(hub_server, git_env, tmp_path):
    """A file uploaded through Xet (the default client) has no LFS object of its own: it is produced
    from xorbs. Its uploader pushes a pointer to it into another repository without uploading
    anything: accepted (a new pointer blob there, so the policy checks it), and the file serves."""
    user = unique_name("xia")
    token = hub_server.create_user(user)
    data = os.urandom(1 << 20)
    oid = hashlib.sha256(data).hexdigest()
    (tmp_path / "m.safetensors").write_bytes(data)
    run_client(hub_server, token, 'from huggingface_hub import HfApi\napi = HfApi()\napi.create_repo(P["repo"])\n'
               'api.upload_file(path_or_fileobj=P["f"], path_in_repo="m.safetensors", repo_id=P["repo"])',
               repo=f"{user}/viaxet", f=str(tmp_path / "m.safetensors"))
    store = open_blob_store(hub_server.blob_store, hub_server.data_dir)
    assert not store.exists(f"lfs/{oid}")  # only xorbs hold the bytes

    repo_id = HfApi(endpoint=hub_server.url, token=token).create_repo(f"{user}/other").repo_id
    work = _clone(hub_server, git_env, user, token, repo_id, tmp_path / "c")
    (work / "copy.safetensors").write_bytes(format_pointer(oid, len(data)))  # what git-lfs commits
    _git(git_env, "add", "copy.safetensors", cwd=work)
    _git(git_env, "commit", "-q", "-m", "copy by pointer", cwd=work)
    _git(git_env, "push", "--no-verify", "origin", "main", cwd=work)  # no pre-push upload

    assert not store.exists(f"lfs/{oid}")
    r = httpx.get(f"{hub_server.url}/{repo_id}/resolve/main/copy.safetensors",
                  headers={"authorization": f"Bearer {token}"}, follow_redirects=True)
    assert r.status_code == 200 and r.content == data

    _refused_ghost(git_env, work, "ghost.safetensors")


class _Source:
    """An object source producing one object."""

    def __init__(self, data: bytes):
        self.oid, self.data = hashlib.sha256(data).hexdigest(), data

    def has(self, oid: str) -> bool:
        return oid == self.oid

    def size(self, oid: str) -> int:
        return len(self.data)

    def read(self, oid: str, start: int = 0, end: int | None = None):
        yield self.data[start:end]


class _Down:
    """A store that cannot be reached (S3 down)."""

    def size(self, oid: str) -> int:
        raise RuntimeError("endpoint unreachable")


@pytest.fixture
def hook(monkeypatch):
    """The pre-receive script as a module (it imports its siblings by name)."""
    import importlib

    monkeypatch.syspath_prepend(str(HOOK_SCRIPT.parent))
    return importlib.import_module("pre_receive")


def test_the_hook_asks_the_hubs_store(hook, tmp_path, s3_bucket):
    """Both ends of the check: the hook's question, the hub's answer through an S3 LfsStore with an
    object source; a wrong size counts as missing, and a hub that cannot look up refuses."""
    lfs = LfsStore(tmp_path / "lfs", blobs=open_blob_store(f"s3://{s3_bucket}/p", tmp_path))
    stored_oid, _ = lfs.put_file(_write(tmp_path / "a", b"in the bucket"))
    source = _Source(b"produced by a source")
    lfs.add_source(source)
    ghost = hashlib.sha256(b"nobody uploaded this").hexdigest()
    wanted = [(stored_oid, 13), (stored_oid, 14), (source.oid, len(source.data)), (ghost, 5)]

    async def ask(store) -> set:
        check = await LfsCheck.start(store)
        try:
            return await asyncio.to_thread(hook.ask_hub, check.path, wanted)
        finally:
            check.close()
            assert not Path(check.folder).exists()

    assert asyncio.run(ask(lfs)) == {(stored_oid, 14), (ghost, 5)}
    with pytest.raises(OSError, match="cut short"):
        asyncio.run(ask(_Down()))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
