"""Downloads against a real hub server: trees, the cache's request economy, offline use, resume,
locking between processes, corruption, remembered misses."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from fixtures.server import unique_name
from haven.errors import EntryNotFoundError, HubError, LocalEntryNotFoundError
from haven.hub import http, resolve_file
from haven.hub.cache import RepoCache, file_lock
from haven.hub.client import HubClient
from hub.helpers import read_tree, write_tree

BIG = 3 * 1024 * 1024 + 17  # over the progress-bar threshold's order of magnitude, stored in LFS


def _random(n: int, seed: int) -> bytes:
    out, block = bytearray(), hashlib.sha256(str(seed).encode()).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:n])


TREE = {
    "README.md": b"# tiny\n",
    "config.json": b'{"model_type": "bert"}\n',
    "weights/model.safetensors": _random(BIG, 1),
    "sub/dir/notes.txt": "héllo\n".encode(),
    "empty.txt": b"",
}


@pytest.fixture
def tree():
    return TREE


@pytest.fixture(scope="module")
def uploaded(hub_server, hub_user, tmp_path_factory):
    """One repository holding TREE for the whole module: every test only reads it, each with its
    own empty cache (the `hub` fixture's HAVEN_HOME), so sharing it saves an upload per test."""
    user, token = hub_user
    repo = f"{user}/{unique_name('dl')}"
    with HubClient(hub_server.url, token) as client:
        client.create_repo(repo)
        client.upload_folder(repo_id=repo, folder_path=write_tree(tmp_path_factory.mktemp("dl-src"), TREE))
    return repo


def test_upload_folder_then_snapshot_download_gives_the_same_tree(hub, tree, uploaded, tmp_path):
    folder = hub.client.snapshot_download(uploaded)
    assert read_tree(folder) == tree
    assert folder.startswith(str(hub.cache_dir / f"models--{uploaded.replace('/', '--')}" / "snapshots"))
    local = hub.client.snapshot_download(uploaded, local_dir=tmp_path / "copy")
    assert read_tree(local) == tree
    only = hub.client.snapshot_download(uploaded, local_dir=tmp_path / "some", allow_patterns=["*.json", "sub/"])
    assert set(read_tree(only)) == {"config.json", "sub/dir/notes.txt"}
    # the big file went through LFS: the tree reports its sha256, computed here independently
    entries = {e.path: e for e in hub.client.list_repo_tree(uploaded, recursive=True) if hasattr(e, "size")}
    assert entries["weights/model.safetensors"].sha256 == hashlib.sha256(tree["weights/model.safetensors"]).hexdigest()


def test_cache_layout_and_request_economy(hub, uploaded):
    client = hub.client
    path = client.hf_hub_download(uploaded, "weights/model.safetensors")
    cache = RepoCache(uploaded, cache_dir=hub.cache_dir)
    commit = cache.read_ref("main")
    assert commit and len(commit) == 40
    assert os.path.islink(path) and not os.path.isabs(os.readlink(path))
    blob = os.path.realpath(path)
    assert os.path.dirname(blob) == os.path.realpath(os.path.join(cache.folder, "blobs"))

    before = client.stats["requests"]
    assert client.hf_hub_download(uploaded, "weights/model.safetensors") == path
    assert client.stats["requests"] - before == 1  # one HEAD for the branch, no body
    before = client.stats["requests"]
    assert client.hf_hub_download(uploaded, "weights/model.safetensors", revision=commit) == path
    assert client.stats["requests"] == before  # a cached commit costs nothing

    client.snapshot_download(uploaded)
    before = client.stats["requests"]
    client.snapshot_download(uploaded)
    assert client.stats["requests"] - before == 1  # only the revision lookup


def _dead_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there any more


def test_offline_serves_the_cache_without_network(hub, tree, uploaded, monkeypatch):
    folder = hub.client.snapshot_download(uploaded)
    monkeypatch.setenv("HAVEN_ENDPOINT", _dead_endpoint())
    monkeypatch.setenv("HAVEN_OFFLINE", "1")
    offline = HubClient()
    assert offline.snapshot_download(uploaded) == folder
    path = offline.hf_hub_download(uploaded, "config.json")
    assert open(path, "rb").read() == tree["config.json"]
    assert offline.stats["requests"] == 0
    with pytest.raises(LocalEntryNotFoundError, match="HAVEN_OFFLINE"):
        offline.hf_hub_download(uploaded, "never-downloaded.txt")
    with pytest.raises(LocalEntryNotFoundError):
        offline.snapshot_download(hub.new_repo("never-cached"))

    # HF_HUB_OFFLINE works the same way
    monkeypatch.delenv("HAVEN_OFFLINE")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert HubClient().hf_hub_download(uploaded, "config.json") == path


def test_unreachable_hub_falls_back_to_cache_else_says_what_to_do(hub, uploaded, monkeypatch):
    path = hub.client.hf_hub_download(uploaded, "config.json")
    monkeypatch.setenv("HAVEN_ENDPOINT", _dead_endpoint())
    client = HubClient()
    assert client.hf_hub_download(uploaded, "config.json") == path
    with pytest.raises(LocalEntryNotFoundError, match="could not be reached") as info:
        client.hf_hub_download(uploaded, "README.md")
    assert "HAVEN_ENDPOINT" in str(info.value)
    with pytest.raises(LocalEntryNotFoundError):
        resolve_file(hub.new_repo("nothing"), "config.json")


def _plant_partial(hub, repo: str, data: bytes, partial: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()  # an LFS file's blob is named by its sha256
    cache = RepoCache(repo, cache_dir=hub.cache_dir)
    os.makedirs(os.path.dirname(cache.blob_path(sha)), exist_ok=True)
    with open(cache.blob_path(sha) + ".incomplete", "wb") as f:
        f.write(partial)
    return cache.blob_path(sha)


def test_interrupted_download_resumes_with_range(hub, tree, uploaded):
    data = tree["weights/model.safetensors"]
    half = len(data) // 2
    blob = _plant_partial(hub, uploaded, data, data[:half])
    client = HubClient()
    path = client.hf_hub_download(uploaded, "weights/model.safetensors")
    assert open(path, "rb").read() == data
    assert client.stats["bytes_downloaded"] == len(data) - half
    gets = [entry for entry in client.request_log if entry[0] == "GET"]
    assert [g[2] for g in gets] == [f"bytes={half}-"]
    assert not os.path.exists(blob + ".incomplete")


def test_corrupt_partial_file_is_deleted_and_reported(hub, tree, uploaded):
    data = tree["weights/model.safetensors"]
    half = len(data) // 2
    blob = _plant_partial(hub, uploaded, data, b"\0" * half)  # wrong first half: the hash cannot match
    client = HubClient()
    with pytest.raises(HubError, match="corrupt") as info:
        client.hf_hub_download(uploaded, "weights/model.safetensors")
    assert "run it again" in str(info.value)
    assert client.stats["bytes_downloaded"] == len(data) - half  # it did resume, not restart
    assert not os.path.exists(blob + ".incomplete") and not os.path.exists(blob)
    path = client.hf_hub_download(uploaded, "weights/model.safetensors")  # the retry starts clean
    assert open(path, "rb").read() == data


_DOWNLOAD = "from haven.hub.client import HubClient; import sys; print(HubClient().hf_hub_download(sys.argv[1], sys.argv[2]))"


def _waiters_on(path: str) -> set[int]:
    """Pids blocked in flock() on `path`, read from /proc/locks (the kernel's own view, no timing)."""
    inode = os.stat(path).st_ino
    pids = set()
    with open("/proc/locks") as f:
        for line in f:
            fields = line.split()
            if "->" in fields and fields[-3].split(":")[-1] == str(inode):
                pids.add(int(fields[-4]))
    return pids


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="needs Linux /proc/locks to see blocked waiters")
def test_two_processes_downloading_the_same_file_take_turns(hub, tree, uploaded):
    data = tree["weights/model.safetensors"]
    sha = hashlib.sha256(data).hexdigest()
    cache = RepoCache(uploaded, cache_dir=hub.cache_dir)
    lock = cache.lock_path(sha)
    args = [sys.executable, "-c", _DOWNLOAD, uploaded, "weights/model.safetensors"]
    with file_lock(lock):  # hold the blob's lock: both processes must queue behind it
        procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        deadline = time.monotonic() + 120
        while _waiters_on(lock) != {p.pid for p in procs}:
            assert all(p.poll() is None for p in procs), "a download finished while another process held the lock"
            assert time.monotonic() < deadline, "the downloads never queued on the blob's lock"
            time.sleep(0.05)
        assert not os.path.exists(cache.blob_path(sha))  # blocked before writing anything
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    paths = {out.strip() for out, _ in outs}
    assert len(paths) == 1
    assert open(paths.pop(), "rb").read() == data
    assert not [n for n in os.listdir(os.path.dirname(cache.blob_path(sha))) if n.endswith(".incomplete")]


def test_missing_optional_file_is_remembered(hub, uploaded):
    assert resolve_file(uploaded, "tokenizer.json", optional=True) is None
    cache = RepoCache(uploaded, cache_dir=hub.cache_dir)
    commit = cache.read_ref("main")
    assert os.path.isfile(os.path.join(cache.folder, ".no_exist", commit, "tokenizer.json"))
    client = HubClient()
    with pytest.raises(EntryNotFoundError):
        client.hf_hub_download(uploaded, "tokenizer.json", revision=commit)
    assert client.stats["requests"] == 0  # known missing at this commit: no request
    with pytest.raises(EntryNotFoundError, match="tokenizer.json"):
        resolve_file(uploaded, "tokenizer.json")
    assert resolve_file(uploaded, "config.json", revision=commit).endswith("config.json")


def test_progress_bars_show_for_big_files_unless_disabled(hub, uploaded, monkeypatch, capsys):
    from haven.hub import download

    monkeypatch.setattr(download, "PROGRESS_MIN_BYTES", 1000)
    monkeypatch.setenv("HAVEN_DISABLE_PROGRESS_BARS", "1")
    HubClient().hf_hub_download(uploaded, "weights/model.safetensors", force_download=True)
    assert "model.safetensors" not in capsys.readouterr().err
    monkeypatch.delenv("HAVEN_DISABLE_PROGRESS_BARS")
    HubClient().hf_hub_download(uploaded, "weights/model.safetensors", force_download=True)
    err = capsys.readouterr().err
    assert "weights/model.safetensors" in err and "3.00M" in err
    HubClient().hf_hub_download(uploaded, "config.json", force_download=True)  # small: no bar
    assert "config.json" not in capsys.readouterr().err


class _DroppingTransport(httpx.BaseTransport):
    """Passes requests to the real transport, but cuts any large body off after `after` bytes."""

    def __init__(self, after: int):
        self.inner, self.after = httpx.HTTPTransport(), after

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method != "GET":
            return response
        after, body = self.after, response.stream

        class Cut(httpx.SyncByteStream):
            def __iter__(self):
                sent = 0
                for chunk in body:
                    chunk = chunk[: after - sent]
                    sent += len(chunk)
                    yield chunk
                    if sent >= after:
                        raise httpx.ReadError("connection dropped (test)")

            def close(self):
                body.close()

        return httpx.Response(response.status_code, headers=response.headers, stream=Cut(), request=request)


def test_download_cut_off_by_the_network_resumes_on_retry(hub, tree, uploaded):
    data = tree["weights/model.safetensors"]
    cut = 1_000_000
    flaky = HubClient()
    # the client's own timeouts: httpx's 5 s default could fire first on a loaded machine (a cut at 0 bytes)
    flaky.session.http = httpx.Client(
        transport=_DroppingTransport(cut), timeout=http.TIMEOUT, event_hooks={"request": [flaky.session._count]}
    )
    with pytest.raises(HubError, match="broke off after 1000000 of") as info:
        flaky.hf_hub_download(uploaded, "weights/model.safetensors")
    assert "run it again to resume" in str(info.value)
    blob = RepoCache(uploaded, cache_dir=hub.cache_dir).blob_path(hashlib.sha256(data).hexdigest())
    assert os.path.getsize(blob + ".incomplete") == cut

    retry = HubClient()
    path = retry.hf_hub_download(uploaded, "weights/model.safetensors")
    assert open(path, "rb").read() == data
    assert retry.stats["bytes_downloaded"] == len(data) - cut
    assert [r for m, _, r in retry.request_log if m == "GET"] == [f"bytes={cut}-"]
