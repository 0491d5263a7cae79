"""Hub storage: bare git repositories (pygit2), the LFS object store, git smart HTTP, push policy.

A pure library (no HTTP framework). Data layout under the server's data dir:

    DATA/repos/{models|datasets}/{namespace}/{name}.git   RepoStore(DATA / "repos", lfs)
    DATA/lfs/objects/ab/cd/<sha256>                        LfsStore(DATA / "lfs")
    DATA/tmp/                                              uploads in progress (LfsStore default)

Interface (the HTTP layer codes against exactly this):

    RepoStore(root, lfs)
      .repo_path(type, id) -> Path        .exists(type, id) -> bool
      .create(type, id, author=) -> sha   initial commit on main with the default .gitattributes
      .delete(type, id)                   .move(type, from_id, to_id)
      with .creating(type, id, author=) as sha / .deleting(type, id) / .moving(type, from, to):
          the caller commits its database row inside the block; an exception undoes the step
      .recover(is_listed) -> [str]        at start: settle steps a killed process left half done
                                          (is_listed(type, id) -> bool asks the database)
      .resolve(type, id, revision) -> sha branch, tag, full/short sha, "refs/pr/1", "HEAD"
      .list_tree(type, id, commit, path="", recursive=False) -> [TreeEntry]   (pre-order)
      .entry(type, id, commit, path) -> TreeEntry        ("" = the root folder)
      .read_blob(type, id, commit, path) -> bytes        raw blob (pointer text for LFS files)
      .open_file(type, id, commit, path) -> (TreeEntry, bytes | open binary file)  LFS resolved
      .commit(type, id, branch, ops, message=, description=, author=, author_email=, parent=) -> sha
      .refs(type, id) -> (branches, tags)                [RefInfo]
      .create_branch(type, id, name, start=None) / .delete_branch(type, id, name)
      .create_tag(type, id, name, revision, message=None) / .delete_tag(type, id, name)
      .log(type, id, revision, skip=0, limit=50) -> [CommitInfo]   newest first
      .count_commits(type, id, revision) -> int
      .last_commit_for(type, id, commit, paths) -> {path: CommitInfo}
    Every `commit` argument of the readers accepts any revision; `type` is "model" | "dataset".
    Commit ops: AddFile(path, content), AddLfsFile(path, oid, size), DeleteFile(path),
    DeleteFolder(path), CopyFile(src_path, path, src_revision=None).

    LfsStore(root, tmp_dir=None, fsync=False, max_object_size=50 GB, blobs=None)
      root is DATA/lfs; blobs= another BlobStore (blobs.open_blob_store: a directory, S3), which
      then has tmp_dir/fsync settings of its own (giving them here too is a ValueError)
      .has(oid) .size(oid) .read(oid, start, end) .open(oid) .local_path(oid) .download_url(oid, ...)
      .path(oid) (local stores only) .put(oid, size, chunks) await .put_async(...)
      .put_file(path) -> (oid, size)   .check_size(size) (413 over the limit)   .sweep_tmp() at start
      .add_source(source): objects an ObjectSource (Xet) produces count as stored

    githttp.run_http_backend(repo_root, path_info, method, query, headers, body, *,
                             remote_user, allow_push, on_push=None, lfs=None)
      -> (status, headers, body_iter)
      ASYNC: `status, headers, body = await run_http_backend(...)`; `repo_root` is DATA/repos and
      `path_info` comes from `githttp.git_path_info(type, id, "info/refs")`
      ("/models/ns/name.git/info/refs"). It returns once the request body has been fed to git.
      Pushes run the pre-receive policy (hooks/pre_receive.py): non-LFS blobs over 10 MB refused
      with a git-lfs hint, LFS pointers whose object `lfs` (default: the local store in DATA/lfs;
      the hub gives its own, with its blob store and Xet source) does not have refused, names the
      commit API would refuse, submodules and symlinks leaving the repo refused (git's fsck
      refuses .git and ..), packs over `max_pack_size` (2 GiB) refused, only
      refs/heads/* and refs/tags/*, the default branch cannot be deleted. After a push that moved
      a ref, `on_push(type, id)` is called (sync or async) at the end of the body iterator.

    attributes.is_lfs_tracked(gitattributes_text, path) -> bool; attributes.DEFAULT_GITATTRIBUTES
    paths.normalize_path(path), paths.check_repo_id(id), paths.repo_id_error(id) -> str | None
    hooks/gitnames.py: the name rules (path components, depth, length, ref names), shared with
      the push hook; every write path (NDJSON commits, uploads, Xet) goes through normalize_path.

Errors: every StorageError has `.message`, `.status` (HTTP) and `.code` (X-Error-Code or None):
RepoExistsError 409 (RefExistsError: branch/tag exists, 409), RepoNotFound 404, RevisionNotFound
404, EntryNotFound 404, StaleParentError 412, ConcurrentUpdateError 409, InvalidPathError 400
(InvalidNameError: bad repo id / ref name, 400), LfsObjectMissing 422, LfsVerifyError 400,
LfsTooLargeError 413, attributes.GitattributesError 400; a plain StorageError (e.g. deleting the
default branch) is 400.
"""

from pathlib import Path

from . import attributes, githttp, lifecycle, paths  # submodules as attributes
from .blobs import BlobStore, BlobStoreError, LocalBlobStore
from .datatypes import (
    AddFile,
    AddLfsFile,
    CommitInfo,
    CopyFile,
    DeleteFile,
    DeleteFolder,
    LfsInfo,
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
    LfsTooLargeError,
    LfsVerifyError,
    RefExistsError,
    RepoExistsError,
    RepoNotFound,
    RevisionNotFound,
    StaleParentError,
    StorageError,
)
from .lfs import LfsStore, format_pointer, parse_pointer
from .repos import DEFAULT_BRANCH, RepoStore

__all__ = [
    "open_blob_store",
    "AddFile", "AddLfsFile", "CommitInfo", "CopyFile", "DeleteFile", "DeleteFolder", "LfsInfo",
    "Operation", "RefInfo", "TreeEntry", "ConcurrentUpdateError", "EntryNotFound", "InvalidNameError",
    "InvalidPathError", "LfsObjectMissing", "LfsTooLargeError", "LfsVerifyError", "RefExistsError", "RepoExistsError",
    "RepoNotFound", "RevisionNotFound", "StaleParentError", "StorageError", "LfsStore", "RepoStore",
    "DEFAULT_BRANCH", "format_pointer", "parse_pointer", "attributes", "githttp", "lifecycle", "paths",
]


def open_blob_store(spec: str | None, data_dir: Path) -> BlobStore:
    """The store a `--blob-store` / HAVEN_BLOB_STORE value names: none or a directory -> local files
    (default: the data directory itself); `s3://bucket[/prefix]` -> an S3 bucket, with the endpoint and
    credentials from the standard AWS settings (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY, AWS_REGION / AWS_DEFAULT_REGION, AWS_PROFILE, ~/.aws/config). Raises
    BlobStoreError naming the setting when the value or the bucket cannot be used."""
    if not spec:
        return LocalBlobStore(Path(data_dir))
    if spec.startswith("s3://"):
        bucket, _, prefix = spec[5:].partition("/")
        from .s3_blobs import S3BlobStore

        return S3BlobStore.connect(bucket, prefix.strip("/"))
    if "://" in spec:
        raise BlobStoreError(
            f"--blob-store {spec!r} (HAVEN_BLOB_STORE) is not supported: give a directory or s3://bucket/prefix."
        )
    return LocalBlobStore(Path(spec).expanduser().resolve())
