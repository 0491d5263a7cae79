"""RepoStore: commits, trees, refs and history, checked against the `git` command line."""

from __future__ import annotations

import hashlib
import subprocess
import threading
from pathlib import Path

import pytest

from haven.server import storage
from haven.server.storage import (
    AddFile,
    AddLfsFile,
    CopyFile,
    DeleteFile,
    DeleteFolder,
    LfsStore,
    RepoStore,
)

RID = "alice/tiny-bert"


@pytest.fixture()
def store(tmp_path: Path) -> RepoStore:
    rs = RepoStore(tmp_path / "repos", LfsStore(tmp_path / "lfs"))
    rs.create("model", RID, author="alice")
    return rs


def git(rs: RepoStore, *args: str, repo_id: str = RID) -> str:
    path = rs.repo_path("model", repo_id)
    return subprocess.run(
        ["git", "--git-dir", str(path), *args], check=True, capture_output=True, text=True
    ).stdout


def put_lfs(rs: RepoStore, data: bytes) -> str:
    oid = hashlib.sha256(data).hexdigest()
    rs.lfs.put(oid, len(data), [data])
    return oid


def check_attr(tmp_path: Path, gitattributes: str, paths: list[str]) -> list[str]:
    """What git itself says the `filter` attribute of each path is under `gitattributes`."""
    work = tmp_path / "attr-check"
    work.mkdir(exist_ok=True)
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    (work / ".gitattributes").write_text(gitattributes)
    out = subprocess.run(["git", "-C", str(work), "check-attr", "filter", "--", *paths],
                         capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def test_create_layout_and_initial_commit(store: RepoStore, tmp_path: Path):
    path = tmp_path / "repos" / "models" / "alice" / "tiny-bert.git"
    assert store.repo_path("model", RID) == path
    assert git(store, "rev-parse", "--is-bare-repository").strip() == "true"
    assert git(store, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert git(store, "ls-tree", "--name-only", "main").split() == [".gitattributes"]
    assert "*.safetensors filter=lfs" in git(store, "show", "main:.gitattributes")
    assert store.resolve("model", RID, "main") == git(store, "rev-parse", "main").strip()
    with pytest.raises(storage.RepoExistsError) as err:
        store.create("model", RID, author="alice")
    assert err.value.status == 409
    assert not store.exists("dataset", RID)
    store.create("dataset", RID, author="alice")  # datasets live apart from models
    assert (tmp_path / "repos" / "datasets" / "alice" / "tiny-bert.git").is_dir()


@pytest.mark.parametrize("bad", ["alice", "a/b/c", "-x/y", "x/y.git", "x/a--b", "x/a..b", "x/a b", "../x", "x/"])
def test_invalid_repo_ids(store: RepoStore, bad: str):
    with pytest.raises(storage.InvalidNameError):
        store.create("model", bad, author="alice")
    assert not store.exists("model", bad)
    with pytest.raises(storage.RepoNotFound):
        store.resolve("model", bad, "main")


def test_commit_regular_and_lfs_files(store: RepoStore, tmp_path: Path):
    weights = bytes(range(256)) * 40
    oid = put_lfs(store, weights)
    sha = store.commit(
        "model", RID, "main",
        [AddFile("README.md", b"# Tiny\n"), AddFile("sub/dir/config.json", b"{}"),
         AddLfsFile("model.safetensors", oid, len(weights)), AddLfsFile("data/my file.raw", oid, len(weights))],
        message="Add model", description="with weights", author="alice", author_email="alice@example.org",
    )
    assert git(store, "rev-parse", "main").strip() == sha
    assert git(store, "log", "-1", "--format=%an <%ae>%n%B", "main") == "alice <alice@example.org>\nAdd model\n\nwith weights\n\n"
    assert git(store, "show", "main:sub/dir/config.json") == "{}"
    pointer = git(store, "show", "main:model.safetensors")
    assert pointer == f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(weights)}\n"
    # git itself must route both LFS paths through the lfs filter (the default pattern covers
    # *.safetensors; an explicit line was appended for the other one), and not README.md
    attrs = git(store, "show", "main:.gitattributes")
    assert attrs.count("model.safetensors") == 0 and "data/my[[:space:]]file.raw filter=lfs" in attrs
    worktree_check = check_attr(tmp_path, attrs, ["model.safetensors", "data/my file.raw", "README.md"])
    assert worktree_check == [
        "model.safetensors: filter: lfs", "data/my file.raw: filter: lfs", "README.md: filter: unspecified"
    ]
    # trees: real sizes and LFS info
    entries = {e.path: e for e in store.list_tree("model", RID, sha, recursive=True)}
    assert entries["model.safetensors"].size == len(weights)
    assert entries["model.safetensors"].lfs.oid == oid and entries["model.safetensors"].lfs.pointer_size == len(pointer)
    assert entries["model.safetensors"].oid == git(store, "rev-parse", "main:model.safetensors").strip()
    assert entries["README.md"].lfs is None and entries["README.md"].size == 7
    assert entries["sub"].type == "directory" and entries["sub/dir"].oid == git(store, "rev-parse", "main:sub/dir").strip()
    top = [e.path for e in store.list_tree("model", RID, "main")]
    assert sorted(top) == sorted(git(store, "ls-tree", "--name-only", "main").split("\n")[:-1])
    assert [e.path for e in store.list_tree("model", RID, "main", "sub/dir")] == ["sub/dir/config.json"]
    with pytest.raises(storage.EntryNotFound):
        store.list_tree("model", RID, "main", "nope")
    with pytest.raises(storage.EntryNotFound):
        store.list_tree("model", RID, "main", "README.md")
    # reading
    assert store.read_blob("model", RID, "main", "model.safetensors").decode() == pointer
    entry, f = store.open_file("model", RID, "main", "data/my file.raw")
    with f:
        assert f.read() == weights and entry.size == len(weights)
    entry, content = store.open_file("model", RID, sha[:8], "README.md")
    assert content == b"# Tiny\n"
    with pytest.raises(storage.EntryNotFound):
        store.read_blob("model", RID, "main", "missing.txt")
    with pytest.raises(storage.EntryNotFound):
        store.read_blob("model", RID, "main", "sub")


def test_delete_and_copy(store: RepoStore):
    data = b"lfs payload" * 100
    oid = put_lfs(store, data)
    base = store.commit(
        "model", RID, "main",
        [AddFile("a/x.txt", b"x"), AddFile("a/b/y.txt", b"y"), AddFile("keep.txt", b"k"),
         AddLfsFile("w.bin", oid, len(data))],
        message="files", author="alice",
    )
    sha = store.commit(
        "model", RID, "main",
        [DeleteFolder("a/b/"), DeleteFile("keep.txt"), CopyFile("w.bin", "copies/w2.bin"),
         CopyFile("keep.txt", "old/keep.txt", src_revision=base)],
        message="reshape", author="alice",
    )
    files = git(store, "ls-tree", "-r", "--name-only", sha).split()
    assert files == [".gitattributes", "a/x.txt", "copies/w2.bin", "old/keep.txt", "w.bin"]
    assert git(store, "rev-parse", f"{sha}:copies/w2.bin") == git(store, "rev-parse", f"{sha}:w.bin")
    # deleting the last file of a folder removes the folder
    sha = store.commit("model", RID, "main", [DeleteFile("a/x.txt")], message="rm", author="alice")
    assert "a" not in git(store, "ls-tree", "--name-only", sha).split()
    for op in (DeleteFile("nope.txt"), DeleteFolder("nope"), DeleteFile("copies"), DeleteFolder("w.bin")):
        with pytest.raises(storage.EntryNotFound):
            store.commit("model", RID, "main", [op], message="bad", author="alice")
    assert store.resolve("model", RID, "main") == sha


@pytest.mark.parametrize(
    "bad", ["../x", "a/../../x", "/etc/passwd", "a\\b", ".git/config", "a/.git/hooks/x", "a//b", "a/./b",
            "", "nul\x00byte", "new\nline", "a/", ".GIT/x"],
)
def test_bad_paths_rejected_repo_unchanged(store: RepoStore, bad: str):
    head = store.resolve("model", RID, "main")
    with pytest.raises(storage.InvalidPathError) as err:
        store.commit("model", RID, "main", [AddFile("ok.txt", b"1"), AddFile(bad, b"x")], message="m", author="a")
    assert err.value.status == 400 and err.value.message
    assert store.resolve("model", RID, "main") == head


def test_path_normalisation_and_conflicts(store: RepoStore):
    sha = store.commit("model", RID, "main", [AddFile("./dir/f.txt", b"1")], message="m", author="a")
    assert git(store, "ls-tree", "-r", "--name-only", sha).split() == [".gitattributes", "dir/f.txt"]
    with pytest.raises(storage.InvalidPathError):  # file where a folder is
        store.commit("model", RID, "main", [AddFile("dir", b"x")], message="m", author="a")
    with pytest.raises(storage.InvalidPathError):  # folder where a file is
        store.commit("model", RID, "main", [AddFile("dir/f.txt/g", b"x")], message="m", author="a")
    assert store.resolve("model", RID, "main") == sha


def test_lfs_object_must_exist(store: RepoStore):
    head = store.resolve("model", RID, "main")
    missing = hashlib.sha256(b"never uploaded").hexdigest()
    with pytest.raises(storage.LfsObjectMissing) as err:
        store.commit("model", RID, "main", [AddLfsFile("w.bin", missing, 14)], message="m", author="a")
    assert err.value.status == 422
    oid = put_lfs(store, b"abc")
    with pytest.raises(storage.LfsVerifyError):  # wrong size for a stored object
        store.commit("model", RID, "main", [AddLfsFile("w.bin", oid, 4)], message="m", author="a")
    with pytest.raises(storage.LfsVerifyError):
        store.commit("model", RID, "main", [AddLfsFile("w.bin", "XYZ", 3)], message="m", author="a")
    assert store.resolve("model", RID, "main") == head


def test_stale_parent_and_cas(store: RepoStore):
    first = store.resolve("model", RID, "main")
    second = store.commit("model", RID, "main", [AddFile("a", b"1")], message="m", author="a", parent=first)
    with pytest.raises(storage.StaleParentError) as err:
        store.commit("model", RID, "main", [AddFile("b", b"2")], message="m", author="a", parent=first)
    assert err.value.status == 412
    assert store.resolve("model", RID, "main") == second
    # a ref moved by someone else (a git push) between reading the head and writing the commit
    path = store.repo_path("model", RID)
    original = store._apply

    def racing_apply(repo, base, ops):
        tree = original(repo, base, ops)
        if not racing_apply.done:
            racing_apply.done = True
            subprocess.run(["git", "--git-dir", str(path), "update-ref", "refs/heads/main", first], check=True)
        return tree

    racing_apply.done = False
    store._apply = racing_apply
    with pytest.raises(storage.ConcurrentUpdateError) as err:
        store.commit("model", RID, "main", [AddFile("c", b"3")], message="m", author="a", parent=second)
    assert err.value.status == 409
    assert store.resolve("model", RID, "main") == first  # the other writer's value survives
    # without an explicit parent the commit is rebuilt on the new head instead
    racing_apply.done = False
    sha = store.commit("model", RID, "main", [AddFile("c", b"3")], message="m", author="a")
    assert git(store, "rev-parse", f"{sha}^").strip() == first


def test_concurrent_commits_lose_nothing(store: RepoStore):
    def worker(i: int):
        store.commit("model", RID, "main", [AddFile(f"f{i}.txt", str(i).encode())], message=f"c{i}", author="a")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    files = git(store, "ls-tree", "--name-only", "main").split()
    assert sorted(files) == sorted([".gitattributes"] + [f"f{i}.txt" for i in range(8)])
    assert int(git(store, "rev-list", "--count", "main")) == 9


def test_unknown_branch_and_revisions(store: RepoStore):
    with pytest.raises(storage.RevisionNotFound):
        store.commit("model", RID, "nope", [AddFile("a", b"1")], message="m", author="a")
    store.create_tag("model", RID, "v1", "main")
    for bad in ("refs/tags/v1", "refs/heads/../x", "a..b", "HEAD"):
        with pytest.raises(storage.InvalidPathError):
            store.commit("model", RID, bad, [AddFile("a", b"1")], message="m", author="a")
    for rev in ("nope", "0" * 40, "refs/heads/nope", "../main", "deadbeef", "main~1"):
        with pytest.raises(storage.RevisionNotFound) as err:
            store.resolve("model", RID, rev)
        assert err.value.code == "RevisionNotFound"
    with pytest.raises(storage.RepoNotFound) as err:
        store.resolve("model", "alice/other", "main")
    assert err.value.code == "RepoNotFound" and err.value.status == 404


def test_refs_branches_tags(store: RepoStore):
    first = store.resolve("model", RID, "main")
    second = store.commit("model", RID, "main", [AddFile("a", b"1")], message="m", author="a")
    assert store.create_branch("model", RID, "dev", first) == first
    store.create_tag("model", RID, "v1.0", "main", "release one")
    store.create_tag("model", RID, "light", first)
    store.create_branch("model", RID, "feature/x")
    branches, tags = store.refs("model", RID)
    assert [(b.name, b.ref, b.target_commit) for b in branches] == [
        ("dev", "refs/heads/dev", first), ("feature/x", "refs/heads/feature/x", second),
        ("main", "refs/heads/main", second),
    ]
    assert [(t.name, t.target_commit) for t in tags] == [("light", first), ("v1.0", second)]
    assert git(store, "cat-file", "-t", "v1.0").strip() == "tag"  # annotated
    assert git(store, "tag", "-n1", "-l", "v1.0").split() == ["v1.0", "release", "one"]
    assert store.resolve("model", RID, "v1.0") == second and store.resolve("model", RID, "dev") == first
    assert store.resolve("model", RID, "refs/heads/dev") == first
    with pytest.raises(storage.RepoExistsError):
        store.create_branch("model", RID, "dev", "main")
    with pytest.raises(storage.RepoExistsError):
        store.create_tag("model", RID, "v1.0", "main")
    for bad in ("a..b", "with space", "x~1", "-x", "a:b", "x.lock"):
        with pytest.raises(storage.InvalidPathError):
            store.create_branch("model", RID, bad, "main")
    with pytest.raises(storage.RevisionNotFound):
        store.create_branch("model", RID, "other", "nope")
    store.commit("model", RID, "dev", [AddFile("dev.txt", b"d")], message="on dev", author="a")
    assert "dev.txt" not in git(store, "ls-tree", "--name-only", "main").split()
    store.delete_branch("model", RID, "dev")
    store.delete_tag("model", RID, "v1.0")
    with pytest.raises(storage.RevisionNotFound):
        store.delete_branch("model", RID, "dev")
    with pytest.raises(storage.RevisionNotFound):
        store.delete_tag("model", RID, "v1.0")
    with pytest.raises(storage.StorageError):
        store.delete_branch("model", RID, "main")
    assert git(store, "for-each-ref", "--format=%(refname)").split() == [
        "refs/heads/feature/x", "refs/heads/main", "refs/tags/light"
    ]


def test_log_and_last_commit(store: RepoStore):
    shas = [store.resolve("model", RID, "main")]
    for i, ops in enumerate([[AddFile("a.txt", b"1"), AddFile("d/x", b"x")], [AddFile("b.txt", b"2")],
                             [AddFile("a.txt", b"3")], [DeleteFile("b.txt")]]):
        shas.append(store.commit("model", RID, "main", ops, message=f"step {i}\n\nbody", author=f"u{i}"))
    log = store.log("model", RID, "main")
    assert [c.id for c in log] == git(store, "rev-list", "main").split()
    assert log[0].title == "step 3" and log[0].authors == ["u3"] and log[0].parents == [shas[3]]
    assert log[-1].parents == [] and log[-1].title == "initial commit"
    assert str(int(log[0].date.timestamp())) == git(store, "log", "-1", "--format=%at", "main").strip()
    page = store.log("model", RID, "main", skip=1, limit=2)
    assert [c.id for c in page] == git(store, "rev-list", "--skip=1", "--max-count=2", "main").split()
    assert store.count_commits("model", RID, "main") == 5
    last = store.last_commit_for("model", RID, "main", ["a.txt", "d", "d/x", ".gitattributes", "gone"])
    for path, info in last.items():
        assert info.id == git(store, "log", "-1", "--format=%H", "main", "--", path).strip(), path
    assert set(last) == {"a.txt", "d", "d/x", ".gitattributes"}


def test_delete_and_move(store: RepoStore, tmp_path: Path):
    store.commit("model", RID, "main", [AddFile("a", b"1")], message="m", author="a")
    store.move("model", RID, "bob/renamed")
    assert not store.exists("model", RID) and store.exists("model", "bob/renamed")
    assert not (tmp_path / "repos" / "models" / "alice").exists()
    assert store.read_blob("model", "bob/renamed", "main", "a") == b"1"
    store.create("model", "carol/x", author="carol")
    with pytest.raises(storage.RepoExistsError):
        store.move("model", "bob/renamed", "carol/x")
    with pytest.raises(storage.RepoNotFound):
        store.move("model", "nobody/x", "carol/y")
    with pytest.raises(storage.InvalidNameError):
        store.move("model", "carol/x", "bad name/x")
    store.delete("model", "bob/renamed")
    assert not store.exists("model", "bob/renamed")
    with pytest.raises(storage.RepoNotFound):
        store.delete("model", "bob/renamed")


def test_many_small_files_one_commit_writes_each_tree_once(store: RepoStore):
    """A bulk commit edits the tree in memory and writes each folder once (25 shards + root),
    not once per file: counted in the object store instead of timed, so load cannot flake it."""

    def trees() -> int:
        kinds = git(store, "cat-file", "--batch-all-objects", "--batch-check=%(objecttype)").split()
        return kinds.count("tree")

    before = trees()
    ops = [AddFile(f"shard_{i // 20}/file_{i}.txt", f"content {i}\n".encode()) for i in range(500)]
    sha = store.commit("model", RID, "main", ops, message="bulk", author="a")
    assert len(git(store, "ls-tree", "-r", "--name-only", sha).split()) == 501
    assert trees() - before == 26


def test_unicode_paths_and_empty_commit(store: RepoStore):
    """Non-ASCII names are stored as git stores them (UTF-8 bytes, as `git ls-tree -z` shows),
    and a commit with no operations is an empty commit on top of the head (`--allow-empty`)."""
    names = ["dïr/café ☕.txt", "日本/語.bin", "emoji/🤗.md"]
    sha = store.commit("model", RID, "main", [AddFile(n, n.encode()) for n in names], message="u", author="a")
    listed = git(store, "ls-tree", "-r", "-z", "--name-only", sha).split("\0")
    assert sorted(n for n in listed if n) == sorted([".gitattributes", *names])
    for n in names:
        assert store.read_blob("model", RID, "main", n) == n.encode()
    assert {e.path for e in store.list_tree("model", RID, "main", "日本")} == {"日本/語.bin"}
    assert store.last_commit_for("model", RID, "main", ["日本", names[0]])["日本"].id == sha
    empty = store.commit("model", RID, "main", [], message="nothing", author="a")
    assert git(store, "rev-parse", f"{empty}^").strip() == sha
    assert git(store, "rev-parse", f"{empty}^{{tree}}") == git(store, "rev-parse", f"{sha}^{{tree}}")


@pytest.mark.parametrize("pinned", [False, True])
def test_commit_waits_for_a_ref_locked_by_another_writer(store: RepoStore, monkeypatch, pinned: bool):
    """git receive-pack holds `refs/heads/main.lock` while it moves the ref: a commit racing it
    backs off and retries instead of failing with ConcurrentUpdateError. The lock is released
    by the first back-off sleep, so no real waiting or timing is involved."""
    from haven.server.storage import repos as repos_module

    head = store.resolve("model", RID, "main")
    lock = store.repo_path("model", RID) / "refs" / "heads" / "main.lock"
    lock.write_text(head + "\n")
    sleeps: list[float] = []

    def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        lock.unlink(missing_ok=True)

    monkeypatch.setattr(repos_module.time, "sleep", fake_sleep)
    sha = store.commit("model", RID, "main", [AddFile("x.txt", b"x")], message="m", author="a",
                       parent=head if pinned else None)
    assert sleeps and not lock.exists()
    assert store.resolve("model", RID, "main") == sha and git(store, "rev-parse", f"{sha}^").strip() == head


def test_ref_operations_on_a_locked_ref_are_409(store: RepoStore):
    """Branch and tag writes meeting another writer's lock file answer ConcurrentUpdateError
    (409, retry) instead of a bare OSError (a 500); once the lock is gone they work."""
    refs = store.repo_path("model", RID) / "refs"
    store.create_branch("model", RID, "old")
    store.create_tag("model", RID, "v0", "main")
    locks = [refs / "heads" / "dev.lock", refs / "heads" / "old.lock", refs / "tags" / "v1.lock", refs / "tags" / "v0.lock"]
    for lock in locks:
        lock.write_text("x\n")
    calls = [
        lambda: store.create_branch("model", RID, "dev"),
        lambda: store.delete_branch("model", RID, "old"),
        lambda: store.create_tag("model", RID, "v1", "main", message="annotated"),
        lambda: store.delete_tag("model", RID, "v0"),
    ]
    for call in calls:
        with pytest.raises(storage.ConcurrentUpdateError) as err:
            call()
        assert err.value.status == 409
    for lock in locks:
        lock.unlink()
    for call in calls:
        call()
    branches, tags = store.refs("model", RID)
    assert [b.name for b in branches] == ["dev", "main"] and [t.name for t in tags] == ["v1"]
