"""Validation of everything a client names: file paths in commits, repo ids, branch and tag names."""

from __future__ import annotations

import re

import pygit2

from .errors import InvalidNameError, InvalidPathError

REPO_TYPES = {"model": "models", "dataset": "datasets"}
_ID_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_PATH_BYTES = 4096
MAX_SEGMENT_BYTES = 255


def check_repo_type(repo_type: str) -> str:
    """Return the plural directory name of a repo type ("model" -> "models")."""
    try:
        return REPO_TYPES[repo_type]
    except KeyError:
        raise InvalidNameError(
            f"Unknown repo type {repo_type!r}: use one of {', '.join(REPO_TYPES)}."
        ) from None


def repo_id_error(repo_id: str) -> str | None:
    """Why `repo_id` is not a valid "namespace/name", or None if it is."""
    parts = repo_id.split("/")
    if len(parts) != 2:
        return f"Repo id {repo_id!r} must have the form 'namespace/name'."
    for part in parts:
        if not _ID_PART.match(part):
            return (
                f"Invalid repo id {repo_id!r}: each part must start with a letter or digit and use "
                "only letters, digits, '-', '_' and '.', at most 96 characters."
            )
        if "--" in part or ".." in part:
            return f"Invalid repo id {repo_id!r}: '--' and '..' are not allowed."
        if part.lower().endswith(".git"):
            return f"Invalid repo id {repo_id!r}: a name may not end with '.git'."
    return None


def check_repo_id(repo_id: str) -> str:
    """Raise InvalidNameError unless `repo_id` is a valid "namespace/name"."""
    error = repo_id_error(repo_id)
    if error:
        raise InvalidNameError(error)
    return repo_id


def normalize_path(path: str) -> str:
    """Return the canonical form of a file path inside a repo, or raise InvalidPathError.

    Leading "./" segments are dropped; absolute paths, backslashes, NUL and control characters,
    empty, "." or ".." segments and any ".git" segment are refused.
    """
    if not isinstance(path, str) or not path:
        raise InvalidPathError("Empty file path: give a path relative to the repository root.")
    if path.startswith("/"):
        raise InvalidPathError(f"Absolute path {path!r}: give a path relative to the repository root.")
    if "\\" in path:
        raise InvalidPathError(f"Invalid path {path!r}: use '/' as separator, never '\\'.")
    if _CONTROL.search(path):
        raise InvalidPathError(f"Invalid path {path!r}: control characters (NUL, newline...) are not allowed.")
    while path.startswith("./"):
        path = path[2:]
    if len(path.encode()) > MAX_PATH_BYTES:
        raise InvalidPathError(f"Path too long ({len(path.encode())} bytes, at most {MAX_PATH_BYTES}).")
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidPathError(
                f"Invalid path {path!r}: empty, '.' and '..' segments are not allowed; "
                "paths must stay inside the repository."
            )
        if segment.lower() == ".git":
            raise InvalidPathError(f"Invalid path {path!r}: '.git' is reserved by git.")
        if len(segment.encode()) > MAX_SEGMENT_BYTES:
            raise InvalidPathError(f"Invalid path {path!r}: a segment is longer than 255 bytes.")
    return path


def normalize_folder(path: str) -> str:
    """Like normalize_path, but a trailing '/' is allowed (and dropped); "" means the root."""
    stripped = path.rstrip("/") if path not in ("", "/") else ""
    return normalize_path(stripped) if stripped else ""


def check_ref_name(name: str, kind: str = "branch") -> str:
    """Raise InvalidNameError unless `name` is a valid short branch/tag name ("main", "v1.0")."""
    prefix = "refs/heads/" if kind == "branch" else "refs/tags/"
    bad = (
        not name
        or name.startswith(("refs/", "-"))
        or name == "HEAD"
        or _CONTROL.search(name)
        or not pygit2.reference_is_valid_name(prefix + name)
    )
    if bad:
        raise InvalidNameError(
            f"Invalid {kind} name {name!r}: see `git check-ref-format` (no spaces, '..', '~', '^', ':', "
            "'?', '*', '[', '\\', no leading '-' or trailing '.lock')."
        )
    return name
