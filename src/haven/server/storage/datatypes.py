"""Plain data exchanged with the storage library: tree entries, commits, refs, commit operations."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal


@dataclass
class LfsInfo:
    """The LFS pointer of a file: the object's sha256, its real size, and the pointer blob's size."""

    oid: str
    size: int
    pointer_size: int


@dataclass
class TreeEntry:
    """A file or directory at a commit. `oid` is the git blob/tree sha1; `size` is the real size
    (the LFS object's size for LFS files, 0 for directories)."""

    type: Literal["file", "directory"]
    path: str
    oid: str
    size: int = 0
    lfs: LfsInfo | None = None


@dataclass
class CommitInfo:
    id: str
    title: str
    message: str
    date: datetime
    authors: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)


@dataclass
class RefInfo:
    name: str  # "main"
    ref: str  # "refs/heads/main"
    target_commit: str


# -- commit operations ----------------------------------------------------------------------------


@dataclass
class AddFile:
    """Add or replace a regular git blob."""

    path: str
    content: bytes


@dataclass
class AddLfsFile:
    """Add or replace an LFS file whose object is already in the LfsStore."""

    path: str
    oid: str
    size: int


@dataclass
class DeleteFile:
    path: str


@dataclass
class DeleteFolder:
    path: str


@dataclass
class CopyFile:
    """Copy a file (regular or LFS) from `src_revision` (default: the commit's parent)."""

    src_path: str
    path: str
    src_revision: str | None = None


Operation = AddFile | AddLfsFile | DeleteFile | DeleteFolder | CopyFile
