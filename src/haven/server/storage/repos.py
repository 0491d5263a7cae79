"""RepoStore: bare git repositories (pygit2) for models and datasets.

Layout: `<root>/{models|datasets}/<namespace>/<name>.git` (root is normally `DATA/repos`).
Repositories are opened per call (libgit2 handles are not shared between threads); commits are
serialised per repo inside the process and the branch ref moves by compare-and-swap, so a git push
from another process can never be overwritten.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import BinaryIO

import pygit2

from .attributes import DEFAULT_GITATTRIBUTES, with_lfs_paths
from .datatypes import (
    AddFile,
    AddLfsFile,
    CommitInfo,
    CopyFile,
    DeleteFile,
    DeleteFolder,
    Operation,
    RefInfo,
    TreeEntry,
)
from .errors import (
    ConcurrentUpdateError,
    EntryNotFound,
    InvalidNameError,
    InvalidPathError,
    LfsObjectMissing,
    LfsVerifyError,
    RefExistsError,
    RepoExistsError,
    RepoNotFound,
    RevisionNotFound,
    StaleParentError,
    StorageError,
)
from .hooks.gitnames import ref_name_error
from .journal import Journal
from .lfs import LfsStore, check_oid, format_pointer, parse_pointer
from .lifecycle import RepoLifecycle
from .paths import check_ref_name, check_repo_id, check_repo_type, normalize_folder, normalize_path
from .trees import TreeEditor, lookup, to_entry, walk

DEFAULT_BRANCH = "main"
_FULL_SHA = re.compile(r"[0-9a-f]{40}")
_SHORT_SHA = re.compile(r"[0-9a-f]{4,39}")
_SORT = pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.TIME
_CAS_RETRIES = 8  # with backoff 5 ms .. 640 ms: about 1.3 s in all


def _signature(name: str, email: str = "") -> pygit2.Signature:
    clean = re.sub(r"[<>\x00-\x1f]", "", name or "").strip() or "haven"
    email = re.sub(r"[<>\x00-\x1f]", "", email or "").strip() or f"{clean.replace(' ', '.')}@users.noreply.haven"
    return pygit2.Signature(clean, email)


def commit_info(commit: pygit2.Commit) -> CommitInfo:
    message = commit.message
    title = message.split("\n", 1)[0].strip()
    date = datetime.fromtimestamp(commit.author.time, tz=UTC)
    return CommitInfo(
        id=str(commit.id),
        title=title,
        message=message,
        date=date,
        authors=[commit.author.name],
        parents=[str(p) for p in commit.parent_ids],
    )


@contextmanager
def _ref_busy(what: str):
    """A ref whose lock file another writer (git receive-pack) holds: 409 "retry", not a 500."""
    try:
        yield
    except OSError as err:
        if "lock" not in str(err):
            raise
        raise ConcurrentUpdateError(f"{what} is being updated by another writer right now; retry.") from None


class RepoStore(RepoLifecycle):
    """All repositories under `root`, with LFS content served from `lfs`."""

    def __init__(self, root: Path, lfs: LfsStore, *, default_branch: str = DEFAULT_BRANCH):
        self.root = Path(root)
        self.lfs = lfs
        self.default_branch = default_branch
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._journal = Journal(self.root / ".journal")

    # -- repositories -------------------------------------------------------------------------

    def repo_path(self, repo_type: str, repo_id: str) -> Path:
        """The bare repository directory; raises InvalidNameError for a bad type or id."""
        folder = check_repo_type(repo_type)
        namespace, name = check_repo_id(repo_id).split("/")
        return self.root / folder / namespace / f"{name}.git"

    def exists(self, repo_type: str, repo_id: str) -> bool:
        try:
            return self.repo_path(repo_type, repo_id).is_dir()
        except InvalidNameError:
            return False

    def _open(self, repo_type: str, repo_id: str) -> pygit2.Repository:
        try:
            path = self.repo_path(repo_type, repo_id)
        except InvalidNameError:
            raise RepoNotFound(f"Repository {repo_id!r} not found.") from None
        try:
            return pygit2.Repository(str(path), pygit2.enums.RepositoryOpenFlag.NO_SEARCH)
        except pygit2.GitError:
            raise RepoNotFound(f"Repository {repo_id!r} not found.") from None

    def _lock(self, repo_type: str, repo_id: str) -> threading.Lock:
        key = f"{repo_type}:{repo_id}"
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def _scratch(self, kind: str) -> Path:
        path = self.root / kind / uuid.uuid4().hex
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _build(self, final: Path, author: str, author_email: str, repo_id: str) -> str:
        """Build the repository under `.tmp`, then rename it to `final` in one step."""
        tmp = self._scratch(".tmp")
        try:
            repo = pygit2.init_repository(str(tmp), bare=True, initial_head=self.default_branch)
            builder = repo.TreeBuilder()
            builder.insert(".gitattributes", repo.create_blob(DEFAULT_GITATTRIBUTES), pygit2.GIT_FILEMODE_BLOB)
            sig = _signature(author, author_email)
            sha = repo.create_commit(
                f"refs/heads/{self.default_branch}", sig, sig, "initial commit", builder.write(), []
            )
            repo.config["receive.fsckObjects"] = True
            repo.free()
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(tmp, final)
            except OSError:
                raise RepoExistsError(f"Repository {repo_id!r} already exists.") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return str(sha)

    # -- revisions ---------------------------------------------------------------------------

    def _resolve(self, repo: pygit2.Repository, revision: str) -> pygit2.Commit:
        missing = RevisionNotFound(f"Invalid rev id: {revision!r} is not a branch, tag or commit of this repo.")
        if not isinstance(revision, str) or not revision or re.search(r"[\x00-\x20\\]", revision):
            raise missing
        if revision == "HEAD":
            revision = self.default_branch
        if _FULL_SHA.fullmatch(revision):
            obj = repo.get(revision)
            if obj is not None:
                try:
                    return obj.peel(pygit2.Commit)
                except (pygit2.GitError, ValueError):
                    pass
        names = [revision] if revision.startswith("refs/") else [f"refs/heads/{revision}", f"refs/tags/{revision}"]
        for name in names:
            if pygit2.reference_is_valid_name(name):
                ref = repo.references.get(name)
                if ref is not None:
                    try:
                        return ref.peel(pygit2.Commit)
                    except (pygit2.GitError, ValueError):
                        raise missing from None
        if _SHORT_SHA.fullmatch(revision):
            try:
                return repo[revision].peel(pygit2.Commit)
            except (KeyError, ValueError, pygit2.GitError):
                pass
        raise missing

    def resolve(self, repo_type: str, repo_id: str, revision: str) -> str:
        """The commit sha a branch, tag, full or short sha, or full ref name ("refs/pr/1") points to."""
        return str(self._resolve(self._open(repo_type, repo_id), revision).id)

    # -- reading -----------------------------------------------------------------------------

    def list_tree(
        self, repo_type: str, repo_id: str, commit: str, path: str = "", *, recursive: bool = False
    ) -> list[TreeEntry]:
        """Entries of the folder `path` at `commit` (any revision); EntryNotFound if not a folder."""
        repo = self._open(repo_type, repo_id)
        folder = normalize_folder(path)
        obj = lookup(self._resolve(repo, commit).tree, folder)
        if obj.type != pygit2.GIT_OBJECT_TREE:
            raise EntryNotFound(f"{folder!r} is a file, not a folder.")
        return walk(repo, obj, folder, recursive)

    def entry(self, repo_type: str, repo_id: str, commit: str, path: str) -> TreeEntry:
        """The file or folder at `path` ("" = the root folder)."""
        repo = self._open(repo_type, repo_id)
        folder = normalize_folder(path)
        return to_entry(repo, folder, lookup(self._resolve(repo, commit).tree, folder))

    def _blob(self, repo: pygit2.Repository, commit: str, path: str) -> pygit2.Blob:
        obj = lookup(self._resolve(repo, commit).tree, normalize_path(path))
        if obj.type != pygit2.GIT_OBJECT_BLOB:
            raise EntryNotFound(f"{path!r} is a folder, not a file.")
        return obj

    def read_blob(self, repo_type: str, repo_id: str, commit: str, path: str) -> bytes:
        """The raw git blob (the pointer text for LFS files)."""
        return self._blob(self._open(repo_type, repo_id), commit, path).data

    def open_file(
        self, repo_type: str, repo_id: str, commit: str, path: str
    ) -> tuple[TreeEntry, BinaryIO | bytes]:
        """(entry, content): bytes for regular files, an open binary file (caller closes) for LFS
        files. Raises LfsObjectMissing if the pointer's object is not in the store."""
        repo = self._open(repo_type, repo_id)
        blob = self._blob(repo, commit, path)
        entry = to_entry(repo, normalize_path(path), blob)
        if entry.lfs is None:
            return entry, blob.data
        return entry, self.lfs.open(entry.lfs.oid)

    # -- commits -----------------------------------------------------------------------------

    def _apply(self, repo: pygit2.Repository, base: pygit2.Commit | None, ops: list[Operation]) -> pygit2.Oid:
        editor = TreeEditor(repo, base.tree_id if base is not None else None)
        lfs_paths: list[str] = []
        for op in ops:
            if isinstance(op, AddFile):
                content = op.content if isinstance(op.content, bytes) else bytes(op.content)
                editor.put(normalize_path(op.path), repo.create_blob(content))
            elif isinstance(op, AddLfsFile):
                path, oid = normalize_path(op.path), check_oid(op.oid)
                if not self.lfs.has(oid):
                    raise LfsObjectMissing(
                        f"LFS object {oid} for {path!r} is not in the store: upload it (LFS batch) first."
                    )
                size = self.lfs.size(oid)
                if op.size is not None and op.size != size:
                    raise LfsVerifyError(f"LFS object {oid} has size {size}, not {op.size} ({path!r}).")
                editor.put(path, repo.create_blob(format_pointer(oid, size)))
                lfs_paths.append(path)
            elif isinstance(op, DeleteFile):
                editor.delete_file(normalize_path(op.path))
            elif isinstance(op, DeleteFolder):
                folder = normalize_folder(op.path)
                if not folder:
                    raise InvalidPathError("Deleting the root folder is not allowed; delete files instead.")
                editor.delete_folder(folder)
            elif isinstance(op, CopyFile):
                path = normalize_path(op.path)
                source = base if op.src_revision is None else self._resolve(repo, op.src_revision)
                if source is None:
                    raise EntryNotFound(f"Cannot copy {op.src_path!r}: the branch has no commit yet.")
                blob = lookup(source.tree, normalize_path(op.src_path))
                if blob.type != pygit2.GIT_OBJECT_BLOB:
                    raise EntryNotFound(f"Cannot copy {op.src_path!r}: it is a folder, not a file.")
                editor.put(path, blob.id, blob.filemode)
                if parse_pointer(blob.data):
                    lfs_paths.append(path)
            else:
                raise StorageError(f"Unknown commit operation {type(op).__name__}.")
        if lfs_paths:
            current = editor.get(".gitattributes")
            is_file = current is not None and current[0] is not None and current[1] != pygit2.GIT_FILEMODE_TREE
            old = repo[current[0]].data if is_file else b""
            new = with_lfs_paths(old, lfs_paths)
            if new != old:
                editor.put(".gitattributes", repo.create_blob(new))
        return editor.write()

    def commit(
        self,
        repo_type: str,
        repo_id: str,
        branch: str,
        ops: list[Operation],
        *,
        message: str,
        description: str = "",
        author: str,
        author_email: str = "",
        parent: str | None = None,
    ) -> str:
        """Write one commit with `ops` on `branch` and move the branch to it atomically.

        With `parent`, the branch head must be that commit (else StaleParentError) and must not
        move while the commit is built (else ConcurrentUpdateError). Without it, the commit goes
        on top of the current head, retrying if a concurrent push moves it. Returns the new sha.
        """
        repo = self._open(repo_type, repo_id)
        ref_name = branch if branch.startswith("refs/") else f"refs/heads/{check_ref_name(branch)}"
        if (
            not ref_name.startswith(("refs/heads/", "refs/pr/"))
            or ref_name_error(ref_name)
            or not pygit2.reference_is_valid_name(ref_name)
        ):
            raise InvalidNameError(f"Invalid branch {branch!r}: commits go to a branch (or refs/pr/N).")
        text = (message or "").strip() or "Update files"
        if description and description.strip():
            text += "\n\n" + description.strip()
        text += "\n"
        sig = _signature(author, author_email)
        with self._lock(repo_type, repo_id):
            for attempt in range(_CAS_RETRIES):
                ref = repo.references.get(ref_name)
                if ref is None:
                    raise RevisionNotFound(f"Branch {branch!r} does not exist: create it first.")
                head = ref.peel(pygit2.Commit)
                if parent is not None:
                    try:
                        expected = self._resolve(repo, parent).id
                    except RevisionNotFound:
                        raise StaleParentError(f"Parent commit {parent!r} is not in this repository.") from None
                    if expected != head.id:
                        raise StaleParentError(
                            f"Parent commit {parent} is not the head of {branch!r} ({head.id}): "
                            "pull the latest changes and commit again."
                        )
                tree = self._apply(repo, head, ops)
                new = repo.create_commit(None, sig, sig, text, tree, [head.id])
                try:
                    ref.set_target(new, f"commit: {text.splitlines()[0]}")
                    return str(new)
                except (pygit2.GitError, OSError):  # libgit2 reports a held lock file as OSError
                    # Either the ref moved since we read it (compare-and-swap lost) or another
                    # writer (git receive-pack) holds its lock file for a moment: wait a little
                    # and retry, unless the caller pinned a parent that is no longer the head.
                    now = repo.references.get(ref_name)
                    if parent is not None and (now is None or now.target != head.id):
                        break
                    time.sleep(0.005 * 2**attempt)
            raise ConcurrentUpdateError(
                f"Branch {branch!r} was updated while this commit was being written; retry the commit."
            )

    # -- refs --------------------------------------------------------------------------------

    def refs(self, repo_type: str, repo_id: str) -> tuple[list[RefInfo], list[RefInfo]]:
        """(branches, tags), each sorted by name; tags are peeled to their commit."""
        repo = self._open(repo_type, repo_id)
        branches: list[RefInfo] = []
        tags: list[RefInfo] = []
        for name in sorted(repo.references):
            for prefix, out in (("refs/heads/", branches), ("refs/tags/", tags)):
                if name.startswith(prefix):
                    try:
                        target = repo.references[name].peel(pygit2.Commit).id
                    except (pygit2.GitError, ValueError):
                        continue
                    out.append(RefInfo(name[len(prefix) :], name, str(target)))
        return branches, tags

    def create_branch(self, repo_type: str, repo_id: str, name: str, start: str | None = None) -> str:
        """Create `refs/heads/<name>` at `start` (default: the default branch). Returns its commit."""
        repo = self._open(repo_type, repo_id)
        check_ref_name(name, "branch")
        target = self._resolve(repo, start or self.default_branch).id
        try:
            with _ref_busy(f"Branch {name!r}"):
                repo.create_reference_direct(f"refs/heads/{name}", target, False)
        except pygit2.AlreadyExistsError:
            raise RefExistsError(f"Branch {name!r} already exists.") from None
        return str(target)

    def delete_branch(self, repo_type: str, repo_id: str, name: str) -> None:
        repo = self._open(repo_type, repo_id)
        if name == self.default_branch:
            raise StorageError(f"The default branch {name!r} cannot be deleted.")
        ref = repo.references.get(f"refs/heads/{name}") if pygit2.reference_is_valid_name(f"refs/heads/{name}") else None
        if ref is None:
            raise RevisionNotFound(f"Branch {name!r} not found.")
        with _ref_busy(f"Branch {name!r}"):
            ref.delete()

    def create_tag(
        self, repo_type: str, repo_id: str, name: str, revision: str, message: str | None = None,
        *, author: str = "haven", author_email: str = "",
    ) -> str:
        """Tag `revision` (annotated when `message` is given). Returns the tagged commit."""
        repo = self._open(repo_type, repo_id)
        check_ref_name(name, "tag")
        target = self._resolve(repo, revision).id
        if repo.references.get(f"refs/tags/{name}") is not None:
            raise RefExistsError(f"Tag {name!r} already exists.")
        try:
            with _ref_busy(f"Tag {name!r}"):
                if message:
                    repo.create_tag(name, target, pygit2.GIT_OBJECT_COMMIT, _signature(author, author_email), message)
                else:
                    repo.create_reference_direct(f"refs/tags/{name}", target, False)
        except (pygit2.AlreadyExistsError, ValueError):
            raise RefExistsError(f"Tag {name!r} already exists.") from None
        return str(target)

    def delete_tag(self, repo_type: str, repo_id: str, name: str) -> None:
        repo = self._open(repo_type, repo_id)
        ref = repo.references.get(f"refs/tags/{name}") if pygit2.reference_is_valid_name(f"refs/tags/{name}") else None
        if ref is None:
            raise RevisionNotFound(f"Tag {name!r} not found.")
        with _ref_busy(f"Tag {name!r}"):
            ref.delete()

    # -- history -----------------------------------------------------------------------------

    def log(self, repo_type: str, repo_id: str, revision: str, *, skip: int = 0, limit: int = 50) -> list[CommitInfo]:
        """Commits reachable from `revision`, newest first."""
        repo = self._open(repo_type, repo_id)
        start = self._resolve(repo, revision)
        walker = repo.walk(start.id, _SORT)
        return [commit_info(c) for c in islice(walker, max(skip, 0), max(skip, 0) + max(limit, 0))]

    def count_commits(self, repo_type: str, repo_id: str, revision: str) -> int:
        """How many commits are reachable from `revision` (for pagination)."""
        repo = self._open(repo_type, repo_id)
        return sum(1 for _ in repo.walk(self._resolve(repo, revision).id, _SORT))

    def last_commit_for(
        self, repo_type: str, repo_id: str, commit: str, paths: list[str], *, max_commits: int = 10_000
    ) -> dict[str, CommitInfo]:
        """For each path (file or folder) present at `commit`, the newest commit that changed it."""
        repo = self._open(repo_type, repo_id)
        start = self._resolve(repo, commit)
        remaining = set()
        for path in paths:
            try:
                lookup(start.tree, path)
                remaining.add(path)
            except EntryNotFound:
                continue
        found: dict[str, CommitInfo] = {}
        for c in islice(repo.walk(start.id, _SORT), max_commits):
            if not remaining:
                break
            if c.parents:
                changed = None
                for p in c.parents:
                    deltas = repo.diff(p.tree, c.tree).deltas
                    names = {d.new_file.path for d in deltas} | {d.old_file.path for d in deltas}
                    changed = names if changed is None else changed & names
                touched = set(changed or ())
                for name in list(touched):
                    parts = name.split("/")
                    touched.update("/".join(parts[:i]) for i in range(1, len(parts)))
                hits = remaining & touched
            else:
                hits = set(remaining)
            if hits:
                info = commit_info(c)
                for path in hits:
                    found[path] = info
                remaining -= hits
        return found
