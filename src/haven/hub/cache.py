"""The download cache, in the Hub's own layout (so `huggingface_hub` can read it too):

    <cache>/models--owner--name/
        blobs/<etag>                  file contents, named by git sha1 (regular) or sha256 (LFS)
        blobs/<etag>.incomplete       a download in progress; resumed with Range
        snapshots/<commit>/<path>     relative symlinks into blobs/
        refs/<branch or tag>          the commit a revision pointed at when last seen
        .no_exist/<commit>/<path>     empty file: remembered 404 for an optional file
    <cache>/.locks/models--owner--name/<etag>.lock

Files are shared across revisions (one blob per content), and a download of a commit that is
already in `snapshots/` costs no request at all.
"""

from __future__ import annotations

import fcntl
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .auth import default_cache_dir

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
# A blob's file name comes from the server's ETag: hex digests in practice, never a path.
ETAG_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")


def is_commit_hash(revision: str | None) -> bool:
    return bool(revision and COMMIT_RE.match(revision))


def repo_folder_name(repo_id: str, repo_type: str = "model") -> str:
    return "--".join([f"{repo_type}s", *repo_id.split("/")])


def check_relative_path(filename: str) -> str:
    """A repo path that stays inside its snapshot folder."""
    parts = filename.replace("\\", "/").split("/")
    if not filename or "\0" in filename or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid file path in repository: {filename!r}")
    return filename


def temp_name(path: str) -> str:
    """A sibling name no other process or thread uses: write there, then `os.replace` into place."""
    return f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"


def check_revision(revision: str) -> str:
    """A branch/tag name usable as a path under refs/ (`refs/pr/1` is fine, `../x` is not)."""
    parts = revision.split("/") if isinstance(revision, str) else [""]
    if "\\" in revision or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid revision {revision!r}: pass a branch, tag or commit sha such as 'main'")
    return revision


def check_etag(etag: str) -> str:
    """The server's ETag names a file in blobs/: refuse anything that is not a plain file name."""
    if not ETAG_RE.match(etag):
        raise ValueError(f"the hub sent ETag {etag!r}, which cannot name a cached file")
    return etag


class RepoCache:
    """Paths and bookkeeping of one repository inside the cache."""

    def __init__(self, repo_id: str, repo_type: str = "model", cache_dir: str | os.PathLike | None = None):
        self.cache_dir = os.fspath(cache_dir or default_cache_dir())
        self.repo_id = repo_id
        self.repo_type = repo_type
        self.folder = os.path.join(self.cache_dir, repo_folder_name(repo_id, repo_type))

    # -- paths ---------------------------------------------------------------------------------
    def blob_path(self, etag: str) -> str:
        return os.path.join(self.folder, "blobs", check_etag(etag))

    def snapshot_dir(self, commit: str) -> str:
        return os.path.join(self.folder, "snapshots", commit)

    def snapshot_path(self, commit: str, filename: str) -> str:
        return os.path.join(self.snapshot_dir(commit), *check_relative_path(filename).split("/"))

    def lock_path(self, etag: str) -> str:
        folder = repo_folder_name(self.repo_id, self.repo_type)
        return os.path.join(self.cache_dir, ".locks", folder, f"{check_etag(etag)}.lock")

    # -- refs ----------------------------------------------------------------------------------
    def read_ref(self, revision: str) -> str | None:
        """The commit a branch/tag resolved to last time (a commit sha maps to itself)."""
        if is_commit_hash(revision):
            return revision
        try:
            with open(os.path.join(self.folder, "refs", *check_revision(revision).split("/")), encoding="utf-8") as f:
                value = f.read().strip()
        except (OSError, ValueError):
            return None
        return value if is_commit_hash(value) else None

    def write_ref(self, revision: str, commit: str) -> None:
        if is_commit_hash(revision) or revision == commit:
            return
        path = os.path.join(self.folder, "refs", *check_revision(revision).split("/"))
        if self.read_ref(revision) == commit:
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = temp_name(path)
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(commit)
        os.replace(tmp, path)

    # -- lookups -------------------------------------------------------------------------------
    def cached_file(self, revision: str, filename: str) -> str | None:
        commit = self.read_ref(revision)
        if commit is None:
            return None
        path = self.snapshot_path(commit, filename)
        return path if os.path.isfile(path) else None

    def is_known_missing(self, revision: str, filename: str) -> bool:
        commit = self.read_ref(revision)
        return commit is not None and os.path.isfile(self._no_exist_path(commit, filename))

    def remember_missing(self, commit: str, filename: str) -> None:
        path = self._no_exist_path(commit, filename)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "a").close()

    def _no_exist_path(self, commit: str, filename: str) -> str:
        return os.path.join(self.folder, ".no_exist", commit, *check_relative_path(filename).split("/"))

    def link(self, commit: str, filename: str, etag: str) -> str:
        """Point snapshots/<commit>/<filename> at blobs/<etag> (relative symlink). Returns the path."""
        dst = self.snapshot_path(commit, filename)
        src = self.blob_path(etag)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        rel = os.path.relpath(src, os.path.dirname(dst))
        if os.path.islink(dst) and os.readlink(dst) == rel:
            return dst
        tmp = temp_name(dst)
        try:
            os.symlink(rel, tmp)
            os.replace(tmp, dst)
        except OSError:  # no symlinks on this filesystem: fall back to a copy of the blob
            import shutil

            if os.path.lexists(tmp):
                os.remove(tmp)
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        return dst

    def snapshot_files(self, commit: str) -> list[str]:
        """Repo paths present in snapshots/<commit>."""
        root = self.snapshot_dir(commit)
        found = []
        for dirpath, _, files in os.walk(root):
            for name in files:
                found.append(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
        return sorted(found)


@contextmanager
def file_lock(path: str) -> Iterator[None]:
    """An exclusive `flock` on `path`, held for the block: one writer per blob across processes."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
