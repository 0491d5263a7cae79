"""Git smart HTTP: run `git http-backend` as a CGI program, streaming both ways.

The HTTP layer authenticates the caller and decides `allow_push`; this module maps the request to
CGI variables, feeds the request body to the backend while reading its response, and parses the
CGI header block. Pushes go through the pre-receive policy in `hooks/pre_receive.py` (installed
once per repo root as `<repo_root>/.hooks/pre-receive` and enabled with `core.hooksPath` through
the environment), and `on_push(repo_type, repo_id)` runs after every successful push.

The hook asks this process whether the LFS objects that pushed pointers name exist: for each push
a Unix socket in a private temporary folder (path in HAVEN_LFS_CHECK) answers through the same
`LfsStore` the hub serves from, so its blob store (local files, another directory, S3) and its
object sources (files uploaded through Xet) count, with the settings and credentials of this
process only. Protocol: the hook sends "<oid> <size>\n" lines and closes its side; the answer
is one "<oid> <size>\n" line per object not stored with that size, then "ok\n".
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pygit2

from .errors import LfsObjectMissing
from .lfs import LfsStore
from .paths import REPO_TYPES, check_repo_id, check_repo_type

log = logging.getLogger("haven.server.storage.githttp")

HOOK_SCRIPT = Path(__file__).parent / "hooks" / "pre_receive.py"
MAX_GIT_BLOB = 10 * 1024 * 1024
MAX_GIT_PACK = 2 * 1024**3  # one push; git stops reading past it (large files belong in LFS)
_READ = 256 * 1024
_QUEUE = 64  # chunks of stdout buffered ahead of the client (at most 16 MB)
_SKIP_HEADERS = {"authorization", "cookie", "proxy-authorization", "content-type", "content-length"}
_CHECK_THREADS = 8  # objects looked up at once (an S3 HEAD each)
_SOCKET_PATH_MAX = 100  # AF_UNIX paths are limited to 107 bytes
_installed: set[str] = set()


def git_path_info(repo_type: str, repo_id: str, rest: str) -> str:
    """The PATH_INFO for `rest` ("info/refs", "git-upload-pack", ...) of a repo, relative to the
    repo root given to `run_http_backend`: "/models/alice/bert.git/info/refs"."""
    folder = check_repo_type(repo_type)
    return f"/{folder}/{check_repo_id(repo_id)}.git/{rest.lstrip('/')}"


def parse_path_info(path_info: str) -> tuple[str, str] | None:
    """(repo_type, repo_id) named by a PATH_INFO built by `git_path_info`, or None."""
    parts = path_info.lstrip("/").split("/")
    folders = {v: k for k, v in REPO_TYPES.items()}
    if len(parts) < 3 or parts[0] not in folders or not parts[2].endswith(".git"):
        return None
    return folders[parts[0]], f"{parts[1]}/{parts[2][:-4]}"


def _ref_snapshot(repo_root: Path, path_info: str) -> dict[str, str] | None:
    """name -> target of every ref of the repo named by `path_info` (None if it cannot be read)."""
    target = parse_path_info(path_info)
    if target is None:
        return None
    folder = REPO_TYPES[target[0]]
    try:
        repo = pygit2.Repository(str(Path(repo_root) / folder / f"{target[1]}.git"))
        return {ref.name: str(ref.target) for ref in repo.references.iterator()}
    except (pygit2.GitError, KeyError, ValueError):
        return None


def install_hooks(repo_root: Path) -> Path:
    """Write `<repo_root>/.hooks/pre-receive` (a wrapper running the packaged policy script with
    this interpreter) if missing or outdated; returns the hooks folder."""
    hooks = Path(repo_root) / ".hooks"
    wrapper = f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(HOOK_SCRIPT))} "$@"\n'
    target = hooks / "pre-receive"
    if str(hooks) in _installed and target.exists():
        return hooks
    if not target.exists() or target.read_text() != wrapper:
        hooks.mkdir(parents=True, exist_ok=True)
        tmp = hooks / f".pre-receive.{os.getpid()}"
        tmp.write_text(wrapper)
        tmp.chmod(0o755)
        os.replace(tmp, target)
    _installed.add(str(hooks))
    return hooks


def missing_objects(lfs: LfsStore, wanted: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """The (oid, size) pairs of `wanted` that `lfs` (its blob store or an object source) does not
    hold with that size."""

    def absent(item: tuple[str, int]) -> bool:
        oid, size = item
        try:
            return lfs.size(oid) != size
        except LfsObjectMissing:
            return True

    if len(wanted) < 2:
        return [item for item in wanted if absent(item)]
    with ThreadPoolExecutor(min(_CHECK_THREADS, len(wanted))) as pool:
        return [item for item, gone in zip(wanted, pool.map(absent, wanted)) if gone]


class LfsCheck:
    """The Unix socket the pre-receive hook of one push asks about LFS objects (see the module's
    docstring); `await LfsCheck.start(lfs)`, hand `.path` to the hook, `close()` after the push."""

    def __init__(self, lfs: LfsStore):
        self.lfs = lfs
        base = tempfile.gettempdir()
        if len(base) > _SOCKET_PATH_MAX - 30:  # a long TMPDIR would not fit a socket path
            base = "/tmp"
        self.folder = tempfile.mkdtemp(prefix="haven-push-", dir=base)  # mode 0700: this user only
        self.path = os.path.join(self.folder, "lfs")
        self.server: asyncio.AbstractServer | None = None

    @classmethod
    async def start(cls, lfs: LfsStore) -> LfsCheck:
        check = cls(lfs)
        try:
            check.server = await asyncio.start_unix_server(check._answer, path=check.path)
        except BaseException:
            check.close()
            raise
        return check

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            wanted = []
            for line in (await reader.read()).decode("ascii").splitlines():
                oid, size = line.split()
                wanted.append((oid, int(size)))
            missing = await asyncio.to_thread(missing_objects, self.lfs, wanted)
            writer.write("".join(f"{oid} {size}\n" for oid, size in missing).encode() + b"ok\n")
            await writer.drain()
        except Exception:  # the hook gets no "ok" and refuses the push
            log.exception("checking the LFS objects of a push failed")
        finally:
            writer.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def backend_env(
    repo_root: Path, path_info: str, method: str, query: str, headers: dict, *,
    remote_user: str, allow_push: bool, remote_addr: str = "127.0.0.1", max_blob_size: int = MAX_GIT_BLOB,
    lfs_check: str | None = None, max_pack_size: int = MAX_GIT_PACK,
) -> dict[str, str]:
    """The CGI environment for one request. `lfs_check` is the socket of an `LfsCheck`, through
    which the push policy checks that pushed LFS pointers have objects (unset: not checked)."""
    hooks = install_hooks(repo_root)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(repo_root),
        "GIT_PROJECT_ROOT": str(repo_root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_METHOD": method.upper(),
        "PATH_INFO": path_info,
        "QUERY_STRING": query or "",
        "REMOTE_USER": remote_user or "",
        "REMOTE_ADDR": remote_addr,
        "HAVEN_MAX_GIT_BLOB": str(max_blob_size),
    }
    if lfs_check is not None:
        env["HAVEN_LFS_CHECK"] = lfs_check
    config = {
        "core.hooksPath": str(hooks),
        "http.receivepack": "true" if allow_push else "false",
        "http.uploadpack": "true",
        "uploadpack.allowFilter": "true",
        "receive.fsckObjects": "true",  # refuses .git / .. / malformed trees in pushes
        "receive.maxInputSize": str(max_pack_size),
    }
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for i, (key, value) in enumerate(config.items()):
        env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
    lowered = {k.lower(): v for k, v in headers.items()}
    if "content-type" in lowered:
        env["CONTENT_TYPE"] = lowered["content-type"]
    if "content-length" in lowered:
        env["CONTENT_LENGTH"] = lowered["content-length"]
    for key, value in lowered.items():
        if key not in _SKIP_HEADERS:
            env["HTTP_" + key.upper().replace("-", "_")] = value
    return env


async def _feed(proc: asyncio.subprocess.Process, body: AsyncIterable[bytes] | bytes) -> None:
    """Write the request body to the backend's stdin, then close it. The backend may exit
    without reading (a GET, a refusal): writing then fails in several ways, all ignored."""
    stdin = proc.stdin
    gone = (BrokenPipeError, ConnectionResetError, RuntimeError)
    try:
        if isinstance(body, bytes | bytearray | memoryview):
            if body:
                stdin.write(body)
                await stdin.drain()
        else:
            async for chunk in body:
                if chunk:
                    stdin.write(chunk)
                    await stdin.drain()
    except gone:
        pass  # the backend stopped reading; its response says why
    finally:
        try:
            stdin.close()
        except gone:
            pass


def _parse_cgi_headers(block: bytes) -> tuple[int, dict[str, str]]:
    status, out = 200, {}
    for line in block.decode("latin-1").splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not key:
            continue
        if key.lower() == "status":
            status = int(value.split()[0])
        else:
            out[key] = value
    return status, out


async def _pump(stream: asyncio.StreamReader, queue: asyncio.Queue) -> None:
    """Copy the backend's stdout into a bounded queue; None marks the end."""
    try:
        while chunk := await stream.read(_READ):
            await queue.put(chunk)
    except OSError:
        pass
    await queue.put(None)


async def run_http_backend(
    repo_root: Path,
    path_info: str,
    method: str,
    query: str,
    headers: dict,
    body: AsyncIterable[bytes] | bytes,
    *,
    remote_user: str,
    allow_push: bool,
    on_push: Callable[[str, str], Any] | None = None,
    remote_addr: str = "127.0.0.1",
    max_blob_size: int = MAX_GIT_BLOB,
    lfs: LfsStore | None = None,
    max_pack_size: int = MAX_GIT_PACK,
) -> tuple[int, dict[str, str], AsyncIterator[bytes]]:
    """Run one smart-HTTP request through `git http-backend` (await it).

    `path_info` is relative to `repo_root` (see `git_path_info`); `headers` are the request's
    (Authorization and cookies are not passed on). Returns (status, response headers, body
    iterator) once the whole request body has been handed to git: a response streamed while the
    request is still being read would race the server's disconnect listener for the request
    channel. Iterate the body to the end (a StreamingResponse does) so the process is reaped and
    `on_push(repo_type, repo_id)` (sync or async) runs after a push that moved a ref.
    Pushed LFS pointers must name objects `lfs` has (default: the local store in
    `<repo_root>/../lfs`, i.e. DATA/lfs); give the hub's store when it has another blob store or
    object sources.
    """
    is_push = method.upper() == "POST" and path_info.rstrip("/").endswith("/git-receive-pack")
    check = None
    if is_push:
        check = await LfsCheck.start(lfs if lfs is not None else LfsStore(Path(repo_root).parent / "lfs"))
    try:
        env = backend_env(
            repo_root, path_info, method, query, headers, remote_user=remote_user, allow_push=allow_push,
            remote_addr=remote_addr, max_blob_size=max_blob_size,
            lfs_check=check.path if check is not None else None, max_pack_size=max_pack_size,
        )
        refs_before = _ref_snapshot(repo_root, path_info) if is_push and on_push is not None else None
        proc = await asyncio.create_subprocess_exec(
            "git", "http-backend", env=env, cwd=str(repo_root),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
    except BaseException:
        if check is not None:
            check.close()
        raise
    queue: asyncio.Queue = asyncio.Queue(maxsize=_QUEUE)
    pump = asyncio.create_task(_pump(proc.stdout, queue))
    errors = asyncio.create_task(proc.stderr.read())
    feeder = asyncio.create_task(_feed(proc, body))

    async def cleanup() -> None:
        for task in (feeder, pump, errors):
            task.cancel()
        if proc.returncode is None:
            try:
                proc.kill()
            except (ProcessLookupError, RuntimeError):
                pass  # it exited meanwhile
            await proc.wait()
        if check is not None:
            check.close()

    try:
        buffer, head, eof = b"", b"", False
        while True:
            cut = min((i for i in (buffer.find(b"\r\n\r\n"), buffer.find(b"\n\n")) if i >= 0), default=-1)
            if cut >= 0:
                sep = 4 if buffer[cut : cut + 4] == b"\r\n\r\n" else 2
                head, buffer = buffer[:cut], buffer[cut + sep :]
                break
            chunk = await queue.get()
            if chunk is None:
                head, buffer, eof = buffer, b"", True
                break
            buffer += chunk
        await feeder  # the request body is fully consumed (or git stopped reading it)
    except BaseException:
        await cleanup()
        raise
    status, out_headers = _parse_cgi_headers(head)

    async def stream() -> AsyncIterator[bytes]:
        ok = False
        try:
            if buffer:
                yield buffer
            while not eof and (chunk := await queue.get()) is not None:
                yield chunk
            rc = await proc.wait()
            stderr = await errors
            if rc != 0 or stderr.strip():
                log.info("git http-backend %s %s: rc=%s %s", method, path_info, rc, stderr.decode(errors="replace"))
            ok = rc == 0 and status < 400
        finally:
            await cleanup()
        # a refused push (policy hook, stale ref) or git's auth probe also exits 0: compare refs
        if ok and is_push and on_push is not None and _ref_snapshot(repo_root, path_info) != refs_before:
            target = parse_path_info(path_info)
            if target is not None:
                result = on_push(*target)
                if inspect.isawaitable(result):
                    await result

    return status, out_headers, stream()
