"""The sha256 of a fresh upload, computed while its xorbs arrive.

The store checks each file's sha256 from bytes it holds before recording it (LFS objects are shared
across repositories by sha256, so a shard naming a false one must be refused). The shard comes
last, after every xorb, and reading a large file back from its xorbs then makes the client wait
for a second pass over its bytes. But a client uploading a new file packs its chunks into xorbs in
file order and starts sending them in that order (several at once: the later ones may finish
first). So the store keeps, per repository, a *run*: the xorbs it started receiving, in the order
they started. A background worker hashes them in that order, each as soon as it is verified and
stored and the one before it is hashed, continuing one sha256 from the run's first xorb, and keeps
the hash state after each (it reads the decoded chunks back from the blob store: from the page
cache for local files, while the client is still sending the next xorbs).

When a shard names a file whose terms begin with whole xorbs of the run, from its first xorb on,
the state after those xorbs is the sha256 of that prefix of the file, computed from verified
bytes; only the rest of the file is read back while the client waits. Anything else (a file
starting inside a xorb, a xorb that was already stored, a shard arriving at another CAS process)
reads back what no run covers. The runs are a shortcut: the answer is the same either way.

A repository's run ends when a shard of it arrives (its upload is complete); the store keeps at
most `MAX_RUNS` runs, dropping the least recently extended.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from .hashing import to_hex
from .shard import Term
from .timing import Laps

log = logging.getLogger("haven.server.xet")
MAX_RUNS = 64
HASHING_THREADS = 4
WAIT_S = 60.0  # how long a shard waits for the run's hashing before reading the file back instead


class Link:
    """A xorb of a run: its hash, then (once stored) its chunk count, then the run's sha256 state
    after its bytes."""

    def __init__(self, run: Run, xorb: bytes):
        self.run, self.xorb = run, xorb
        self.chunks: int | None = None  # set when the xorb is verified and stored
        self.state = None  # sha256 of the run's bytes up to the end of this xorb
        self.failed = False  # its stored bytes could not be read: the run is hashed no further


class Run:
    def __init__(self, repo_pk: int | None):
        self.repo_pk = repo_pk
        self.links: list[Link] = []
        self.hashed = 0  # links[:hashed] carry their state
        self.hashing = False  # a worker is on it
        self.dropped = False


class Runs:
    """`read(xorb, chunks)` yields the decoded bytes of the first `chunks` chunks of a stored xorb."""

    def __init__(self, read: Callable[[bytes, int], Iterable[bytes]], limit: int = MAX_RUNS):
        self.read, self.limit = read, limit
        self._cond = threading.Condition()
        self._runs: dict[int | None, Run] = {}  # by repository, least recently extended first
        self._pool = ThreadPoolExecutor(HASHING_THREADS, thread_name_prefix="haven-xet-sha256")

    def claim(self, repo_pk: int | None, xorb: bytes) -> Link:
        """A place for the xorb about to stream in, after every xorb the repository started before."""
        with self._cond:
            run = self._runs.pop(repo_pk, None) or Run(repo_pk)
            self._runs[repo_pk] = run
            while len(self._runs) > self.limit:
                self._runs.pop(next(iter(self._runs))).dropped = True
            link = Link(run, xorb)
            run.links.append(link)
            return link

    def stored(self, link: Link, chunks: int) -> None:
        """The xorb is verified and stored: hash it once the xorbs before it are."""
        with self._cond:
            link.chunks = chunks
            self._advance(link.run)

    def release(self, link: Link) -> None:
        """The xorb did not make it (refused, interrupted): the run goes on without it."""
        with self._cond:
            link.run.links.remove(link)
            self._advance(link.run)
            self._cond.notify_all()

    def end(self, repo_pk: int | None) -> None:
        """The repository's upload is complete: its run is of no further use."""
        with self._cond:
            run = self._runs.pop(repo_pk, None)
            if run is not None:
                run.dropped = True
            self._cond.notify_all()

    def prefix(self, repo_pk: int | None, terms: Sequence[Term], wait: float = WAIT_S):
        """(sha256 state, n): the state after the first `n` terms of a file, from the repository's
        run (waiting for its hashing to catch up); a fresh sha256 and 0 when no run starts where
        the file does."""
        deadline = time.monotonic() + wait
        with self._cond:
            run, covered = self._runs.get(repo_pk), 0
            for i, term in enumerate(terms):
                if run is None or i >= len(run.links):
                    break
                link = run.links[i]
                if term.xorb != link.xorb or term.start != 0 or term.end != link.chunks:
                    break
                while link.state is None and not link.failed and not run.dropped:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if link.state is None:
                    break
                covered = i + 1
            state = run.links[covered - 1].state.copy() if covered else hashlib.sha256()
        return state, covered

    def _advance(self, run: Run) -> None:
        """Start a worker on the run if its next xorb is stored (under the lock)."""
        if run.hashing or run.dropped or run.hashed >= len(run.links):
            return
        link = run.links[run.hashed]
        if link.chunks is not None and not link.failed:
            run.hashing = True
            self._pool.submit(self._hash, run)

    def _hash(self, run: Run) -> None:
        while True:
            with self._cond:
                i = run.hashed
                if run.dropped or i >= len(run.links) or run.links[i].chunks is None or run.links[i].failed:
                    run.hashing = False
                    return
                link = run.links[i]
                state = run.links[i - 1].state.copy() if i else hashlib.sha256()
            laps, size = Laps(), 0
            try:
                for part in self.read(link.xorb, link.chunks):
                    state.update(part)
                    size += len(part)
            except Exception:  # the shard reads back what the run does not cover
                log.exception("hashing stored xorb %s for its run failed", link.xorb.hex())
                with self._cond:
                    link.failed, run.hashing = True, False
                    self._cond.notify_all()
                return
            laps.lap("sha256")
            laps.report("run", xorb=to_hex(link.xorb), bytes=size)
            with self._cond:
                link.state = state
                run.hashed = i + 1
                self._cond.notify_all()
