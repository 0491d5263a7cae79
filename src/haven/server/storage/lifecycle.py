"""Creating, deleting and moving repositories so that a killed process leaves either the old
state or the new one: each step is journaled (`journal.py`) and `recover` settles leftovers.

Part of RepoStore (a mixin: it uses the store's `root`, `_journal`, `repo_path`, `_open`,
`_scratch`, `_lock` and `_build`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import InvalidNameError, RepoExistsError, RepoNotFound


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _drop_if_empty(folder: Path) -> None:
    """Remove a namespace folder once it holds no repository."""
    try:
        folder.rmdir()
    except OSError:
        pass


class RepoLifecycle:
    def create(self, repo_type: str, repo_id: str, *, author: str, author_email: str = "") -> str:
        """Create a bare repo whose `main` holds one commit with the default `.gitattributes`.
        Returns that commit's sha. Raises RepoExistsError, InvalidNameError."""
        with self.creating(repo_type, repo_id, author=author, author_email=author_email) as sha:
            return sha

    def delete(self, repo_type: str, repo_id: str) -> None:
        """Remove a repository (LFS objects stay in the shared store)."""
        with self.deleting(repo_type, repo_id):
            pass

    def move(self, repo_type: str, from_id: str, to_id: str) -> None:
        """Rename a repository. Raises RepoNotFound, RepoExistsError, InvalidNameError."""
        with self.moving(repo_type, from_id, to_id):
            pass

    # Crash-safe forms for callers that record repositories elsewhere (the hub's database): the
    # caller settles its own transaction inside the `with` block. If the block raises, the
    # storage step is undone; if the process dies inside it, `recover` settles the step at the
    # next start by asking the caller's records whether the repository is listed.

    @contextmanager
    def creating(self, repo_type: str, repo_id: str, *, author: str, author_email: str = "") -> Iterator[str]:
        """Create the repository (yielding its first commit), kept only if the block succeeds."""
        final = self.repo_path(repo_type, repo_id)
        if final.exists():
            raise RepoExistsError(f"Repository {repo_id!r} already exists.")
        record = self._journal.add(op="create", type=repo_type, id=repo_id)
        try:
            sha = self._build(final, author, author_email, repo_id)
            try:
                yield sha
            except BaseException:
                _remove_tree(final)
                raise
        finally:
            self._journal.done(record)

    @contextmanager
    def deleting(self, repo_type: str, repo_id: str) -> Iterator[None]:
        """Hide the repository in the trash; removed for good if the block succeeds, put back if not."""
        self._open(repo_type, repo_id)  # RepoNotFound unless it is a repository
        path = self.repo_path(repo_type, repo_id)
        trash = self._scratch(".trash")
        record = self._journal.add(op="delete", type=repo_type, id=repo_id, trash=trash.name)
        try:
            try:
                os.rename(path, trash)
            except FileNotFoundError:
                raise RepoNotFound(f"Repository {repo_id!r} not found.") from None
            try:
                yield
            except BaseException:
                os.rename(trash, path)
                raise
            _remove_tree(trash)
        finally:
            self._journal.done(record)
        _drop_if_empty(path.parent)

    @contextmanager
    def moving(self, repo_type: str, from_id: str, to_id: str) -> Iterator[None]:
        """Rename the repository; renamed back if the block raises."""
        self._open(repo_type, from_id)
        src = self.repo_path(repo_type, from_id)
        dst = self.repo_path(repo_type, to_id)
        record = None
        try:
            with self._lock(repo_type, from_id):
                if dst.exists():
                    raise RepoExistsError(f"Repository {to_id!r} already exists.")
                record = self._journal.add(op="move", type=repo_type, id=from_id, to=to_id)
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.rename(src, dst)
            try:
                yield
            except BaseException:
                os.rename(dst, src)
                raise
        finally:
            if record is not None:
                self._journal.done(record)
        _drop_if_empty(src.parent)

    def recover(self, is_listed: Callable[[str, str], bool]) -> list[str]:
        """Settle what a killed process left half done; call once at start, before serving.

        `is_listed(repo_type, repo_id)` says whether the caller's records (the database) list the
        repository: a delete whose record is gone is finished, otherwise the repository is put
        back; a create whose record is missing is removed; a move whose new name is not listed is
        renamed back. Then the scratch folders (`.tmp`, `.trash`) are emptied. Returns one line
        per action taken, for the log."""
        done: list[str] = []
        for record, entry in self._journal.pending():
            kind, repo_type, repo_id = entry.get("op"), entry.get("type", ""), entry.get("id", "")
            try:
                path = self.repo_path(repo_type, repo_id)
            except InvalidNameError:
                self._journal.done(record)
                continue
            if kind == "delete":
                trash = self.root / ".trash" / str(entry.get("trash", ""))
                if is_listed(repo_type, repo_id) and trash.is_dir() and not path.exists():
                    os.rename(trash, path)
                    done.append(f"restored {repo_type} {repo_id} (its deletion did not complete)")
                elif not is_listed(repo_type, repo_id):
                    done.append(f"finished deleting {repo_type} {repo_id}")
            elif kind == "create" and not is_listed(repo_type, repo_id) and path.exists():
                _remove_tree(path)
                _drop_if_empty(path.parent)
                done.append(f"removed half-created {repo_type} {repo_id}")
            elif kind == "move":
                dst = self.repo_path(repo_type, str(entry.get("to", "")))
                if not is_listed(repo_type, str(entry.get("to"))) and dst.exists() and not path.exists():
                    os.rename(dst, path)
                    _drop_if_empty(dst.parent)
                    done.append(f"moved {repo_type} {entry.get('to')} back to {repo_id} (its move did not complete)")
            self._journal.done(record)
        for scratch in (".tmp", ".trash"):
            folder = self.root / scratch
            if folder.is_dir():
                for leftover in folder.iterdir():
                    _remove_tree(leftover)
                    done.append(f"removed leftover {scratch}/{leftover.name}")
        return done

