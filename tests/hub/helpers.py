"""Helpers shared by the hub client tests."""

from __future__ import annotations

import os
from pathlib import Path


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def read_tree(root: str | os.PathLike, skip: tuple[str, ...] = (".cache/", ".gitattributes")) -> dict[str, bytes]:
    """{relative path: bytes} of every file under root (symlinks followed)."""
    out = {}
    root = Path(root)
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not any(rel == s or rel.startswith(s) for s in skip):
            out[rel] = path.read_bytes()
    return out
