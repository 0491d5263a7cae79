"""Issue 12, storage: `.gitattributes` matching in linear time (agreeing with `git check-attr`),
crash-safe repository create/delete/move (a process killed mid-way leaves the repo or nothing),
and bounds on LFS objects (maximum size, interrupted uploads swept at start)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from haven.server import storage
from haven.server.storage import AddFile, LfsStore, RepoStore, attributes

# -- H3: .gitattributes ---------------------------------------------------------------------------

PATTERNS = [
    "*.bin", "*", "**", "?", "a?c", "[abc]*", "[!abc]*", "[^a]x", "[a-c]*.txt", "[]a]*", "[a-]*",
    "[[:digit:]]*", "[[:alpha:][:digit:]]x", "[[:bogus:]]x", "[abc", "[[:alpha:]", "x\\*y", "x\\",
    "a/b", "/top.txt", "dir/**", "**/x.txt", "a/**/b.txt", "a/**b", "dir/", "*a*a*a*a*a*a*a*a*a*a*a*a*b",
    "d*/*.txt", "*/*", "?.bin", "??.bin", "é*", "my[[:space:]]file", "**/**/x.txt", "a**", "***.txt",
    "*[xy]*[xy]*", "[z-a]*", "[\\]]*", "a/*/b.txt", "/*", "/a/**", "**/d/**", "*.BIN",
]
PATHS = [
    "x.bin", "a/x.bin", "abc", "a", "b", "abc.txt", "d/abc.txt", "dir/x", "dir/sub/x", "dir", "x.txt",
    "a/x.txt", "a/b/x.txt", "a/b.txt", "a/q/b.txt", "a/q/r/b.txt", "a/xb", "a/b", "top.txt", "sub/top.txt",
    "1abc", "]ab", "-x", "x*y", "xzy", "é.bin", "éé.bin", "my file", "a" * 33 + "b", "a" * 34, "dd/x.txt",
    "d/x.txt", "dx/y/z.txt", "x/d/y", "X.BIN", "yxy", "\\x",
]


def git_check_attr(tmp_path: Path, gitattributes: bytes, paths: list[str]) -> dict[str, str]:
    """`git check-attr filter` for each path under a root `.gitattributes` (git is the reference)."""
    work = tmp_path / "attr"
    if not (work / ".git").exists():
        subprocess.run(["git", "init", "-q", str(work)], check=True)
    (work / ".gitattributes").write_bytes(gitattributes)
    out = subprocess.run(["git", "-C", str(work), "check-attr", "-z", "filter", "--", *paths],
                         capture_output=True, check=True).stdout.decode().split("\0")
    return {out[i]: out[i + 2] for i in range(0, len(out) - 2, 3)}


def test_each_pattern_agrees_with_git_check_attr(tmp_path: Path):
    mismatches = []
    for pattern in PATTERNS:
        text = f"{pattern} filter=lfs\n"
        said = git_check_attr(tmp_path, text.encode(), PATHS)
        for path in PATHS:
            if attributes.is_lfs_tracked(text, path) != (said[path] == "lfs"):
                mismatches.append((pattern, path, said[path]))
    assert mismatches == []


def test_last_matching_line_wins_as_in_git(tmp_path: Path):
    text = ("*.bin filter=lfs\nsub/*.bin -filter\nsub/keep.bin filter=lfs\n*.txt filter=lfs\nx.txt filter\n"
            "a.txt !filter\n[attr]bin -diff\n" + "y.bin" + " " * attributes.MAX_LINE_BYTES + "-filter\n")
    paths = ["x.bin", "sub/x.bin", "sub/keep.bin", "x.txt", "a.txt", "b.txt", "y.bin"]
    said = git_check_attr(tmp_path, text.encode(), paths)
    assert {p: attributes.is_lfs_tracked(text, p) for p in paths} == {p: said[p] == "lfs" for p in paths}
    assert said["y.bin"] == "lfs"  # git ignores the over-long line, and so do we


@pytest.mark.parametrize(
    "pattern, path",
    [
        ("*a" * 12 + "*b", "a" * 34),  # 16 s with the backtracking regex
        ("*a" * 500 + "*b", "a" * 250),
        ("*?" * 600, "a" * 250 + "/" + "b" * 250),
        ("**/a" * 400 + "/**/b", "/".join(["a"] * 63) + "/c"),
        ("*[ab]" * 300 + "*c", "ab" * 120),
    ],
    ids=["issue", "stars", "questions", "globstars", "brackets"],
)
def test_pathological_patterns_match_in_linear_time(tmp_path: Path, pattern: str, path: str):
    text = f"{pattern} filter=lfs\n"
    start = time.perf_counter()
    ours = attributes.is_lfs_tracked(text, path)
    elapsed = time.perf_counter() - start
    assert elapsed < 0.05, f"{elapsed:.3f} s"
    assert ours == (git_check_attr(tmp_path, text.encode(), [path])[path] == "lfs")


def test_too_many_filter_lines_are_refused_with_400():
    text = "".join(f"*.e{i} filter=lfs\n" for i in range(attributes.MAX_FILTER_LINES + 1))
    with pytest.raises(attributes.GitattributesError) as err:
        attributes.is_lfs_tracked(text, "x.bin")
    assert err.value.status == 400 and "at most" in err.value.message
    assert attributes.is_lfs_tracked(text.split("\n", 1)[1], "x.e1")  # one line less is fine


# -- M4: a killed process leaves the repository or nothing ------------------------------------------

RID = "alice/fragile"

_CRASH = """
import os, signal, sys
from pathlib import Path
from haven.server.storage import LfsStore, RepoStore, lifecycle
root, op, where = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
store = RepoStore(root / "repos", LfsStore(root / "lfs"))
die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
if where == "cleanup":  # killed while removing the trash, after the caller's transaction
    remove = lifecycle._remove_tree
    lifecycle._remove_tree = lambda path: (remove(Path(path) / "objects"), die())
blocks = {"delete": lambda: store.deleting("model", "alice/fragile"),
          "create": lambda: store.creating("model", "alice/new", author="a"),
          "move": lambda: store.moving("model", "alice/fragile", "bob/moved")}
with blocks[op]():
    if where == "inside":  # killed before the caller's database transaction committed
        die()
"""


def _killed_during(tmp_path: Path, op: str, where: str) -> RepoStore:
    run = subprocess.run([sys.executable, "-c", _CRASH, str(tmp_path), op, where], capture_output=True, timeout=60)
    assert run.returncode == -signal.SIGKILL, run.stderr.decode()
    return RepoStore(tmp_path / "repos", LfsStore(tmp_path / "lfs"))


@pytest.fixture()
def repo(tmp_path: Path) -> str:
    store = RepoStore(tmp_path / "repos", LfsStore(tmp_path / "lfs"))
    store.create("model", RID, author="alice")
    return store.commit("model", RID, "main", [AddFile("w.txt", b"weights")], message="m", author="alice")


def _scratch_is_empty(store: RepoStore) -> bool:
    return all(not (store.root / d).exists() or not any((store.root / d).iterdir())
               for d in (".trash", ".tmp", ".journal"))


def test_killed_delete_before_the_database_commit_is_undone(tmp_path: Path, repo: str):
    store = _killed_during(tmp_path, "delete", "inside")
    assert not store.exists("model", RID)  # the ghost of the issue: listed, but not on disk
    done = store.recover(lambda repo_type, repo_id: True)  # the database still lists it
    assert done and store.resolve("model", RID, "main") == repo
    assert store.read_blob("model", RID, "main", "w.txt") == b"weights"
    assert _scratch_is_empty(store)
    store.delete("model", RID)  # and it can be deleted again
    assert not store.exists("model", RID)


def test_killed_delete_after_the_database_commit_is_finished(tmp_path: Path, repo: str):
    for where in ("inside", "cleanup"):
        if not RepoStore(tmp_path / "repos", LfsStore(tmp_path / "lfs")).exists("model", RID):
            RepoStore(tmp_path / "repos", LfsStore(tmp_path / "lfs")).create("model", RID, author="a")
        store = _killed_during(tmp_path, "delete", where)
        store.recover(lambda repo_type, repo_id: False)  # the database row is gone
        assert not store.exists("model", RID) and _scratch_is_empty(store)
        store.create("model", RID, author="alice")  # the name is free again
        assert store.exists("model", RID)


def test_killed_create_is_removed_unless_recorded(tmp_path: Path, repo: str):
    store = _killed_during(tmp_path, "create", "inside")
    assert store.exists("model", "alice/new")
    store.recover(lambda repo_type, repo_id: False)
    assert not store.exists("model", "alice/new") and _scratch_is_empty(store)
    store = _killed_during(tmp_path, "create", "inside")
    store.recover(lambda repo_type, repo_id: repo_id == "alice/new")  # the database has it: keep it
    assert store.exists("model", "alice/new") and _scratch_is_empty(store)


def test_killed_move_is_undone_unless_recorded(tmp_path: Path, repo: str):
    store = _killed_during(tmp_path, "move", "inside")
    assert store.exists("model", "bob/moved") and not store.exists("model", RID)
    store.recover(lambda repo_type, repo_id: repo_id == RID)  # the database still has the old name
    assert store.resolve("model", RID, "main") == repo and not store.exists("model", "bob/moved")
    store = _killed_during(tmp_path, "move", "inside")
    store.recover(lambda repo_type, repo_id: repo_id == "bob/moved")
    assert store.resolve("model", "bob/moved", "main") == repo and not store.exists("model", RID)


def test_a_failing_block_undoes_the_storage_step(tmp_path: Path, repo: str):
    store = RepoStore(tmp_path / "repos", LfsStore(tmp_path / "lfs"))
    for block in (lambda: store.deleting("model", RID), lambda: store.moving("model", RID, "bob/x"),
                  lambda: store.creating("model", "alice/other", author="a")):
        with pytest.raises(RuntimeError), block():
            raise RuntimeError("the database refused")
    assert store.resolve("model", RID, "main") == repo
    assert not store.exists("model", "bob/x") and not store.exists("model", "alice/other")
    assert _scratch_is_empty(store)


def test_recover_empties_leftovers_of_older_versions(tmp_path: Path, repo: str):
    store = RepoStore(tmp_path / "repos", LfsStore(tmp_path / "lfs"))
    for scratch in (".trash", ".tmp"):
        (store.root / scratch / "0123abcd" / "objects").mkdir(parents=True)
    store.recover(lambda repo_type, repo_id: True)
    assert _scratch_is_empty(store) and store.resolve("model", RID, "main") == repo


# -- LFS bounds ---------------------------------------------------------------------------------------


def test_lfs_objects_over_the_limit_are_refused_before_writing(tmp_path: Path):
    lfs = LfsStore(tmp_path / "lfs", max_object_size=1000)
    data = os.urandom(1001)
    oid = hashlib.sha256(data).hexdigest()
    with pytest.raises(storage.LfsTooLargeError) as err:
        lfs.put(oid, len(data), iter([data]))
    assert err.value.status == 413 and "1000 bytes" in err.value.message
    assert not (tmp_path / "tmp").exists() and not lfs.has(oid)  # no temp file was even opened
    assert lfs.check_size(1000) == 1000
    lfs.put(hashlib.sha256(data[:1000]).hexdigest(), 1000, iter([data[:1000]]))


_KILLED_UPLOAD = """
import hashlib, os, signal, sys, time
from pathlib import Path
from haven.server.storage import LfsStore
lfs = LfsStore(Path(sys.argv[1]) / "lfs")
def body():
    yield b"x" * (1 << 20)
    os.kill(os.getpid(), signal.SIGKILL)
lfs.put("0" * 64, 100 << 20, body())
"""


def test_a_killed_upload_is_swept_at_start(tmp_path: Path):
    run = subprocess.run([sys.executable, "-c", _KILLED_UPLOAD, str(tmp_path)], capture_output=True, timeout=60)
    assert run.returncode == -signal.SIGKILL, run.stderr.decode()
    leftovers = list((tmp_path / "tmp").iterdir())  # the dead process's folder, with its partial file
    assert len(leftovers) == 1 and [f.stat().st_size for f in leftovers[0].iterdir()] == [1 << 20]
    assert LfsStore(tmp_path / "lfs").sweep_tmp() == 1
    assert list((tmp_path / "tmp").iterdir()) == []


_SWEEP = """
import sys
from pathlib import Path
from haven.server.storage import LfsStore
print(LfsStore(Path(sys.argv[1]) / "lfs").sweep_tmp())
"""


def test_a_second_process_starting_on_the_data_dir_keeps_uploads_in_progress(tmp_path: Path):
    """Two processes share a data directory (a hub restarting next to a running one, a CAS process):
    the one that starts sweeps what dead processes left, never the files of a live one's uploads."""
    payload = [b"a" * (1 << 20), b"b" * (1 << 20)]
    oid = hashlib.sha256(b"".join(payload)).hexdigest()
    swept = []

    def body():
        yield payload[0]
        run = subprocess.run([sys.executable, "-c", _SWEEP, str(tmp_path)], capture_output=True, text=True, timeout=60)
        swept.append(run.stdout.strip() or run.stderr)
        yield payload[1]

    lfs = LfsStore(tmp_path / "lfs")
    lfs.put(oid, 2 << 20, body())
    assert swept == ["0"]
    assert b"".join(lfs.read(oid)) == b"".join(payload)


def test_sweep_removes_loose_files_and_only_old_unfinished_folders(tmp_path: Path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    loose = tmp / "lfs-0123-partial"  # a file of the layout before per-process folders
    loose.write_bytes(b"x")
    young, old = tmp / ".new-young", tmp / ".new-old"  # folders a process was making when it died, or is making
    young.mkdir()
    old.mkdir()
    os.utime(old, (time.time() - 2 * 3600,) * 2)
    assert LfsStore(tmp_path / "lfs").sweep_tmp() == 2
    assert sorted(p.name for p in tmp.iterdir()) == [".new-young"]


def test_max_lfs_object_setting(tmp_path: Path, monkeypatch):
    from haven.server.settings import DEFAULT_MAX_LFS_OBJECT, Settings, SettingsError

    monkeypatch.delenv("HAVEN_MAX_LFS_OBJECT", raising=False)
    assert Settings.load(data_dir=tmp_path).max_lfs_object == DEFAULT_MAX_LFS_OBJECT == 50 * 10**9
    monkeypatch.setenv("HAVEN_MAX_LFS_OBJECT", "2GiB")
    assert Settings.load(data_dir=tmp_path).max_lfs_object == 2 * 1024**3
    assert Settings.load(data_dir=tmp_path, max_lfs_object="500MB").max_lfs_object == 500 * 10**6  # flag wins
    monkeypatch.setenv("HAVEN_MAX_LFS_OBJECT", "lots")
    with pytest.raises(SettingsError, match="HAVEN_MAX_LFS_OBJECT='lots' is not a size"):
        Settings.load(data_dir=tmp_path)
