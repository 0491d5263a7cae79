"""Validation of everything a client names: file paths in commits, repo ids, branch and tag names.

The rules for names inside a repository (file and folder names, depth, length, branch and tag
names) live in `hooks/gitnames.py`, shared with the push hook; see its docstring for the bounds.
"""

from __future__ import annotations

import re

import pygit2

from .errors import InvalidNameError, InvalidPathError
from .hooks.gitnames import path_error, ref_name_error

REPO_TYPES = {"model": "models", "dataset": "datasets"}
_ID_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


def check_repo_type(repo_type: str) -> str:
    """Return the plural directory name of a repo type ("model" -> "models")."""
    try:
        return REPO_TYPES[repo_type]
    except KeyError:
        raise InvalidNameError(
            f"Unknown repo type {repo_type!r}: use one of {', '.join(REPO_TYPES)}."
        ) from None


def name_error(part: str) -> str | None:
    """Why `part` cannot be a user, organization or repository name, or None: the one rule for all
    of them (a user who could be created but never own a repository would be a trap)."""
    if not isinstance(part, str) or not _ID_PART.fullmatch(part):
        return ("each name must start with a letter or digit and use only letters, digits, '-', '_' "
                "and '.', at most 96 characters")
    if "--" in part or ".." in part:
        return "'--' and '..' are not allowed"
    if part.lower().endswith(".git"):
        return "a name may not end with '.git'"
    return None


def repo_id_error(repo_id: str) -> str | None:
    """Why `repo_id` is not a valid "namespace/name", or None if it is."""
    if not isinstance(repo_id, str):
        return f"Repo id {repo_id!r} must be a string 'namespace/name'."
    parts = repo_id.split("/")
    if len(parts) != 2:
        return f"Repo id {repo_id!r} must have the form 'namespace/name'."
    for part in parts:
        error = name_error(part)
        if error:
            return f"Invalid repo id {repo_id!r}: {error}."
    return None


def check_repo_id(repo_id: str) -> str:
    """Raise InvalidNameError unless `repo_id` is a valid "namespace/name"."""
    error = repo_id_error(repo_id)
    if error:
        raise InvalidNameError(error)
    return repo_id


def normalize_path(path: str) -> str:
    """Return the canonical form of a file path inside a repo, or raise InvalidPathError (400).

    Leading "./" segments are dropped. Refused: absolute paths; and everything
    `gitnames.path_error` refuses: backslashes, control characters (C0, DEL, C1), empty, "." or
    ".." segments, any alias of ".git" (case, HFS+ ignorables, NTFS short names and trailing
    dots/spaces/streams), segments over 255 bytes, paths over 4096 bytes or 64 components.
    """
    if not isinstance(path, str) or not path:
        raise InvalidPathError("Empty file path: give a path relative to the repository root.")
    if path.startswith("/"):
        raise InvalidPathError(f"Absolute path {path!r}: give a path relative to the repository root.")
    while path.startswith("./"):
        path = path[2:]
    error = path_error(path)
    if error:
        shown = path if len(path) <= 200 else path[:200] + "..."
        raise InvalidPathError(f"Invalid path {shown!r}: {error}.")
    return path


def normalize_folder(path: str) -> str:
    """Like normalize_path, but a trailing '/' is allowed (and dropped); "" means the root."""
    stripped = path.rstrip("/") if path not in ("", "/") else ""
    return normalize_path(stripped) if stripped else ""


def check_ref_name(name: str, kind: str = "branch") -> str:
    """Raise InvalidNameError unless `name` is a valid short branch/tag name ("main", "v1.0"):
    at most MAX_REF_BYTES (250) bytes, no control character, and valid for `git check-ref-format`."""
    prefix = "refs/heads/" if kind == "branch" else "refs/tags/"
    if not isinstance(name, str):
        raise InvalidNameError(f"Invalid {kind} name {name!r}: give a string.")
    error = ref_name_error(name)
    if error:
        shown = name if len(name) <= 100 else name[:100] + "..."
        raise InvalidNameError(f"Invalid {kind} name {shown!r}: {error}.")
    bad = (
        name.startswith(("refs/", "-"))
        or name == "HEAD"
        or not pygit2.reference_is_valid_name(prefix + name)
    )
    if bad:
        raise InvalidNameError(
            f"Invalid {kind} name {name!r}: see `git check-ref-format` (no spaces, '..', '~', '^', ':', "
            "'?', '*', '[', '\\', no leading '-' or trailing '.lock')."
        )
    return name
