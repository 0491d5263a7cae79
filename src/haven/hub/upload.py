"""Commits: `create_commit` with add/delete/copy operations, `upload_file`, `upload_folder`,
and `commit_scope`, as functions of a `HubSession` (`push_to_hub` is in `mixin`).

A commit goes: preupload (the hub says, per file, "regular" or "lfs" and whether it is unchanged)
-> LFS batch for the large files -> PUT each to its self-authorising URL (no auth header) ->
verify -> one NDJSON commit (`header`, `file`, `lfsFile`, `deletedFile`, `deletedFolder` lines)
with an optional `parentCommit` so a concurrent push is refused instead of overwritten.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from ..errors import EntryNotFoundError, HubError, RevisionNotFoundError
from . import http, repos
from .download import filter_paths, progress_bar
from .http import HubSession
from .types import CommitInfo, ModelCardError, RepoFile

PREUPLOAD_CHUNK = 256
LFS_BATCH_CHUNK = 256
_SKIP_DIRS = {".git", ".cache"}


@dataclass
class CommitOperationAdd:
    """Add or replace `path_in_repo` with a local file path, bytes or a binary file object."""

    path_in_repo: str
    path_or_fileobj: str | os.PathLike | bytes | BinaryIO
    upload_mode: str | None = field(default=None, init=False)
    should_ignore: bool = field(default=False, init=False)
    remote_oid: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.path_in_repo = _norm_repo_path(self.path_in_repo)
        src = self.path_or_fileobj
        self._data: bytes | None = None
        self._start = 0  # where a borrowed file object's content begins
        if isinstance(src, bytes):
            self._data = src
        elif isinstance(src, str | os.PathLike):
            if not os.path.isfile(src):
                raise FileNotFoundError(f"{os.fspath(src)} is not a file; pass a file path, bytes or a file object")
            self._size = os.path.getsize(src)
        elif _seekable(src):  # read in chunks when needed, never held whole in memory (files of many GB)
            self._start = src.tell()
            self._size = src.seek(0, os.SEEK_END) - self._start
            src.seek(self._start)
        else:  # a pipe or socket can be read once only
            self._data = src.read()
        sha256, sha1 = hashlib.sha256(), hashlib.sha1(f"blob {self.size}\0".encode())
        with self.open() as f:
            self.sample = f.read(512)
        with self.open() as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                sha256.update(chunk)
                sha1.update(chunk)
        self.sha256, self.git_sha1 = sha256.hexdigest(), sha1.hexdigest()

    @property
    def size(self) -> int:
        return len(self._data) if self._data is not None else self._size

    def open(self) -> Any:
        """A binary stream of the content from its start, for a `with` block (a borrowed file object
        is rewound, and left open for its owner)."""
        if self._data is not None:
            return io.BytesIO(self._data)
        if isinstance(self.path_or_fileobj, str | os.PathLike):
            return open(self.path_or_fileobj, "rb")
        self.path_or_fileobj.seek(self._start)
        return contextlib.nullcontext(self.path_or_fileobj)

    def b64content(self) -> str:
        with self.open() as f:
            return base64.b64encode(f.read()).decode()

    @property
    def local_oid(self) -> str:
        return self.sha256 if self.upload_mode == "lfs" else self.git_sha1


@dataclass
class CommitOperationDelete:
    """Delete a file, or a folder when the path ends with `/` (or `is_folder=True`)."""

    path_in_repo: str
    is_folder: bool | None = None

    def __post_init__(self) -> None:
        if self.is_folder is None:
            self.is_folder = self.path_in_repo.endswith("/")
        self.path_in_repo = _norm_repo_path(self.path_in_repo)


@dataclass
class CommitOperationCopy:
    """Copy `src_path_in_repo` (at `src_revision`, default the commit's revision) to `path_in_repo`."""

    src_path_in_repo: str
    path_in_repo: str
    src_revision: str | None = None

    def __post_init__(self) -> None:
        self.src_path_in_repo = _norm_repo_path(self.src_path_in_repo)
        self.path_in_repo = _norm_repo_path(self.path_in_repo)


CommitOperation = CommitOperationAdd | CommitOperationDelete | CommitOperationCopy


def _seekable(obj: Any) -> bool:
    try:
        return bool(obj.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _norm_repo_path(path: str) -> str:
    path = str(path).replace("\\", "/").strip("/")
    if path.startswith("./"):
        path = path[2:]
    if not path or any(part in ("", ".", "..") for part in path.split("/")):
        raise ValueError(f"invalid path in repository: {path!r} (use a relative path like 'dir/file.bin')")
    return path


# -- create_commit ----------------------------------------------------------------------------------


def create_commit(
    session: HubSession,
    repo_id: str,
    operations: Iterable[CommitOperation],
    *,
    commit_message: str,
    commit_description: str = "",
    revision: str | None = None,
    parent_commit: str | None = None,
    repo_type: str | None = None,
) -> CommitInfo:
    """Apply `operations` to `revision` (default main) in one commit. Unchanged files are skipped."""
    if not commit_message:
        raise ValueError("commit_message must not be empty")
    repo_type = http.check_repo_type(repo_type)
    http.check_repo_id(repo_id)
    revision = revision or "main"
    operations = list(operations)
    adds = [op for op in operations if isinstance(op, CommitOperationAdd)]
    seen: set[str] = set()
    dupes = {op.path_in_repo for op in adds if op.path_in_repo in seen or seen.add(op.path_in_repo)}
    if dupes:
        raise ValueError(f"the same path is added twice in one commit: {sorted(dupes)}")
    api, _ = repos.repo_api(session, repo_id, repo_type)

    readme = next((op for op in adds if op.path_in_repo == "README.md"), None)
    if readme is not None:
        _validate_readme(session, readme, repo_type)

    _preupload(session, api, repo_id, revision, adds)
    adds_kept = [op for op in adds if not op.should_ignore and not (op.remote_oid and op.remote_oid == op.local_oid)]
    kept_ids = {id(op) for op in adds_kept}
    others = [op for op in operations if not isinstance(op, CommitOperationAdd)]
    if not adds_kept and not others:
        head = repos.repo_info(session, repo_id, revision=revision, repo_type=repo_type).sha
        url = f"{http.repo_web_prefix(session.endpoint, repo_type, repo_id)}/commit/{head}"
        return CommitInfo(url, head, commit_message, skipped=True)

    _upload_lfs(session, repo_id, repo_type, revision, [op for op in adds_kept if op.upload_mode == "lfs"])
    copies = _fetch_copy_sources(session, repo_id, repo_type, revision, [op for op in others if isinstance(op, CommitOperationCopy)])

    header: dict[str, Any] = {"summary": commit_message, "description": commit_description or ""}
    if parent_commit:
        header["parentCommit"] = parent_commit
    lines = [{"key": "header", "value": header}]
    for op in operations:
        if isinstance(op, CommitOperationAdd):
            if id(op) not in kept_ids:
                continue
            if op.upload_mode == "lfs":
                lines.append({"key": "lfsFile", "value": {"path": op.path_in_repo, "algo": "sha256", "oid": op.sha256, "size": op.size}})
            else:
                lines.append({"key": "file", "value": {"path": op.path_in_repo, "content": op.b64content(), "encoding": "base64"}})
        elif isinstance(op, CommitOperationDelete):
            lines.append({"key": "deletedFolder" if op.is_folder else "deletedFile", "value": {"path": op.path_in_repo}})
        else:
            lines.append(copies[id(op)])
    body = "\n".join(json.dumps(line) for line in lines).encode()
    response = session.request(
        "POST", f"{api}/commit/{http.quote_rev(revision)}", content=body,
        headers={"content-type": "application/x-ndjson"}, repo_id=repo_id, revision=revision, action="commit",
    )
    data = response.json()
    oid = data.get("commitOid")
    url = data.get("commitUrl") or f"{http.repo_web_prefix(session.endpoint, repo_type, repo_id)}/commit/{oid}"
    return CommitInfo(url, oid, commit_message)


def _validate_readme(session: HubSession, readme: CommitOperationAdd, repo_type: str) -> None:
    with readme.open() as f:
        content = f.read().decode("utf-8", errors="replace")
    if not content.startswith("---"):
        return
    try:
        session.request("POST", "/api/validate-yaml", json={"content": content, "repoType": repo_type}, action="validate-yaml")
    except HubError as err:
        if err.status == 400:
            raise ModelCardError(f"the hub rejected README.md's metadata: {err.server_message or err}") from None
        if err.status not in (404, 405):  # an endpoint without validation: nothing to check against
            raise


def _preupload(session: HubSession, api: str, repo_id: str, revision: str, adds: list[CommitOperationAdd]) -> None:
    for start in range(0, len(adds), PREUPLOAD_CHUNK):
        chunk = adds[start : start + PREUPLOAD_CHUNK]
        payload = {
            "files": [
                {"path": op.path_in_repo, "sample": base64.b64encode(op.sample).decode(), "size": op.size} for op in chunk
            ]
        }
        try:
            response = session.request(
                "POST", f"{api}/preupload/{http.quote_rev(revision)}", json=payload, repo_id=repo_id,
                revision=revision, action="preupload",
            )
        except HubError as err:
            if isinstance(err, RevisionNotFoundError):
                raise RevisionNotFoundError(
                    f"branch {revision!r} does not exist in {repo_id!r}: create it first (`HubClient()."
                    f"create_branch({repo_id!r}, {revision!r})`; `haven upload --revision` creates it for you)",
                    status=err.status,
                ) from None
            raise
        modes = {f["path"]: f for f in response.json().get("files", [])}
        for op in chunk:
            info = modes.get(op.path_in_repo, {})
            op.upload_mode = "regular" if op.size == 0 else info.get("uploadMode", "regular")
            op.should_ignore = bool(info.get("shouldIgnore", False))
            op.remote_oid = info.get("oid")


def _upload_lfs(session: HubSession, repo_id: str, repo_type: str, revision: str, ops: list[CommitOperationAdd]) -> None:
    unique = {op.sha256: op for op in ops}
    batch_url = f"{http.repo_web_prefix(session.endpoint, repo_type, repo_id)}.git/info/lfs/objects/batch"
    items = list(unique.values())
    for start in range(0, len(items), LFS_BATCH_CHUNK):
        chunk = items[start : start + LFS_BATCH_CHUNK]
        payload = {
            "operation": "upload",
            "transfers": ["basic"],
            "objects": [{"oid": op.sha256, "size": op.size} for op in chunk],
            "hash_algo": "sha256",
            "ref": {"name": revision},
        }
        lfs_headers = {"accept": "application/vnd.git-lfs+json", "content-type": "application/vnd.git-lfs+json"}
        response = session.request(
            "POST", batch_url, content=json.dumps(payload).encode(), headers=lfs_headers, repo_id=repo_id,
            action="LFS upload",
        )
        for obj in response.json().get("objects", []):
            op = unique.get(obj.get("oid"))
            if op is None:
                continue
            if obj.get("error"):
                err = obj["error"]
                raise HubError(f"the hub refused {op.path_in_repo!r}: {err.get('message')} (LFS error {err.get('code')})")
            actions = obj.get("actions") or {}
            if "upload" in actions:
                _put(session, actions["upload"]["href"], op)
            if "verify" in actions:
                session.request(
                    "POST", actions["verify"]["href"], json={"oid": op.sha256, "size": op.size},
                    headers=lfs_headers, repo_id=repo_id, action="LFS verify",
                )


def _put(session: HubSession, href: str, op: CommitOperationAdd) -> None:
    """PUT the raw bytes to a signed URL. No auth header: the URL authorises itself."""
    bar = progress_bar(op.size, op.path_in_repo)

    def chunks() -> Iterator[bytes]:
        with op.open() as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                session.count_bytes("bytes_uploaded", len(chunk))
                if bar is not None:
                    bar.update(len(chunk))
                yield chunk

    try:
        response = session.http.put(href, content=chunks(), headers={"content-length": str(op.size)})
    finally:
        if bar is not None:
            bar.close()
    if response.status_code >= 400:
        http.raise_for_status(response, filename=op.path_in_repo, action=f"upload of {op.path_in_repo!r}")


def _fetch_copy_sources(
    session: HubSession, repo_id: str, repo_type: str, revision: str, copies: list[CommitOperationCopy]
) -> dict[int, dict[str, Any]]:
    """NDJSON lines for copies: LFS files by oid (no transfer), regular files by content."""
    lines: dict[int, dict[str, Any]] = {}
    for op in copies:
        src_rev = op.src_revision or revision
        infos = repos.get_paths_info(session, repo_id, [op.src_path_in_repo], revision=src_rev, repo_type=repo_type)
        src = next((i for i in infos if isinstance(i, RepoFile) and i.path == op.src_path_in_repo), None)
        if src is None:
            raise EntryNotFoundError(
                f"cannot copy {op.src_path_in_repo!r}: it is not a file in {repo_id!r} at {src_rev!r}"
            )
        if src.lfs:
            value = {"path": op.path_in_repo, "algo": "sha256", "oid": src.sha256, "size": src.size}
            lines[id(op)] = {"key": "lfsFile", "value": value}
        else:
            url = http.resolve_url(session.endpoint, repo_type, repo_id, src_rev, op.src_path_in_repo)
            content = session.request("GET", url, repo_id=repo_id, revision=src_rev, filename=op.src_path_in_repo,
                                     follow_redirects=True).content
            value = {"path": op.path_in_repo, "content": base64.b64encode(content).decode(), "encoding": "base64"}
            lines[id(op)] = {"key": "file", "value": value}
    return lines


# -- upload_file / upload_folder -----------------------------------------------------------------------


def upload_file(
    session: HubSession,
    *,
    path_or_fileobj: str | os.PathLike | bytes | BinaryIO,
    path_in_repo: str,
    repo_id: str,
    commit_message: str | None = None,
    **kwargs: Any,
) -> CommitInfo:
    op = CommitOperationAdd(path_in_repo, path_or_fileobj)
    return create_commit(session, repo_id, [op], commit_message=commit_message or f"Upload {op.path_in_repo}", **kwargs)


def folder_operations(
    folder_path: str | os.PathLike,
    path_in_repo: str = "",
    allow_patterns: str | list[str] | None = None,
    ignore_patterns: str | list[str] | None = None,
) -> list[CommitOperationAdd]:
    """One add per file under `folder_path` (skipping .git/ and .cache/), filtered by the patterns.

    Symbolic links are followed, as `huggingface_hub` does (so a cache snapshot, all links into
    blobs/, uploads its contents): a linked file uploads its content, a linked folder its files
    (each real folder once, so a link loop ends). A broken link is an error, not a silent skip.
    """
    root = os.fspath(folder_path)
    if not os.path.isdir(root):
        raise NotADirectoryError(f"{root} is not a directory; pass the folder to upload")
    found, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a link back to a folder already walked
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            found.append(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
    kept = filter_paths(found, allow_patterns, ignore_patterns)
    broken = [rel for rel in kept if not os.path.isfile(os.path.join(root, *rel.split("/")))]
    if broken:
        raise FileNotFoundError(
            f"{broken[0]} in {root} is a broken symbolic link; remove it or exclude it with ignore_patterns"
        )
    prefix = path_in_repo.strip("/")
    return [
        CommitOperationAdd(f"{prefix}/{rel}" if prefix else rel, os.path.join(root, *rel.split("/")))
        for rel in kept
    ]


def upload_folder(
    session: HubSession,
    *,
    repo_id: str,
    folder_path: str | os.PathLike,
    path_in_repo: str = "",
    allow_patterns: str | list[str] | None = None,
    ignore_patterns: str | list[str] | None = None,
    delete_patterns: str | list[str] | None = None,
    commit_message: str | None = None,
    commit_description: str = "",
    revision: str | None = None,
    parent_commit: str | None = None,
    repo_type: str | None = None,
) -> CommitInfo:
    """Commit every file of `folder_path` (under `path_in_repo`) in one commit.

    `delete_patterns` removes remote files under `path_in_repo` that match and are not re-uploaded.
    """
    ops: list[CommitOperation] = list(folder_operations(folder_path, path_in_repo, allow_patterns, ignore_patterns))
    if delete_patterns is not None:
        prefix = path_in_repo.strip("/")
        added = {op.path_in_repo for op in ops}
        try:
            remote = repos.list_repo_files(session, repo_id, revision=revision, repo_type=repo_type)
        except (EntryNotFoundError, RevisionNotFoundError):
            remote = []
        under = [p for p in remote if not prefix or p.startswith(prefix + "/")]
        rel = {p[len(prefix) + 1 :] if prefix else p: p for p in under}
        for name in filter_paths(rel, delete_patterns):
            if rel[name] not in added and rel[name] != ".gitattributes":
                ops.append(CommitOperationDelete(rel[name]))
    if not ops:
        raise ValueError(f"nothing to upload: no files in {os.fspath(folder_path)} match the given patterns")
    return create_commit(
        session, repo_id, ops, commit_message=commit_message or "Upload folder using haven",
        commit_description=commit_description, revision=revision, parent_commit=parent_commit, repo_type=repo_type,
    )


# -- commit_scope ---------------------------------------------------------------------------------------


class CommitScope:
    """Write files under `.path`; on a clean exit they are committed together (nothing if it raises).

        with hub.commit_scope("me/model") as repo:
            model.save_pretrained(repo.path)
            tokenizer.save_pretrained(repo.path)
        print(repo.commit_info.oid)
    """

    def __init__(
        self,
        session: HubSession,
        repo_id: str,
        *,
        repo_type: str | None = None,
        revision: str | None = None,
        commit_message: str = "Commit from haven",
        private: bool | None = None,
        create: bool = True,
    ):
        self.session, self.repo_id, self.repo_type = session, repo_id, repo_type
        self.revision, self.commit_message, self.private, self.create = revision, commit_message, private, create
        self.path = ""
        self.commit_info: CommitInfo | None = None
        self._deletes: list[CommitOperationDelete] = []

    def delete(self, path_in_repo: str) -> None:
        """Also delete this remote path (a folder if it ends with `/`) in the same commit."""
        self._deletes.append(CommitOperationDelete(path_in_repo))

    def __enter__(self) -> CommitScope:
        self.path = tempfile.mkdtemp(prefix="haven-commit-")
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is not None:
                return
            ops: list[CommitOperation] = [*folder_operations(self.path), *self._deletes]
            if not ops:
                return
            if self.create:
                created = repos.create_repo(self.session, self.repo_id, private=self.private, repo_type=self.repo_type, exist_ok=True)
                self.repo_id = created.repo_id
            self.commit_info = create_commit(
                self.session, self.repo_id, ops, commit_message=self.commit_message, revision=self.revision,
                repo_type=self.repo_type,
            )
        finally:
            shutil.rmtree(self.path, ignore_errors=True)
