"""Storage exceptions. Each carries `.message` (for the JSON body), `.status` (HTTP status) and
`.code` (the `X-Error-Code` header value, or None), so the HTTP layer can map them generically."""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every error the storage library raises on purpose."""

    status: int = 400
    code: str | None = None

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class RepoExistsError(StorageError):
    """The repository already exists."""

    status = 409


class RefExistsError(RepoExistsError):
    """A branch or tag of that name already exists (409, like an existing repo)."""


class RepoNotFound(StorageError):
    """No repository with that type and id."""

    status = 404
    code = "RepoNotFound"


class RevisionNotFound(StorageError):
    """The branch, tag or commit does not exist."""

    status = 404
    code = "RevisionNotFound"


class EntryNotFound(StorageError):
    """The file or folder does not exist at that revision."""

    status = 404
    code = "EntryNotFound"


class StaleParentError(StorageError):
    """The commit's expected parent is not the branch head any more."""

    status = 412


class ConcurrentUpdateError(StorageError):
    """The branch moved while the commit was being written (compare-and-swap lost)."""

    status = 409


class InvalidPathError(StorageError):
    """A file path in a commit is not a clean relative path inside the repository."""

    status = 400


class InvalidNameError(InvalidPathError):
    """A repository id, branch or tag name is not valid (400, like a bad path)."""


class LfsObjectMissing(StorageError):
    """A commit (or a download) refers to an LFS object that is not in the store."""

    status = 422


class LfsTooLargeError(StorageError):
    """An LFS object larger than the store's `max_object_size`; refused before any byte is written."""

    status = 413


class LfsVerifyError(StorageError):
    """Uploaded bytes do not match the announced sha256 or size; nothing was stored."""

    status = 400
