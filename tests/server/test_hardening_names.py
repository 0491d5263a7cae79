"""Issue 12, names and paths: one set of rules on every write path (the commit API, the storage
library, `haven admin`, the push hook), checked against git's own fsck where git has a rule."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from fixtures.server import unique_name
from haven.server import auth, storage
from haven.server.storage import AddFile, LfsStore, RepoStore, paths
from haven.server.storage.hooks import gitnames

RID = "alice/names"

# Names git's fsck calls `hasDotgit` (HFS+ ignorables, NTFS short name, trailing dots and
# spaces, NTFS streams) and look-alikes it accepts; the verdicts come from git itself below.
DOTGIT_TABLE = [
    ".git", ".GIT", ".git\u200c", ".g\u200cit", "\u200c.git", ".git\ufeff", ".gi\u206at", ".gi\u202et",
    "git~1", "GIT~1", ".git.", ".git ", ".git. .", ".git::$INDEX_ALLOCATION", ".git:x", "git~1 .",
    ".gitattributes", ".gitignore", "git~2", ".git-x", "x.git", ".git\u200b", "git~1x", ".g\u0130t", ".git.x",
]


def git_fsck_says_dotgit(tmp_path: Path, name: str) -> bool:
    """Whether `git fsck --strict` reports a tree entry called `name` as `hasDotgit`."""
    repo = tmp_path / f"fsck-{DOTGIT_TABLE.index(name)}"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)

    def git(*args: str, data: bytes) -> str:
        return subprocess.run(["git", "--git-dir", str(repo), *args], input=data, capture_output=True,
                              check=True).stdout.decode().strip()

    blob = git("hash-object", "-w", "--stdin", data=b"x")
    git("mktree", "-z", data=f"100644 blob {blob}\t{name}\0".encode())
    out = subprocess.run(["git", "--git-dir", str(repo), "fsck", "--strict", "--no-dangling"],
                         capture_output=True, text=True)
    return "hasDotgit" in out.stdout + out.stderr


@pytest.mark.parametrize("name", DOTGIT_TABLE)
def test_dotgit_aliases_agree_with_git_fsck(tmp_path: Path, name: str):
    refused = gitnames.is_hfs_dotgit(name) or gitnames.is_ntfs_dotgit(name)
    assert refused == git_fsck_says_dotgit(tmp_path, name)
    assert (gitnames.component_error(name) is not None) == refused
    if refused:
        with pytest.raises(storage.InvalidPathError):
            paths.normalize_path(f"{name}/config")
    else:
        assert paths.normalize_path(f"{name}/config") == f"{name}/config"


@pytest.fixture()
def store(tmp_path: Path) -> RepoStore:
    rs = RepoStore(tmp_path / "repos", LfsStore(tmp_path / "lfs"))
    rs.create("model", RID, author="alice")
    return rs


DEEP_OK = "/".join(["d"] * 63) + "/f.txt"  # 64 components
BAD_PATHS = [
    ".git\u200c/config", ".g\u200cit/config", "git~1/config", ".git. /config", "a/.GIT::$INDEX_ALLOCATION/x",
    "c1\x85.txt", "csi\x9b.txt", "tab\tname", "cr\rname", "del\x7f", "nul\x00", "nl\n",
    "/".join(["d"] * 64) + "/f.txt", "/".join(["d"] * 1500) + "/f.txt", "x/" * 2100 + "f", "\ud800.txt",
]


@pytest.mark.parametrize("bad", BAD_PATHS, ids=range(len(BAD_PATHS)))
def test_bad_paths_are_400_and_change_nothing(store: RepoStore, bad: str):
    head = store.resolve("model", RID, "main")
    with pytest.raises(storage.InvalidPathError) as err:
        store.commit("model", RID, "main", [AddFile("ok.txt", b"1"), AddFile(bad, b"x")], message="m", author="a")
    assert err.value.status == 400 and "Invalid path" in err.value.message
    assert store.resolve("model", RID, "main") == head


def test_bounds_are_inclusive(store: RepoStore):
    sha = store.commit("model", RID, "main", [AddFile(DEEP_OK, b"deep"), AddFile("n" * 255, b"long")],
                       message="m", author="a")
    assert store.read_blob("model", RID, sha, DEEP_OK) == b"deep"
    assert store.read_blob("model", RID, sha, "n" * 255) == b"long"
    name = "b" * gitnames.MAX_REF_BYTES
    assert store.create_branch("model", RID, name) == sha
    assert store.create_tag("model", RID, name, "main") == sha


@pytest.mark.parametrize("bad", ["b" * 300, "b" * (gitnames.MAX_REF_BYTES + 1), "c1\x85", "nl\n", "tab\t", "x\x7f"])
def test_bad_branch_and_tag_names_are_400(store: RepoStore, bad: str):
    for call in (
        lambda: store.create_branch("model", RID, bad),
        lambda: store.create_tag("model", RID, bad, "main"),
        lambda: store.commit("model", RID, bad, [AddFile("x", b"1")], message="m", author="a"),
    ):
        with pytest.raises(storage.InvalidNameError) as err:
            call()
        assert err.value.status == 400
    assert [b.name for b in store.refs("model", RID)[0]] == ["main"]


# -- M2: names are matched whole (fullmatch), a trailing newline is refused ---------------------


@pytest.mark.parametrize("bad", ["alice/nl\n", "nl\n/x", "alice/x\n\n"])
def test_repo_ids_with_a_trailing_newline_are_refused(store: RepoStore, bad: str):
    assert paths.repo_id_error(bad)
    with pytest.raises(storage.InvalidNameError):
        store.create("model", bad, author="a")
    assert not any(p.name.endswith("\n.git") for p in (store.root / "models").rglob("*"))


def test_user_names_with_a_trailing_newline_are_refused(tmp_path: Path):
    assert not auth.valid_name("alice\n") and auth.valid_name("alice")
    data = str(tmp_path / "data")
    made = subprocess.run([sys.executable, "-m", "haven.cli", "admin", "create-user", "alice\n", "--data", data],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode != 0 and "invalid user name" in made.stderr
    assert subprocess.run([sys.executable, "-m", "haven.cli", "admin", "create-token", "alice\n", "--data", data],
                          capture_output=True, text=True, timeout=120).returncode != 0


# -- through the real server -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def hub(hub_server):
    name = unique_name("names")
    token = hub_server.create_user(name)
    headers = {"authorization": f"Bearer {token}"}
    r = httpx.post(f"{hub_server.url}/api/repos/create", json={"name": "guarded"}, headers=headers)
    assert r.status_code == 200, r.text
    return {"url": hub_server.url, "headers": headers, "repo": f"{name}/guarded", "user": name}


def test_server_refuses_a_repo_name_ending_in_newline(hub):
    r = httpx.post(f"{hub['url']}/api/repos/create", json={"name": "nl\n"}, headers=hub["headers"])
    assert r.status_code == 400, r.text
    listed = httpx.get(f"{hub['url']}/api/models", params={"author": hub["user"]}).json()
    assert [m["id"] for m in listed] == [hub["repo"]]


def _commit(hub, path: str) -> httpx.Response:
    lines = [
        {"key": "header", "value": {"summary": "try", "description": ""}},
        {"key": "file", "value": {"path": path, "content": base64.b64encode(b"x").decode(), "encoding": "base64"}},
    ]
    return httpx.post(
        f"{hub['url']}/api/models/{hub['repo']}/commit/main",
        content=b"".join(json.dumps(x).encode() + b"\n" for x in lines),
        headers={**hub["headers"], "content-type": "application/x-ndjson"},
    )


@pytest.mark.parametrize("path", [".git\u200c/config", ".g\u200cit/config", "GIT~1/config", ".git. /config",
                                  "c1\x85.txt", "/".join(["d"] * 1500) + "/f.txt"], ids=range(6))
def test_server_commit_refuses_bad_paths_with_400(hub, path: str):
    r = _commit(hub, path)
    assert r.status_code == 400, r.text
    assert r.json()["error"]


@pytest.mark.parametrize("name", ["b" * 300, "c1\x85"])
def test_server_branch_names_over_the_bound_are_400(hub, name: str):
    r = httpx.post(f"{hub['url']}/api/models/{hub['repo']}/branch/{name}", headers=hub["headers"])
    assert r.status_code == 400, r.text


# -- tokens -----------------------------------------------------------------------------------------


def _raw_get(url: str, path: str, authorization: bytes) -> int:
    """The status of a GET sent byte for byte (httpx refuses a header value ending in a space)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nAuthorization: " + authorization
                     + b"\r\nConnection: close\r\n\r\n")
        head = sock.recv(65536)
    return int(head.split(b" ", 2)[1])


@pytest.mark.parametrize("header", [b"Bearer ", b"Bearer", b"bearer   "])
def test_an_empty_bearer_token_is_401_not_anonymous(hub, header: bytes):
    # a public repo answers anonymous callers; an empty credential is still a wrong credential
    info = f"/api/models/{hub['repo']}"
    assert httpx.get(hub["url"] + info).status_code == 200
    assert _raw_get(hub["url"], info, header) == 401
    assert _raw_get(hub["url"], "/api/whoami-v2", header) == 401


@pytest.mark.parametrize("name", ["alice", "alice.GIT", "a--b", "x..y", "-lead", "ok_name.v2", "nl\n", "é"])
def test_user_names_and_repo_names_follow_one_rule(name):
    """A user who can be created can own repositories, and the other way round ('alice.GIT' was a
    valid user name that no repository id could start with)."""
    from haven.server import auth
    from haven.server.storage.paths import repo_id_error

    assert auth.valid_name(name) == (repo_id_error(f"{name}/model") is None) == (repo_id_error(f"o/{name}") is None)
