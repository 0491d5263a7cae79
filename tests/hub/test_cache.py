"""Offline pieces of the client: settings lookup, the cache's layout and bookkeeping, patterns,
integrity checks."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess

import pytest

from haven.errors import HubError
from haven.hub import auth
from haven.hub.cache import RepoCache, check_relative_path, repo_folder_name
from haven.hub.download import file_digest, filter_paths, verify_file


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ("HAVEN_ENDPOINT", "HF_ENDPOINT", "HAVEN_TOKEN", "HF_TOKEN", "HAVEN_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HAVEN_HOME", str(tmp_path / "home"))
    return monkeypatch


def test_endpoint_and_token_lookup_order(clean_env, tmp_path):
    assert auth.get_endpoint() == "https://huggingface.co"
    clean_env.setenv("HF_ENDPOINT", "http://hf.local/")
    assert auth.get_endpoint() == "http://hf.local"
    clean_env.setenv("HAVEN_ENDPOINT", "http://haven.local:8080")
    assert auth.get_endpoint() == "http://haven.local:8080"

    assert auth.get_token() is None
    path = auth.save_token("hv_file\n")
    assert path == str(tmp_path / "home" / "token")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert auth.get_token() == "hv_file"
    clean_env.setenv("HF_TOKEN", "hf_env")
    assert auth.get_token() == "hf_env"
    clean_env.setenv("HAVEN_TOKEN", "hv_env")
    assert auth.get_token() == "hv_env"
    assert auth.delete_token() and not auth.delete_token()
    assert auth.default_cache_dir() == str(tmp_path / "home" / "hub")


def test_saving_a_token_replaces_a_world_readable_file(clean_env, tmp_path):
    path = tmp_path / "home" / "token"
    path.parent.mkdir(parents=True)
    path.write_text("hv_old\n")
    path.chmod(0o644)  # written by an older version, or by hand
    auth.save_token("hv_new")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and path.read_text() == "hv_new\n"
    assert os.listdir(path.parent) == ["token"]  # no temporary file left behind


def test_local_dir_copies_from_many_threads_never_mix(tmp_path):
    """Each writer copies through its own temporary name, so a reader sees one whole version."""
    from concurrent.futures import ThreadPoolExecutor

    from haven.hub.download import _to_local_dir

    blobs = []
    for i in range(2):
        blob = tmp_path / f"blob{i}"
        blob.write_bytes(bytes([i]) * 3_000_000)
        blobs.append(str(blob))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: _to_local_dir(blobs[i % 2], tmp_path / "out", "w.bin", f"c{i}"), range(32)))
    data = (tmp_path / "out" / "w.bin").read_bytes()
    assert data in (bytes([0]) * 3_000_000, bytes([1]) * 3_000_000)
    assert sorted(os.listdir(tmp_path / "out")) == [".cache", "w.bin"]


def test_offline_flags(clean_env):
    assert not auth.is_offline()
    clean_env.setenv("HF_HUB_OFFLINE", "1")
    assert auth.is_offline()
    clean_env.setenv("HF_HUB_OFFLINE", "0")
    clean_env.setenv("HAVEN_OFFLINE", "true")
    assert auth.is_offline()


def test_layout_names_match_the_hub_cache():
    from huggingface_hub.file_download import repo_folder_name as hf_repo_folder_name

    for repo_id, repo_type in (("owner/name", "model"), ("owner/data.set", "dataset"), ("gpt2", "model")):
        assert repo_folder_name(repo_id, repo_type) == hf_repo_folder_name(repo_id=repo_id, repo_type=repo_type)


def test_refs_links_and_misses(tmp_path):
    cache = RepoCache("me/repo", cache_dir=tmp_path)
    commit = "a" * 40
    assert cache.read_ref("main") is None
    cache.write_ref("main", commit)
    cache.write_ref("refs/pr/1", commit)
    assert cache.read_ref("main") == commit and cache.read_ref("refs/pr/1") == commit
    assert cache.read_ref(commit) == commit
    blob = cache.blob_path("b" * 40)
    os.makedirs(os.path.dirname(blob))
    open(blob, "wb").write(b"data")
    link = cache.link(commit, "dir/file.txt", "b" * 40)
    assert os.readlink(link) == "../../../blobs/" + "b" * 40 and open(link, "rb").read() == b"data"
    assert cache.cached_file("main", "dir/file.txt") == link
    assert cache.snapshot_files(commit) == ["dir/file.txt"]
    assert not cache.is_known_missing("main", "x.json")
    cache.remember_missing(commit, "x.json")
    assert cache.is_known_missing("main", "x.json")


@pytest.mark.parametrize("bad", ["", "/etc/passwd", "../x", "a/../../b", "a//b", "./a"])
def test_paths_outside_the_repo_are_refused(bad):
    with pytest.raises(ValueError, match="invalid file path"):
        check_relative_path(bad)


def test_filter_paths():
    paths = ["a.json", "b.txt", "sub/c.json", "logs/x.log", "logs/y.txt"]
    assert filter_paths(paths, "*.json") == ["a.json", "sub/c.json"]
    assert filter_paths(paths, ["logs/"]) == ["logs/x.log", "logs/y.txt"]
    assert filter_paths(paths, None, ["*.log", "sub/*"]) == ["a.json", "b.txt", "logs/y.txt"]


def test_git_blob_sha1_matches_git(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"hello\x00world\n" * 1000)
    expected = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True).stdout.strip()
    assert file_digest(str(path), "0" * 40) == expected  # a 40-hex ETag names a git blob sha1
    assert file_digest(str(path), "0" * 64) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_verify_file_deletes_on_size_or_hash_mismatch(tmp_path):
    data = b"x" * 1000
    path = tmp_path / "blob.incomplete"
    path.write_bytes(data)
    verify_file(str(path), 1000, hashlib.sha256(data).hexdigest(), "f")  # fine: kept
    assert path.exists()
    with pytest.raises(HubError, match="expected 999 bytes"):
        verify_file(str(path), 999, hashlib.sha256(data).hexdigest(), "f")
    assert not path.exists()
    path.write_bytes(data)
    with pytest.raises(HubError, match="sha256"):
        verify_file(str(path), 1000, hashlib.sha256(b"other").hexdigest(), "f")
    assert not path.exists()


def test_upload_folder_follows_symlinks_once_and_refuses_broken_ones(tmp_path):
    from haven.hub.upload import folder_operations

    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "blob").write_bytes(b"linked file")
    (outside / "deep" / "x.txt").write_bytes(b"in a linked folder")
    root = tmp_path / "up"
    (root / "sub").mkdir(parents=True)
    (root / "real.txt").write_bytes(b"real")
    (root / "file-link.bin").symlink_to(outside / "blob")  # a cache snapshot is all links like this
    (root / "dir-link").symlink_to(outside / "deep", target_is_directory=True)
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)  # must not walk forever
    ops = {op.path_in_repo: op for op in folder_operations(root)}
    assert sorted(ops) == ["dir-link/x.txt", "file-link.bin", "real.txt"]
    assert ops["file-link.bin"].sha256 == hashlib.sha256(b"linked file").hexdigest()

    (root / "gone.txt").symlink_to(tmp_path / "does-not-exist")
    with pytest.raises(FileNotFoundError, match="gone.txt .*broken symbolic link"):
        folder_operations(root)
    assert "gone.txt" not in {op.path_in_repo for op in folder_operations(root, ignore_patterns="gone.*")}


def test_file_objects_are_read_in_chunks_not_held_in_memory(tmp_path):
    import tracemalloc

    from haven.hub.upload import CommitOperationAdd

    data = os.urandom(1 << 20) * 48  # 48 MB
    path = tmp_path / "big.bin"
    path.write_bytes(b"HEADER" + data)
    with open(path, "rb") as f:
        f.seek(6)  # content starts where the caller left the stream, as with huggingface_hub
        tracemalloc.start()
        try:
            op = CommitOperationAdd("big.bin", f)
            with op.open() as stream:  # what an upload reads
                for _ in iter(lambda: stream.read(1 << 20), b""):
                    pass
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 8 << 20, f"{peak} bytes held for a {len(data)}-byte upload"
        assert op.size == len(data) and op.sha256 == hashlib.sha256(data).hexdigest()
        assert not f.closed  # the caller's file stays theirs

    read_end, write_end = os.pipe()  # not seekable: read once, into memory
    os.write(write_end, b"from a pipe")
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        op = CommitOperationAdd("p.txt", pipe)
    assert op.size == 11 and op.sha256 == hashlib.sha256(b"from a pipe").hexdigest()
