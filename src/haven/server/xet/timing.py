"""Where the time of a Xet upload goes on the server, for `benchmarks/hub.py` to print the split.

The store times the parts of its work as it goes (a few clock reads per 4 MB batch, always on). With
`HAVEN_XET_TIMINGS=FILE` in the environment of `haven serve`, it appends one JSON line to FILE for
each xorb stored, each xorb a run hashed (`runs`) and each shard: `kind`, wall-clock `start` and
`end` (epoch seconds, to line up with the client's clock) and seconds per part.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import defaultdict

_lock = threading.Lock()


class Laps:
    """Wall-clock seconds per named part: `lap(name)` charges the time since the previous lap."""

    def __init__(self):
        self.start = time.time()
        self._last = time.perf_counter()
        self.parts: dict[str, float] = defaultdict(float)

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.parts[name] += now - self._last
        self._last = now

    def report(self, kind: str, **fields) -> None:
        """Append this record to HAVEN_XET_TIMINGS's file, if it is set."""
        path = os.environ.get("HAVEN_XET_TIMINGS")
        if not path:
            return
        line = json.dumps({"kind": kind, "start": self.start, "end": time.time(), **self.parts, **fields})
        with _lock, open(path, "a") as f:
            f.write(line + "\n")
