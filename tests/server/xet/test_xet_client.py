"""The unmodified huggingface_hub + hf_xet, default settings, against `haven serve`: uploads go
through Xet, downloads take the Xet path, git and LFS clients still get the bytes, and a file
re-uploaded with 1% changed costs less than 5% of it (measured with the hub's own accounting)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from huggingface_hub import HfApi

from fixtures.server import unique_name
from haven.server.storage import open_blob_store
from haven.server.xet.accounting import storage_usage

from .conftest import run_client

MB = 1 << 20
BIG = 200 * MB


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 * MB), b""):
            h.update(block)
    return h.hexdigest()


def blob_spec(hub) -> str | None:
    """The hub's --blob-store (None: local files under its data dir; the S3 hub of
    tests/server/blobs names its bucket)."""
    bucket = getattr(hub, "bucket", None)
    return getattr(hub, "blob_store", None) or (f"s3://{bucket}/hub" if bucket else None)


def usage(hub, repo_id: str) -> tuple[int, int]:
    """(logical, stored) bytes of a model repository, as `haven admin storage` counts them."""
    with hub._sessionmaker()() as session:
        hub_usage = storage_usage(session, open_blob_store(blob_spec(hub), hub.data_dir))
    (row,) = [u for u in hub_usage.repos if u.repo == f"model {repo_id}"]
    return row.logical, row.stored


def head(hub, repo_id: str, path: str, token: str) -> httpx.Response:
    r = httpx.head(f"{hub.url}/{repo_id}/resolve/main/{path}", headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r


UPLOAD = """
from huggingface_hub import HfApi, CommitOperationAdd, CommitOperationDelete
api = HfApi()
api.create_repo(P["repo"], private=True)
a = api.upload_folder(folder_path=P["folder"], repo_id=P["repo"]).oid
b = api.upload_file(path_or_fileobj=P["single"], path_in_repo="single.bin", repo_id=P["repo"]).oid
c = api.create_commit(P["repo"], operations=[CommitOperationDelete("mid.bin"),
                      CommitOperationAdd("later/new.bin", P["single"])], commit_message="swap").oid
OUT = [a, b, c, sorted(api.list_repo_files(P["repo"]))]
"""

DOWNLOAD = """
from huggingface_hub import hf_hub_download, snapshot_download
first = hf_hub_download(P["repo"], "big.bin")
again = hf_hub_download(P["repo"], "big.bin")
snap = snapshot_download(P["repo"])
cached = snapshot_download(P["repo"], local_files_only=True)  # answered from the cache, no request
files = {}
for root, _, names in os.walk(snap):
    for n in names:
        files[os.path.relpath(os.path.join(root, n), snap)] = os.path.realpath(os.path.join(root, n))
OUT = {"first": first, "again": again, "same_snapshot": snap == cached, "files": files}
"""


def test_default_client_uploads_downloads_and_dedups(xet_hub, tmp_path):
    user = unique_name("xena")
    token = xet_hub.create_user(user)
    repo = f"{user}/weights"
    rng = np.random.default_rng(14)
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "README.md").write_text("# weights\n")
    (folder / "config.json").write_text('{"model_type": "bert"}\n')
    (folder / "sub" / "notes.txt").write_text("small files stay in git\n")
    big = rng.bytes(BIG)
    (folder / "big.bin").write_bytes(big)
    (folder / "mid.bin").write_bytes(b"compressible text, LZ4 in the xorb " * 60_000)
    single = tmp_path / "single.bin"
    single.write_bytes(rng.bytes(MB))

    a, b, c, files = run_client(xet_hub, token, UPLOAD, repo=repo, folder=str(folder), single=str(single))
    assert files == [".gitattributes", "README.md", "big.bin", "config.json", "later/new.bin", "single.bin",
                     "sub/notes.txt"]
    assert len({a, b, c}) == 3

    # resolve advertises Xet for Xet-stored files only; downloads take that path and hit the cache
    assert "X-Xet-Hash" in head(xet_hub, repo, "big.bin", token).headers
    assert "X-Xet-Hash" not in head(xet_hub, repo, "README.md", token).headers
    got = run_client(xet_hub, token, DOWNLOAD, repo=repo)
    assert got["first"] == got["again"] and got["same_snapshot"]
    assert sha256_file(got["first"]) == hashlib.sha256(big).hexdigest()
    local = {"README.md": folder / "README.md", "config.json": folder / "config.json", "big.bin": folder / "big.bin",
             "sub/notes.txt": folder / "sub" / "notes.txt", "single.bin": single, "later/new.bin": single}
    assert {k: sha256_file(v) for k, v in got["files"].items() if k in local} == {
        k: sha256_file(v) for k, v in local.items()}
    assert set(got["files"]) - set(local) == {".gitattributes"}

    # stored bytes: the big file once, not twice (no second full copy for LFS / git)
    logical, stored = usage(xet_hub, repo)
    # every large file of the history, each distinct object once: big.bin, mid.bin (deleted since),
    # single.bin and later/new.bin (the same bytes)
    assert logical == BIG + (folder / "mid.bin").stat().st_size + MB
    assert stored < logical
    assert not (xet_hub.data_dir / "lfs" / "objects").exists() or not any(
        p.is_file() for p in (xet_hub.data_dir / "lfs" / "objects").rglob("*"))

    # dedup: 1% of the big file changed in one place
    changed = bytearray(big)
    changed[BIG // 2 : BIG // 2 + BIG // 100] = rng.bytes(BIG // 100)
    (folder / "big.bin").write_bytes(changed)
    run_client(xet_hub, token, 'from huggingface_hub import HfApi\nHfApi().upload_file(path_or_fileobj=P["f"], '
               'path_in_repo="big.bin", repo_id=P["repo"])', repo=repo, f=str(folder / "big.bin"))
    logical2, stored2 = usage(xet_hub, repo)
    assert logical2 - logical == BIG  # a new object, as users see it
    assert stored2 - stored < BIG * 5 // 100, f"second upload stored {stored2 - stored} bytes"
    got = run_client(xet_hub, token, 'from huggingface_hub import hf_hub_download\nOUT = hf_hub_download(P["repo"], '
                     '"big.bin")', repo=repo)
    assert sha256_file(got) == hashlib.sha256(changed).hexdigest()

    # the admin command prints the same figures
    spec = blob_spec(xet_hub)
    cmd = [sys.executable, "-m", "haven.cli", "admin", "storage", "--data", str(xet_hub.data_dir),
           *(["--blob-store", spec] if spec else [])]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    (line,) = [x for x in out.splitlines() if x.startswith(f"model {repo} ")]
    assert line.split()[-4:] == [f"{logical2 / 1e6:.1f}", "MB", f"{stored2 / 1e6:.1f}", "MB"]
    assert out.splitlines()[-1].startswith("hub: logical ")


def test_lfs_uploads_keep_working_without_xet_headers(xet_hub, tmp_path):
    user = unique_name("lena")
    token = xet_hub.create_user(user)
    data = os.urandom(300_000)
    api = HfApi(endpoint=xet_hub.url, token=token)  # this process has HF_HUB_DISABLE_XET=1: the LFS path
    repo = api.create_repo(f"{user}/lfs").repo_id
    api.upload_file(path_or_fileobj=data, path_in_repo="w.bin", repo_id=repo)
    r = head(xet_hub, repo, "w.bin", token)
    assert "X-Xet-Hash" not in r.headers and "xet-auth" not in r.headers.get("link", "")
    got = run_client(xet_hub, token, 'from huggingface_hub import hf_hub_download\nOUT = hf_hub_download(P["repo"], '
                     '"w.bin")', repo=repo)
    assert open(got, "rb").read() == data


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git and git-lfs")
def test_git_clone_gets_the_bytes_of_xet_uploads(xet_hub, tmp_path):
    user = unique_name("gita")
    token = xet_hub.create_user(user)
    data = os.urandom(3 * MB)
    (tmp_path / "m.safetensors").write_bytes(data)
    got = run_client(xet_hub, token, """
from huggingface_hub import HfApi, hf_hub_download
api = HfApi()
api.create_repo(P["repo"])
api.upload_file(path_or_fileobj=P["f"], path_in_repo="m.safetensors", repo_id=P["repo"])
api.create_repo(P["repo"], repo_type="dataset")  # datasets take the same path
api.upload_file(path_or_fileobj=P["f"], path_in_repo="d/m.bin", repo_id=P["repo"], repo_type="dataset")
OUT = hf_hub_download(P["repo"], "d/m.bin", repo_type="dataset")
""", repo=f"{user}/cloned", f=str(tmp_path / "m.safetensors"))
    assert open(got, "rb").read() == data
    assert "X-Xet-Hash" in head(xet_hub, f"{user}/cloned", "m.safetensors", token).headers
    # plain resolve GETs (no Xet client) get the bytes reconstructed from the xorbs, ranges too
    r = httpx.get(f"{xet_hub.url}/{user}/cloned/resolve/main/m.safetensors",
                  headers={"authorization": f"Bearer {token}", "range": "bytes=1000000-1999999"}, follow_redirects=True)
    assert r.status_code == 206 and r.content == data[1_000_000:2_000_000]
    env = {**os.environ, "HOME": str(tmp_path / "home"), "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}
    (tmp_path / "home").mkdir()
    subprocess.run(["git", "lfs", "install", "--skip-repo"], env=env, check=True, capture_output=True)
    parts = urlsplit(xet_hub.url)
    url = f"{parts.scheme}://{user}:{token}@{parts.netloc}/{user}/cloned.git"
    subprocess.run(["git", "clone", "-q", url, str(tmp_path / "clone")], env=env, check=True, capture_output=True)
    assert (tmp_path / "clone" / "m.safetensors").read_bytes() == data


PUSH_AND_LOAD = """
import torch
from transformers import AutoModelForMaskedLM
model = AutoModelForMaskedLM.from_pretrained(P["src"])
model.push_to_hub(P["repo"])
back = AutoModelForMaskedLM.from_pretrained(P["repo"])
a, b = model.state_dict(), back.state_dict()
OUT = sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
"""


def test_transformers_push_to_hub_and_from_pretrained(xet_hub, bert_masked_lm_dir):
    user = unique_name("tara")
    token = xet_hub.create_user(user)
    assert run_client(xet_hub, token, PUSH_AND_LOAD, src=str(bert_masked_lm_dir), repo=f"{user}/tiny-bert") is True
    assert "X-Xet-Hash" in head(xet_hub, f"{user}/tiny-bert", "model.safetensors", token).headers
