"""Downloads into the cache: `hf_hub_download`, `snapshot_download`, and `resolve_remote_file`
(what `from_pretrained("owner/name")` calls for every file it needs).

One file: HEAD `/{id}/resolve/{rev}/{path}` gives the commit (`X-Repo-Commit`), the blob name
(`X-Linked-Etag`/`ETag`) and size; if that blob is cached, link it and stop. Otherwise take the
blob's file lock, GET into `blobs/<etag>.incomplete` (resuming with `Range` from what is
already there), check size and hash, and move it into place. A revision given as a commit
sha that is already cached costs no request; a branch costs one HEAD.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from ..errors import EntryNotFoundError, HubError, LocalEntryNotFoundError
from . import http, repos
from .auth import is_offline, progress_disabled
from .cache import (
    ETAG_RE,
    RepoCache,
    check_relative_path,
    check_revision,
    file_lock,
    is_commit_hash,
    temp_name,
)
from .http import HubSession

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
PROGRESS_MIN_BYTES = 5 * (1 << 20)  # progress bars only for files over a few MB


class FileMeta:
    """What the HEAD of a resolve URL says about a file."""

    def __init__(self, commit: str, etag: str, size: int, url: str, same_origin: bool):
        self.commit, self.etag, self.size, self.url, self.same_origin = commit, etag, size, url, same_origin


def _clean_etag(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"') or None


def head_file(session: HubSession, repo_id: str, filename: str, revision: str, repo_type: str, cache: RepoCache) -> FileMeta:
    """HEAD the resolve URL (following same-origin redirects only). Remembers 404s in the cache."""
    url = http.resolve_url(session.endpoint, repo_type, repo_id, revision, filename)
    headers = {**session.auth_headers(), "accept-encoding": "identity"}
    origin = urlsplit(url)[:2]
    for _ in range(10):
        response = session.http.head(url, headers=headers)
        location = response.headers.get("location")
        if response.is_redirect and location:
            target = urljoin(url, location)
            if urlsplit(target)[:2] == origin:
                url = target
                continue
            meta_url, same_origin = target, False  # cross-origin: the 3xx itself carries the headers
            break
        meta_url, same_origin = url, True
        break
    else:
        raise HubError(f"too many redirects resolving {filename!r} in {repo_id!r}")

    commit = response.headers.get("x-repo-commit")
    if response.status_code == 404 and response.headers.get("x-error-code") == "EntryNotFound" and is_commit_hash(commit):
        cache.write_ref(revision, commit)
        cache.remember_missing(commit, filename)
    http.raise_for_status(response, repo_id=repo_id, revision=revision, filename=filename, action="download")
    etag = _clean_etag(response.headers.get("x-linked-etag") or response.headers.get("etag"))
    size = response.headers.get("x-linked-size") or response.headers.get("content-length")
    if not is_commit_hash(commit) or not etag or size is None:
        raise HubError(
            f"{session.endpoint} answered for {filename!r} without X-Repo-Commit/ETag/size headers: it does not look "
            "like a Hub endpoint. Check HAVEN_ENDPOINT"
        )
    if not ETAG_RE.match(etag) or not size.isdigit():  # the ETag becomes a file name in blobs/
        raise HubError(
            f"{session.endpoint} answered for {filename!r} with ETag {etag!r} and size {size!r}, which Haven cannot "
            "use: it does not behave like a Hub endpoint. Check HAVEN_ENDPOINT"
        )
    return FileMeta(commit, etag, int(size), meta_url, same_origin)


def hf_hub_download(
    session: HubSession,
    repo_id: str,
    filename: str,
    *,
    revision: str | None = None,
    repo_type: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_dir: str | os.PathLike | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
) -> str:
    """Path of `filename` from `repo_id` at `revision` (default main), downloaded into the cache if needed.

    With `local_dir`, the file is also copied to `local_dir/filename` and that path is returned.
    Offline (`HAVEN_OFFLINE=1` or `local_files_only=True`) only the cache is used.
    """
    repo_type = http.check_repo_type(repo_type)
    http.check_repo_id(repo_id)
    check_relative_path(filename)
    revision = check_revision(revision or "main")
    cache = RepoCache(repo_id, repo_type, cache_dir)

    if not force_download and is_commit_hash(revision):
        cached = cache.cached_file(revision, filename)
        if cached:
            return _to_local_dir(cached, local_dir, filename, revision)
        if cache.is_known_missing(revision, filename):
            return _from_cache_only(cache, revision, filename, local_dir, why="")

    if local_files_only or is_offline():
        return _from_cache_only(cache, revision, filename, local_dir, why="offline mode is on (HAVEN_OFFLINE or local_files_only)")

    try:
        meta = head_file(session, repo_id, filename, revision, repo_type, cache)
    except httpx.TransportError as err:
        return _from_cache_only(
            cache, revision, filename, local_dir,
            why=f"the hub at {session.endpoint} could not be reached ({type(err).__name__})",
        )

    cache.write_ref(revision, meta.commit)
    snapshot = cache.snapshot_path(meta.commit, filename)
    blob = cache.blob_path(meta.etag)
    if not force_download and os.path.isfile(snapshot) and os.path.isfile(blob):
        return _to_local_dir(snapshot, local_dir, filename, meta.commit)
    os.makedirs(os.path.dirname(blob), exist_ok=True)
    with file_lock(cache.lock_path(meta.etag)):
        if force_download or not os.path.isfile(blob):
            fetch_blob(session, meta, blob, filename=filename, repo_id=repo_id, revision=revision, restart=force_download)
        path = cache.link(meta.commit, filename, meta.etag)
    return _to_local_dir(path, local_dir, filename, meta.commit)


def _from_cache_only(cache: RepoCache, revision: str, filename: str, local_dir: Any, *, why: str) -> str:
    cached = cache.cached_file(revision, filename)
    if cached:
        return _to_local_dir(cached, local_dir, filename, cache.read_ref(revision) or revision)
    if cache.is_known_missing(revision, filename):
        raise EntryNotFoundError(
            f"{filename!r} does not exist in {cache.repo_id!r} at revision {revision!r} (remembered from an earlier "
            "request). Check the file name"
        )
    raise LocalEntryNotFoundError(
        f"{filename!r} of {cache.repo_id!r} (revision {revision!r}) is not in the cache at {cache.cache_dir}, and "
        f"{why}. Connect to the hub (check HAVEN_ENDPOINT, unset HAVEN_OFFLINE) and download it once first"
    )


def fetch_blob(
    session: HubSession, meta: FileMeta, blob: str, *, filename: str, repo_id: str, revision: str, restart: bool = False
) -> None:
    """GET the file into `blob + '.incomplete'` (resuming), verify it, then move it to `blob`."""
    incomplete = blob + ".incomplete"
    if restart and os.path.exists(incomplete):
        os.remove(incomplete)
    offset = os.path.getsize(incomplete) if os.path.exists(incomplete) else 0
    if offset > meta.size:
        offset = 0
    digest = None
    if offset < meta.size or meta.size == 0:
        headers = session.auth_headers() if meta.same_origin else {}
        headers["accept-encoding"] = "identity"  # sizes and hashes are of the raw bytes
        if offset:
            headers["range"] = f"bytes={offset}-"
        try:
            with session.http.stream("GET", meta.url, headers=headers, follow_redirects=True) as response:
                if response.status_code == 416 and offset:
                    offset = 0  # the server disagrees about what we have: start over
                    os.remove(incomplete)
                    return fetch_blob(session, meta, blob, filename=filename, repo_id=repo_id, revision=revision)
                if response.status_code >= 400:
                    response.read()
                    http.raise_for_status(response, repo_id=repo_id, revision=revision, filename=filename, action="download")
                if offset and response.status_code != 206:
                    offset = 0  # no range support: the body is the whole file
                digest = _write_body(session, response, incomplete, offset, meta.size, filename, meta.etag)
        except httpx.TransportError as err:
            have = os.path.getsize(incomplete) if os.path.exists(incomplete) else 0
            raise HubError(
                f"download of {filename!r} from {repo_id!r} broke off after {have} of {meta.size} bytes "
                f"({type(err).__name__}: {err}); run it again to resume where it stopped"
            ) from err
    verify_file(incomplete, meta.size, meta.etag, filename, digest=digest)
    os.replace(incomplete, blob)


def _hasher(etag: str, size: int) -> Any:
    """The hash the hub names this blob by: sha256 (LFS) or git's blob sha1 (regular files)."""
    if len(etag) == 64:
        return hashlib.sha256()
    if len(etag) == 40:
        return hashlib.sha1(f"blob {size}\0".encode())
    return None


def file_digest(path: str, etag: str) -> str | None:
    """The file's hash in the kind `etag` is (64 hex: sha256, 40 hex: git blob sha1); None for others."""
    hasher = _hasher(etag, os.path.getsize(path))
    if hasher is None:
        return None
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def progress_bar(total: int, desc: str, initial: int = 0) -> Any:
    """A tqdm bar for transfers over PROGRESS_MIN_BYTES, unless bars are turned off; else None."""
    if total < PROGRESS_MIN_BYTES or progress_disabled():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, leave=False)


def _write_body(
    session: HubSession, response: httpx.Response, path: str, offset: int, total: int, filename: str, etag: str
) -> str | None:
    """Append the body at `offset`, hashing as it goes (one pass over the data). Returns the digest."""
    hasher = _hasher(etag, total)
    bar = progress_bar(total, filename, initial=offset)
    try:
        with open(path, "r+b" if offset and os.path.exists(path) else "wb") as f:
            if hasher is not None and offset:
                for chunk in iter(lambda: f.read(min(CHUNK, offset - f.tell())), b""):
                    hasher.update(chunk)
            f.seek(offset)
            f.truncate()
            for chunk in response.iter_raw():  # as it arrives: a broken transfer keeps every byte received
                f.write(chunk)
                if hasher is not None:
                    hasher.update(chunk)
                session.count_bytes("bytes_downloaded", len(chunk))
                if bar is not None:
                    bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return hasher.hexdigest() if hasher is not None else None


def verify_file(path: str, size: int, etag: str, filename: str, *, digest: str | None = None) -> None:
    """Size and content hash (sha256 for LFS etags, git blob sha1 for regular ones), else delete + raise.

    `digest`: the hash already computed while writing (else the file is read again).
    """
    actual = os.path.getsize(path)
    problem = None
    kind = {64: "sha256", 40: "git sha1"}.get(len(etag))
    if actual != size:
        problem = f"expected {size} bytes, got {actual}"
    elif kind:
        digest = digest or file_digest(path, etag)
        problem = None if digest == etag else f"{kind} is {digest}, the hub says {etag}"
    if problem:
        os.remove(path)
        raise HubError(f"download of {filename!r} is corrupt ({problem}); the partial file was deleted, run it again")


def _to_local_dir(path: str, local_dir: str | os.PathLike | None, filename: str, commit: str) -> str:
    """Copy a cached file into `local_dir` (skipped when the copy there is already this version)."""
    if local_dir is None:
        return path
    dest = os.path.join(os.fspath(local_dir), *filename.split("/"))
    marker = os.path.join(os.fspath(local_dir), ".cache", "haven", *filename.split("/")) + ".metadata"
    blob = os.path.realpath(path)
    stamp = {"commit": commit, "blob": os.path.basename(blob), "size": os.path.getsize(blob)}
    try:
        with open(marker, encoding="utf-8") as f:
            if json.load(f) == stamp and os.path.getsize(dest) == stamp["size"]:
                return dest
    except (OSError, ValueError):
        pass
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = temp_name(dest)  # per process and thread: two downloads into one local_dir never share a temp file
    shutil.copyfile(blob, tmp)
    os.replace(tmp, dest)
    os.makedirs(os.path.dirname(marker), exist_ok=True)
    tmp = temp_name(marker)
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(stamp, f)
    os.replace(tmp, marker)
    return dest


def filter_paths(paths: Iterable[str], allow_patterns: Any = None, ignore_patterns: Any = None) -> list[str]:
    """Keep paths matching any allow pattern and no ignore pattern (`dir/` means everything under it)."""

    def norm(patterns: Any) -> list[str] | None:
        if patterns is None:
            return None
        patterns = [patterns] if isinstance(patterns, str) else list(patterns)
        return [p + "*" if p.endswith("/") else p for p in patterns]

    allow, ignore = norm(allow_patterns), norm(ignore_patterns)
    kept = []
    for path in paths:
        if allow is not None and not any(fnmatch.fnmatch(path, p) for p in allow):
            continue
        if ignore is not None and any(fnmatch.fnmatch(path, p) for p in ignore):
            continue
        kept.append(path)
    return kept


def snapshot_download(
    session: HubSession,
    repo_id: str,
    *,
    revision: str | None = None,
    repo_type: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_dir: str | os.PathLike | None = None,
    allow_patterns: str | list[str] | None = None,
    ignore_patterns: str | list[str] | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
    max_workers: int = 4,
) -> str:
    """Folder with every file of `repo_id` at `revision` (filtered by the patterns).

    Returns the cache's `snapshots/<commit>` folder, or `local_dir` when given. A repeat call for
    a revision already complete in the cache makes one request (the revision lookup).
    """
    repo_type = http.check_repo_type(repo_type)
    http.check_repo_id(repo_id)
    revision = check_revision(revision or "main")
    cache = RepoCache(repo_id, repo_type, cache_dir)

    def offline(why: str) -> str:
        commit = cache.read_ref(revision)
        if commit is None or not os.path.isdir(cache.snapshot_dir(commit)):
            raise LocalEntryNotFoundError(
                f"revision {revision!r} of {repo_id!r} is not in the cache at {cache.cache_dir}, and {why}. Connect "
                "to the hub (check HAVEN_ENDPOINT, unset HAVEN_OFFLINE) and download it once first"
            )
        files = filter_paths(cache.snapshot_files(commit), allow_patterns, ignore_patterns)
        for name in files:
            _to_local_dir(cache.snapshot_path(commit, name), local_dir, name, commit)
        return os.fspath(local_dir) if local_dir else cache.snapshot_dir(commit)

    if local_files_only or is_offline():
        return offline("offline mode is on (HAVEN_OFFLINE or local_files_only)")
    try:
        info = repos.repo_info(session, repo_id, revision=revision, repo_type=repo_type)
    except HubError as err:
        if isinstance(err.__cause__, httpx.TransportError):
            return offline(f"the hub at {session.endpoint} could not be reached")
        raise
    commit = info.sha
    if not is_commit_hash(commit):
        raise HubError(f"{session.endpoint} did not report a commit sha for {repo_id!r}; is it a Hub endpoint?")
    cache.write_ref(revision, commit)
    if info.siblings is not None:
        names = [s.rfilename for s in info.siblings]
    else:
        names = repos.list_repo_files(session, repo_id, revision=commit, repo_type=repo_type)
    unsafe = [name for name in names if not _is_safe_repo_path(name)]
    if unsafe:  # checked before anything is written: a hostile listing must not reach outside the folder
        raise HubError(
            f"{session.endpoint} listed file names in {repo_id!r} that would land outside the download folder: "
            f"{unsafe[:5]}. Nothing was downloaded; check HAVEN_ENDPOINT points at a hub you trust"
        )
    names = filter_paths(names, allow_patterns, ignore_patterns)
    os.makedirs(cache.snapshot_dir(commit), exist_ok=True)

    def one(name: str) -> str:
        cached = None if force_download else cache.cached_file(commit, name)
        if cached:
            return _to_local_dir(cached, local_dir, name, commit)
        return hf_hub_download(
            session, repo_id, name, revision=commit, repo_type=repo_type, cache_dir=cache.cache_dir,
            local_dir=local_dir, force_download=force_download,
        )

    if max_workers > 1 and len(names) > 1:
        with ThreadPoolExecutor(max_workers=min(max_workers, len(names))) as pool:
            list(pool.map(one, names))
    else:
        for name in names:
            one(name)
    return os.fspath(local_dir) if local_dir else cache.snapshot_dir(commit)


def _is_safe_repo_path(name: object) -> bool:
    try:
        check_relative_path(name)  # type: ignore[arg-type]
    except (ValueError, AttributeError, TypeError):
        return False
    return True


def resolve_remote_file(
    repo_id: str,
    filename: str,
    *,
    revision: str | None = None,
    optional: bool = False,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
    repo_type: str | None = None,
    **_: Any,
) -> str | None:
    """`haven.hub.resolve_file` for repository ids: a cached path, or None for a missing optional file."""
    try:
        return hf_hub_download(
            http.get_session(token), repo_id, filename, revision=revision, repo_type=repo_type, cache_dir=cache_dir,
            force_download=force_download, local_files_only=local_files_only,
        )
    except EntryNotFoundError:
        if optional:
            return None
        raise
