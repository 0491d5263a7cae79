"""Reading trees (entries with real sizes and LFS info) and editing them in memory."""

from __future__ import annotations

import pygit2

from .datatypes import LfsInfo, TreeEntry
from .errors import EntryNotFound, InvalidPathError
from .lfs import MAX_POINTER_SIZE, parse_pointer

BLOB = pygit2.GIT_FILEMODE_BLOB
TREE = pygit2.GIT_FILEMODE_TREE
_FILE_MODES = (pygit2.GIT_FILEMODE_BLOB, pygit2.GIT_FILEMODE_BLOB_EXECUTABLE, pygit2.GIT_FILEMODE_LINK)


def blob_entry(repo: pygit2.Repository, path: str, oid: pygit2.Oid) -> TreeEntry:
    """A file entry; reads the blob only when it is small enough to be an LFS pointer."""
    _, size = repo.odb.read_header(oid)
    lfs = None
    if size < MAX_POINTER_SIZE:
        pointer = parse_pointer(repo[oid].data)
        if pointer:
            lfs = LfsInfo(oid=pointer[0], size=pointer[1], pointer_size=size)
    return TreeEntry("file", path, str(oid), lfs.size if lfs else size, lfs)


def lookup(tree: pygit2.Tree, path: str) -> pygit2.Object:
    """The object at `path` in `tree` ("" = the tree itself); raises EntryNotFound."""
    if not path:
        return tree
    try:
        return tree[path]
    except (KeyError, ValueError):
        raise EntryNotFound(f"{path!r} does not exist at this revision.") from None


def to_entry(repo: pygit2.Repository, path: str, obj: pygit2.Object) -> TreeEntry:
    if obj.type == pygit2.GIT_OBJECT_TREE:
        return TreeEntry("directory", path, str(obj.id))
    if obj.type == pygit2.GIT_OBJECT_COMMIT:  # submodule: show it as an empty folder
        return TreeEntry("directory", path, str(obj.id))
    return blob_entry(repo, path, obj.id)


def walk(repo: pygit2.Repository, tree: pygit2.Tree, prefix: str, recursive: bool) -> list[TreeEntry]:
    """Entries of `tree` (whose path is `prefix`), pre-order when recursive."""
    out: list[TreeEntry] = []
    for obj in tree:
        path = f"{prefix}/{obj.name}" if prefix else obj.name
        if obj.type == pygit2.GIT_OBJECT_TREE:
            out.append(TreeEntry("directory", path, str(obj.id)))
            if recursive:
                out.extend(walk(repo, repo[obj.id], path, True))
        elif obj.type == pygit2.GIT_OBJECT_BLOB:
            out.append(blob_entry(repo, path, obj.id))
        else:
            out.append(TreeEntry("directory", path, str(obj.id)))
    return out


class _Dir:
    """A directory being edited: base entries loaded lazily, edited subdirectories kept as _Dir."""

    def __init__(self, repo: pygit2.Repository, tree_id: pygit2.Oid | None):
        self.repo = repo
        self.entries: dict[str, tuple[pygit2.Oid, int]] = {}
        if tree_id is not None:
            for obj in repo[tree_id]:
                self.entries[obj.name] = (obj.id, obj.filemode)
        self.children: dict[str, _Dir] = {}

    def child(self, name: str, path: str, create: bool) -> _Dir | None:
        if name in self.children:
            return self.children[name]
        entry = self.entries.get(name)
        if entry is None:
            if not create:
                return None
            sub = _Dir(self.repo, None)
        elif entry[1] != TREE:
            if not create:
                return None
            raise InvalidPathError(f"Cannot use {path!r} as a folder: it is a file in the repository.")
        else:
            sub = _Dir(self.repo, entry[0])
        self.children[name] = sub
        return sub

    def write(self) -> pygit2.Oid | None:
        """Write this tree (and edited subtrees); None if it ends up empty."""
        for name, sub in self.children.items():
            oid = sub.write()
            if oid is None:
                self.entries.pop(name, None)
            else:
                self.entries[name] = (oid, TREE)
        self.children = {}
        if not self.entries:
            return None
        builder = self.repo.TreeBuilder()
        for name, (oid, mode) in self.entries.items():
            builder.insert(name, oid, mode)
        return builder.write()


class TreeEditor:
    """Apply file additions and deletions to a base tree, then write only the edited trees."""

    def __init__(self, repo: pygit2.Repository, base_tree: pygit2.Oid | None):
        self.repo = repo
        self.root = _Dir(repo, base_tree)

    def _parent(self, path: str, create: bool) -> tuple[_Dir | None, str]:
        parts = path.split("/")
        node: _Dir | None = self.root
        for i, name in enumerate(parts[:-1]):
            node = node.child(name, "/".join(parts[: i + 1]), create)
            if node is None:
                return None, parts[-1]
        return node, parts[-1]

    def get(self, path: str) -> tuple[pygit2.Oid | None, int] | None:
        """(oid, mode) of a file or folder in the edited state, or None."""
        node, name = self._parent(path, create=False)
        if node is None:
            return None
        if name in node.children:
            return None, TREE
        return node.entries.get(name)

    def put(self, path: str, blob: pygit2.Oid, mode: int = BLOB) -> None:
        node, name = self._parent(path, create=True)
        current = node.entries.get(name)
        if name in node.children or (current is not None and current[1] == TREE):
            raise InvalidPathError(f"Cannot write file {path!r}: a folder with that path exists.")
        node.entries[name] = (blob, mode)

    def delete_file(self, path: str) -> None:
        node, name = self._parent(path, create=False)
        current = node.entries.get(name) if node is not None else None
        if current is None or current[1] not in _FILE_MODES or name in node.children:
            raise EntryNotFound(f"Cannot delete {path!r}: no such file at this revision.")
        del node.entries[name]

    def delete_folder(self, path: str) -> None:
        node, name = self._parent(path, create=False)
        exists = node is not None and (
            name in node.children or node.entries.get(name, (None, None))[1] == TREE
        )
        if not exists:
            raise EntryNotFound(f"Cannot delete folder {path!r}: no such folder at this revision.")
        node.children.pop(name, None)
        node.entries.pop(name, None)

    def write(self) -> pygit2.Oid:
        oid = self.root.write()
        if oid is None:  # everything deleted: the empty tree
            oid = self.repo.TreeBuilder().write()
        return oid
