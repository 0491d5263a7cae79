"""git smart HTTP through `run_http_backend`: a real `git clone` / `git push` against a tiny ASGI
harness (no auth, no database: those belong to the API), including the 10 MB push policy."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from starlette.requests import Request
from starlette.responses import StreamingResponse

from haven.server.storage import AddFile, LfsStore, RepoStore, format_pointer, githttp

RID = "alice/tiny"


class Harness:
    """Serves DATA/repos over smart HTTP at http://127.0.0.1:PORT/<models|datasets>/ns/name.git."""

    def __init__(self, repo_root: Path):
        self.repo_root = repo_root
        self.allow_push = True
        self.max_pack_size = githttp.MAX_GIT_PACK
        self.pushes: list[tuple[str, str]] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", interface="asgi3")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    async def app(self, scope, receive, send):
        # Starlette, as the hub's routes use it: its StreamingResponse listens for a disconnect on
        # the same receive channel while streaming, so the backend must have read the body first
        request = Request(scope, receive)

        async def on_push(repo_type: str, repo_id: str):
            self.pushes.append((repo_type, repo_id))

        status, out, stream = await githttp.run_http_backend(
            self.repo_root, scope["path"], request.method, request.url.query, dict(request.headers),
            request.stream() if request.method == "POST" else b"",
            remote_user="alice", allow_push=self.allow_push, on_push=on_push,
            max_pack_size=self.max_pack_size,
        )
        await StreamingResponse(stream, status_code=status, headers=out)(scope, receive, send)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 10
        while not self.server.started and time.time() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(5)


@pytest.fixture()
def setup(tmp_path: Path):
    store = RepoStore(tmp_path / "repos", LfsStore(tmp_path / "lfs"))
    store.create("model", RID, author="alice")
    store.commit("model", RID, "main", [AddFile("README.md", b"# tiny\n"), AddFile("cfg/config.json", b"{}")],
                 message="files", author="alice")
    env = {
        **os.environ, "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x",
    }
    with Harness(tmp_path / "repos") as harness:
        yield store, harness, env, tmp_path


def run(env, *args, cwd=None, check=True):
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode:
        raise AssertionError(f"git {' '.join(args)} failed:\n{result.stderr}")
    return result


def test_clone_then_push(setup):
    store, harness, env, tmp = setup
    url = f"{harness.url}/models/{RID}.git"
    assert githttp.git_path_info("model", RID, "info/refs") == f"/models/{RID}.git/info/refs"
    run(env, "clone", "-q", url, str(tmp / "work"))
    work = tmp / "work"
    assert (work / "README.md").read_bytes() == b"# tiny\n"
    assert (work / "cfg" / "config.json").read_bytes() == b"{}"
    assert run(env, "rev-parse", "HEAD", cwd=work).stdout.strip() == store.resolve("model", RID, "main")
    (work / "new.txt").write_text("pushed\n")
    run(env, "add", "new.txt", cwd=work)
    run(env, "commit", "-q", "-m", "from git", cwd=work)
    run(env, "push", "-q", "origin", "main", cwd=work)
    head = run(env, "rev-parse", "HEAD", cwd=work).stdout.strip()
    assert store.resolve("model", RID, "main") == head
    assert store.read_blob("model", RID, "main", "new.txt") == b"pushed\n"
    assert store.log("model", RID, "main", limit=1)[0].title == "from git"
    assert harness.pushes == [("model", RID)]
    # tags and new branches can be pushed; other refs cannot
    run(env, "tag", "v1", cwd=work)
    run(env, "push", "-q", "origin", "v1", "main:dev", cwd=work)
    assert store.resolve("model", RID, "v1") == head and store.resolve("model", RID, "dev") == head
    bad = run(env, "push", "origin", "main:refs/custom/x", cwd=work, check=False)
    assert bad.returncode != 0 and "only branches" in bad.stderr
    bad = run(env, "push", "origin", ":main", cwd=work, check=False)
    assert bad.returncode != 0 and "default branch" in bad.stderr
    run(env, "push", "-q", "origin", ":dev", cwd=work)  # other branches can be deleted
    assert [b.name for b in store.refs("model", RID)[0]] == ["main"]
    # a commit made through the library is fetched by git
    sha = store.commit("model", RID, "main", [AddFile("api.txt", b"api")], message="api", author="alice")
    run(env, "pull", "-q", "--ff-only", cwd=work)
    assert (work / "api.txt").read_bytes() == b"api" and run(env, "rev-parse", "HEAD", cwd=work).stdout.strip() == sha


def test_large_non_lfs_push_refused(setup):
    store, harness, env, tmp = setup
    work = tmp / "work"
    run(env, "clone", "-q", f"{harness.url}/models/{RID}.git", str(work))
    before = store.resolve("model", RID, "main")
    (work / "big.dat").write_bytes(os.urandom(11 * 1024 * 1024))
    run(env, "add", "big.dat", cwd=work)
    run(env, "commit", "-q", "-m", "big", cwd=work)
    result = run(env, "push", "origin", "main", cwd=work, check=False)
    assert result.returncode != 0
    assert "big.dat is 11.5 MB" in result.stderr and "git-lfs" in result.stderr
    assert "git lfs migrate import" in result.stderr
    assert store.resolve("model", RID, "main") == before and harness.pushes == []



def test_push_of_lfs_pointer_without_object_refused(setup):
    store, harness, env, tmp = setup
    work = tmp / "work"
    run(env, "clone", "-q", f"{harness.url}/models/{RID}.git", str(work))
    data = os.urandom(5000)
    oid = hashlib.sha256(data).hexdigest()
    (work / "w.safetensors").write_bytes(format_pointer(oid, len(data)))  # as git-lfs would commit it
    run(env, "add", "w.safetensors", cwd=work)
    run(env, "commit", "-q", "-m", "pointer", cwd=work)
    before = store.resolve("model", RID, "main")
    result = run(env, "push", "origin", "main", cwd=work, check=False)
    assert result.returncode != 0
    assert f"w.safetensors is an LFS pointer to {oid[:12]}" in result.stderr and "git lfs push" in result.stderr
    assert store.resolve("model", RID, "main") == before
    store.lfs.put(oid, len(data), [data])  # what git-lfs's pre-push upload does
    run(env, "push", "-q", "origin", "main", cwd=work)
    entry, f = store.open_file("model", RID, "main", "w.safetensors")
    with f:
        assert f.read() == data and entry.lfs.oid == oid

def _crafted_push(env, work: Path, entries: list[tuple[str, str, bytes | str]]):
    """Push a commit whose root tree is HEAD's plus `entries` (mode, name, blob content or a
    commit sha for a submodule), built with plumbing: `git add` would refuse most of these."""
    lines = run(env, "ls-tree", "-z", "HEAD", cwd=work).stdout.split("\0")
    for mode, name, content in entries:
        if mode == "160000":
            lines.append(f"{mode} commit {content}\t{name}")
            continue
        if isinstance(content, str):  # a subtree holding one file: {name}/{content}
            blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], input=b"x", cwd=work, env=env,
                                  capture_output=True, check=True).stdout.decode().strip()
            sub = subprocess.run(["git", "mktree", "-z"], input=f"100644 blob {blob}\t{content}\0".encode(),
                                 cwd=work, env=env, capture_output=True, check=True).stdout.decode().strip()
            lines.append(f"040000 tree {sub}\t{name}")
            continue
        blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], input=content, cwd=work, env=env,
                              capture_output=True, check=True).stdout.decode().strip()
        lines.append(f"{mode} blob {blob}\t{name}")
    tree = subprocess.run(["git", "mktree", "-z", "--missing"], input="\0".join(x for x in lines if x).encode() + b"\0",
                          cwd=work, env=env, capture_output=True, check=True).stdout.decode().strip()
    commit = run(env, "commit-tree", tree, "-p", "HEAD", "-m", "crafted", cwd=work).stdout.strip()
    return run(env, "push", "origin", f"{commit}:refs/heads/main", cwd=work, check=False)


@pytest.mark.parametrize(
    "entries, says",
    [
        ([("120000", "evil", b"../../../../etc/passwd")], "symlink to '../../../../etc/passwd'"),
        ([("120000", "abs", b"/etc/passwd")], "symlink to '/etc/passwd'"),
        ([("040000", "cfg2", "link"), ("120000", "up", b"cfg/../../x")], "symlink to 'cfg/../../x'"),
        ([("120000", "hook", b"./.git/hooks/pre-commit")], "outside the repository"),
        ([("100644", "a\\b.txt", b"x")], "not a valid file name"),
        ([("100644", "new\nline", b"x")], "not a valid file name"),
        ([("160000", "sub", "1" * 40)], "sub is a submodule"),
        ([("120000", "b", b"."), ("120000", "a", b"b/..")], "a is a symlink to 'b/..', which leads outside"),
        ([("120000", "b", b"cfg/.."), ("120000", "a", b"b/b/b/../..")], "a is a symlink to 'b/b/b/../..'"),
        ([("120000", "x", b"y"), ("120000", "y", b"x")], "(or loops)"),
        ([("120000", "b", b"."), ("120000", "g", b"b/.GIT")], "g is a symlink to 'b/.GIT'"),
        ([("100644", "c1\x85.txt", b"x")], "not a valid file name: control characters"),
        ([("040000", "cfg2", "\t")], "not a valid file name"),
        ([("040000", ".git", "config")], "hasDotgit"),  # git's own fsck
        ([("040000", "cfg2", "..")], "hasDotdot"),  # git's own fsck
    ],
)
def test_push_smuggling_paths_or_links_refused(setup, entries, says):
    store, harness, env, tmp = setup
    work = tmp / "work"
    run(env, "clone", "-q", f"{harness.url}/models/{RID}.git", str(work))
    before = store.resolve("model", RID, "main")
    result = _crafted_push(env, work, entries)
    assert result.returncode != 0 and says in result.stderr, result.stderr
    assert store.resolve("model", RID, "main") == before and harness.pushes == []


def test_push_of_links_inside_the_repo_accepted(setup):
    store, harness, env, tmp = setup
    work = tmp / "work"
    run(env, "clone", "-q", f"{harness.url}/models/{RID}.git", str(work))
    result = _crafted_push(env, work, [("120000", "latest.json", b"cfg/config.json"), ("100644", "ünï cødé.txt", b"u"),
                                       ("120000", "here", b"cfg/.."), ("120000", "via", b"here/cfg/config.json")])
    assert result.returncode == 0, result.stderr
    assert store.read_blob("model", RID, "main", "latest.json") == b"cfg/config.json"
    assert store.read_blob("model", RID, "main", "ünï cødé.txt") == b"u"


def test_push_over_the_pack_limit_refused(setup):
    store, harness, env, tmp = setup
    harness.max_pack_size = 200_000
    work = tmp / "work"
    run(env, "clone", "-q", f"{harness.url}/models/{RID}.git", str(work))
    before = store.resolve("model", RID, "main")
    (work / "blob.bin").write_bytes(os.urandom(400_000))  # random: the pack cannot compress it
    run(env, "add", "blob.bin", cwd=work)
    run(env, "commit", "-q", "-m", "big pack", cwd=work)
    result = run(env, "push", "origin", "main", cwd=work, check=False)
    assert result.returncode != 0 and "maximum allowed size" in result.stderr, result.stderr
    assert store.resolve("model", RID, "main") == before and harness.pushes == []


def test_push_refused_without_permission(setup):
    store, harness, env, tmp = setup
    work = tmp / "work"
    run(env, "clone", "-q", f"{harness.url}/models/{RID}.git", str(work))
    harness.allow_push = False
    before = store.resolve("model", RID, "main")
    (work / "x.txt").write_text("x")
    run(env, "add", "x.txt", cwd=work)
    run(env, "commit", "-q", "-m", "x", cwd=work)
    result = run(env, "push", "origin", "main", cwd=work, check=False)
    assert result.returncode != 0 and "403" in result.stderr
    assert store.resolve("model", RID, "main") == before


def test_missing_repo_is_404(setup):
    _, harness, env, tmp = setup
    result = run(env, "clone", f"{harness.url}/models/alice/none.git", str(tmp / "none"), check=False)
    assert result.returncode != 0 and "not found" in result.stderr.lower()


def test_returns_only_after_the_request_body_is_consumed(tmp_path: Path):
    """git writes the response headers before reading the request; returning then would let the
    server's disconnect listener steal the body from the request channel (a hang seen live)."""
    import asyncio

    store = RepoStore(tmp_path / "repos", LfsStore(tmp_path / "lfs"))
    store.create("model", RID, author="alice")
    consumed: list[bool] = []

    async def slow_body():
        await asyncio.sleep(0.3)
        yield b"0000"  # a flush packet: "I want nothing"
        consumed.append(True)

    async def main():
        status, headers, stream = await githttp.run_http_backend(
            tmp_path / "repos", githttp.git_path_info("model", RID, "git-upload-pack"), "POST", "",
            {"Content-Type": "application/x-git-upload-pack-request"}, slow_body(),
            remote_user="alice", allow_push=False,
        )
        assert consumed == [True]
        body = b"".join([chunk async for chunk in stream])
        return status, headers, body

    status, headers, _ = asyncio.run(main())
    assert status == 200 and headers["Content-Type"] == "application/x-git-upload-pack-result"



def test_backend_exiting_without_reading_the_body(tmp_path: Path):
    """A missing repo: git answers 404 and exits at once, whether or not a body is still coming,
    on the default event loop and on uvloop."""
    import asyncio

    (tmp_path / "repos").mkdir()

    async def body():
        for _ in range(16):
            yield b"0" * 65536
            await asyncio.sleep(0)

    async def one(method: str, rest: str, payload):
        status, _, stream = await githttp.run_http_backend(
            tmp_path / "repos", githttp.git_path_info("model", "alice/none", rest), method, "",
            {"Content-Type": "application/x-git-upload-pack-request"}, payload,
            remote_user="alice", allow_push=False,
        )
        async for _ in stream:
            pass
        return status

    async def main():
        results = []
        for _ in range(5):
            results.append(await one("GET", "info/refs", b""))
            results.append(await one("POST", "git-upload-pack", body()))
            results.append(await one("POST", "git-upload-pack", b"x" * 300_000))
        return results

    assert asyncio.run(main()) == [404] * 15
    try:  # uvicorn uses uvloop when installed: there a write to the exited backend raises RuntimeError
        import uvloop
    except ImportError:
        return
    assert uvloop.run(main()) == [404] * 15


def test_concurrent_pushes_and_api_commits_lose_nothing(setup):
    """API commits (without a parent) and git pushes racing on main: a push that lost the race is
    refused as non-fast-forward (never overwrites), and after a pull it lands; every file of
    both writers is in the final tree. Checked by the end state, not by timing."""
    store, harness, env, tmp = setup
    work = tmp / "work"
    run(env, "clone", "-q", f"{harness.url}/models/{RID}.git", str(work))
    start = threading.Event()

    def api_commits():
        start.wait()
        for i in range(12):
            store.commit("model", RID, "main", [AddFile(f"api/{i}.txt", b"%d" % i)], message=f"api {i}", author="a")

    writer = threading.Thread(target=api_commits)
    writer.start()
    start.set()
    for i in range(3):
        (work / f"git{i}.txt").write_text(str(i))
        run(env, "add", f"git{i}.txt", cwd=work)
        run(env, "commit", "-q", "-m", f"git {i}", cwd=work)
        for _ in range(30):  # bounded: a refusal for any other reason fails the test, not hangs it
            pushed = run(env, "push", "origin", "main", cwd=work, check=False)
            if not pushed.returncode:
                break
            # lost the race (not a fast-forward) or met the API commit holding the ref lock
            assert any(why in pushed.stderr for why in ("fetch first", "non-fast-forward", "lock")), pushed.stderr
            run(env, "pull", "-q", "--rebase", "origin", "main", cwd=work)
        else:
            raise AssertionError("push never landed")
    writer.join()
    files = set(git_ls(store))
    assert {f"api/{i}.txt" for i in range(12)} <= files and {f"git{i}.txt" for i in range(3)} <= files
    assert int(subprocess.run(["git", "--git-dir", str(store.repo_path("model", RID)), "rev-list", "--count",
                               "main"], capture_output=True, text=True, check=True).stdout) == 2 + 12 + 3


def git_ls(store: RepoStore) -> list[str]:
    return [e.path for e in store.list_tree("model", RID, "main", recursive=True) if e.type == "file"]


def _nested_tree(env, work: Path, depth: int) -> str:
    """A tree holding d/d/.../f.txt, `depth` components in all, built with plumbing."""
    blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], input=b"x", cwd=work, env=env,
                          capture_output=True, check=True).stdout.decode().strip()
    entry = f"100644 blob {blob}\tf.txt"
    for _ in range(depth - 1):
        sha = subprocess.run(["git", "mktree"], input=(entry + "\n").encode(), cwd=work, env=env,
                             capture_output=True, check=True).stdout.decode().strip()
        entry = f"040000 tree {sha}\td"
    return subprocess.run(["git", "mktree"], input=(entry + "\n").encode(), cwd=work, env=env,
                          capture_output=True, check=True).stdout.decode().strip()


def test_push_bounds_on_depth_and_ref_names(setup):
    """The commit API's bounds hold for pushes: 64 components per path, 250 bytes per ref name."""
    store, harness, env, tmp = setup
    work = tmp / "work"
    run(env, "clone", "-q", f"{harness.url}/models/{RID}.git", str(work))
    before = store.resolve("model", RID, "main")
    deep = run(env, "commit-tree", _nested_tree(env, work, 65), "-p", "HEAD", "-m", "deep", cwd=work).stdout.strip()
    result = run(env, "push", "origin", f"{deep}:refs/heads/main", cwd=work, check=False)
    assert result.returncode != 0 and "at most 64 components" in result.stderr, result.stderr
    assert store.resolve("model", RID, "main") == before
    ok = run(env, "commit-tree", _nested_tree(env, work, 64), "-p", "HEAD", "-m", "ok", cwd=work).stdout.strip()
    run(env, "push", "-q", "origin", f"{ok}:refs/heads/main", cwd=work)
    assert store.resolve("model", RID, "main") == ok
    result = run(env, "push", "origin", f"{ok}:refs/heads/{'b' * 251}", cwd=work, check=False)
    assert result.returncode != 0 and "longer than 250 bytes" in result.stderr, result.stderr
    run(env, "push", "-q", "origin", f"{ok}:refs/heads/{'b' * 250}", cwd=work)
    assert store.resolve("model", RID, "b" * 250) == ok
