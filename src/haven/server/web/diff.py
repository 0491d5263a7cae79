"""A commit's changes, file by file, read through the storage library's public calls only
(recursive tree listings of the commit and its first parent, and blob reads)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from ..storage.datatypes import TreeEntry

MAX_FILES = 300  # files shown in one commit page
MAX_TEXT_BYTES = 1 << 20  # either side larger: no line diff
COLLAPSE_LINES = 400  # diffs longer than this start collapsed
MAX_LINES = 5000  # and are cut here


@dataclass
class FileChange:
    path: str
    status: str  # "added" | "deleted" | "modified"
    old: TreeEntry | None
    new: TreeEntry | None
    kind: str = "text"  # "text" | "lfs" | "binary" | "large"
    lines: list[tuple[str, str]] = field(default_factory=list)  # (css class, line)
    added: int = 0
    removed: int = 0
    truncated: bool = False

    @property
    def collapsed(self) -> bool:
        return len(self.lines) > COLLAPSE_LINES


def _files(store, repo_type: str, repo_id: str, sha: str | None) -> dict[str, TreeEntry]:
    if sha is None:
        return {}
    return {e.path: e for e in store.list_tree(repo_type, repo_id, sha, "", recursive=True) if e.type == "file"}


def _text(store, repo_type: str, repo_id: str, sha: str | None, entry: TreeEntry | None) -> str | None:
    """The file's text, "" when absent, None when it is not UTF-8 text."""
    if entry is None or sha is None:
        return ""
    data = store.read_blob(repo_type, repo_id, sha, entry.path)
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _line_diff(change: FileChange, old: str, new: str) -> None:
    diff = difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=3)
    for i, line in enumerate(diff):
        if i < 2:  # the ---/+++ header lines: the page shows the path itself
            continue
        if len(change.lines) >= MAX_LINES:
            change.truncated = True
            break
        css = {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "ctx")
        change.added += css == "add"
        change.removed += css == "del"
        change.lines.append((css, line))


def commit_changes(store, repo_type: str, repo_id: str, sha: str, parent: str | None) -> tuple[list[FileChange], int]:
    """(the changes of commit `sha` against `parent`, shown first; how many files changed in all)."""
    before, after = _files(store, repo_type, repo_id, parent), _files(store, repo_type, repo_id, sha)
    paths = sorted(p for p in before.keys() | after.keys() if getattr(before.get(p), "oid", None) != getattr(after.get(p), "oid", None))
    changes = []
    for path in paths[:MAX_FILES]:
        old, new = before.get(path), after.get(path)
        status = "added" if old is None else "deleted" if new is None else "modified"
        change = FileChange(path, status, old, new)
        if (old and old.lfs) or (new and new.lfs):
            change.kind = "lfs"
        elif max(old.size if old else 0, new.size if new else 0) > MAX_TEXT_BYTES:
            change.kind = "large"
        else:
            old_text = _text(store, repo_type, repo_id, parent, old)
            new_text = _text(store, repo_type, repo_id, sha, new)
            if old_text is None or new_text is None:
                change.kind = "binary"
            else:
                _line_diff(change, old_text, new_text)
        changes.append(change)
    return changes, len(paths)
