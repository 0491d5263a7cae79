"""A journal of repository operations in flight (create, delete, move), so that a process killed
in the middle leaves work that `RepoStore.recover` can finish or undo at the next start.

Each operation writes one small JSON file under `<repos root>/.journal/` before it touches the
repository and removes it once the caller's database transaction is settled either way. The
file is written to a temporary name, flushed to disk, then renamed: it is either absent or whole.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path


class Journal:
    """The in-flight operations of one RepoStore, one file each under `folder`."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def add(self, **entry: str) -> Path:
        """Record an operation about to start; returns its file (pass it to `done`)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex
        tmp = self.folder / f".{name}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(entry, f)
            f.flush()
            os.fsync(f.fileno())
        final = self.folder / f"{name}.json"
        os.replace(tmp, final)
        return final

    def done(self, record: Path) -> None:
        """The operation is settled (finished or undone): forget it."""
        record.unlink(missing_ok=True)

    def pending(self) -> list[tuple[Path, dict]]:
        """(file, entry) of every operation a crash left unsettled; half-written files are removed."""
        if not self.folder.is_dir():
            return []
        out = []
        for path in sorted(self.folder.iterdir()):
            if path.suffix != ".json":
                path.unlink(missing_ok=True)  # killed while writing: the operation never started
                continue
            try:
                entry = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                path.unlink(missing_ok=True)
                continue
            if isinstance(entry, dict):
                out.append((path, entry))
            else:
                path.unlink(missing_ok=True)
        return out
