"""The sha256 of a fresh upload, computed while its xorbs arrive.

The store checks each file's sha256 from bytes it holds before recording it (LFS objects are shared
across repositories by sha256, so a shard naming a false one must be refused). The shard comes
last, after every xorb, and reading a large file back from its xorbs then makes the client wait
for a second pass over its bytes. But a client uploading a new file packs its chunks into xorbs in
file order and sends them one after another, and each xorb's chunks are decoded and hashed on
arrival anyway: so the store also feeds them to a sha256 that continues the one of the xorbs the
same repository sent just before (a *run*), and keeps the hash state after each whole xorb.

When a shard names a file whose terms begin with whole xorbs of a run, from the run's first xorb
on, the state after those xorbs is the sha256 of that prefix of the file, computed from verified
bytes; only the rest of the file is read back. Anything else (a file starting inside a xorb, a
xorb that was already stored, xorbs sent concurrently, a shard arriving at another CAS process)
reads back what no run covers. The runs are a shortcut: the answer is the same either way.

A repository's idle runs end when a shard of it arrives (its upload is complete); the store keeps
at most `MAX_RUNS` runs, dropping the least recently extended.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence

from .shard import Term

MAX_RUNS = 64


class Run:
    """Whole xorbs one repository sent back to back, and the sha256 state after each."""

    def __init__(self, repo_pk: int | None):
        self.repo_pk = repo_pk
        self.xorbs: list[tuple[bytes, int]] = []  # (xorb hash, chunk count)
        self.states: list = []  # sha256 of the run's bytes up to the end of each xorb
        self.busy = False  # a xorb is streaming into it

    def hasher(self):
        """A sha256 to feed the next xorb's chunks to (a copy: the run's states stay as they are)."""
        return self.states[-1].copy() if self.states else hashlib.sha256()


class Runs:
    def __init__(self, limit: int = MAX_RUNS):
        self.limit = limit
        self._lock = threading.Lock()
        self._runs: list[Run] = []  # least recently extended first

    def claim(self, repo_pk: int | None) -> Run:
        """The run the repository's next xorb continues: its most recently extended idle run, or a
        new one (while another of its xorbs is streaming, the order between them is unknown)."""
        with self._lock:
            run = next((r for r in reversed(self._runs) if r.repo_pk == repo_pk and not r.busy), None)
            if run is None:
                run = Run(repo_pk)
                self._runs.append(run)
                del self._runs[: max(0, len(self._runs) - self.limit)]
            run.busy = True
            return run

    def extend(self, run: Run, xorb: bytes, chunks: int, state) -> None:
        """Record a verified xorb of `chunks` chunks whose decoded bytes `state` hashed after the run's."""
        with self._lock:
            run.xorbs.append((xorb, chunks))
            run.states.append(state)
            run.busy = False
            if run in self._runs:
                self._runs.remove(run)
                self._runs.append(run)

    def release(self, run: Run) -> None:
        """The xorb did not make it (refused, interrupted): the run stays as it was."""
        with self._lock:
            run.busy = False

    def end(self, repo_pk: int | None) -> None:
        """The repository's upload is complete: its idle runs are of no further use."""
        with self._lock:
            self._runs = [r for r in self._runs if r.repo_pk != repo_pk or r.busy]

    def prefix(self, terms: Sequence[Term]):
        """(sha256 state, n): the state after the first `n` terms of a file, from the run covering
        most of them; a fresh sha256 and 0 when no run starts where the file does."""
        best, covered = None, 0
        with self._lock:
            for run in self._runs:
                n = 0
                for (xorb, chunks), term in zip(run.xorbs, terms):
                    if term.xorb != xorb or term.start != 0 or term.end != chunks:
                        break
                    n += 1
                if n > covered:
                    best, covered = run.states[n - 1].copy(), n
        return (best if best is not None else hashlib.sha256()), covered
