"""The Metrics tab: `/{owner}/{name}/tensorboard` charts the scalar series of the TensorBoard event
files (`events.out.tfevents.*`) a model repository holds.

- A run is a folder holding event files (`runs/<name>/`, "." for the repository root); a run's
  files are merged. Every scalar tag gets one chart with the runs overlaid (static/charts.js).
- Records and Event protos are read by `tensorboard`'s own package (its record loader, its Event
  proto and its compatibility layer, which turns the `simple_value` summaries torch's
  SummaryWriter writes into scalar tensors). Without that package the tab says so.
- Parsed series are cached per file content: the LFS object id (sha256), or the git blob id for
  a file kept in git. A corrupt or truncated file keeps the events read before the damage and
  the page names the file and the byte where reading stopped.
- The page reads the default branch, as the repository's other tabs do; the same access rules
  (a private repo is a 404 to whoever may not see it).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from posixpath import dirname
from typing import Any

from fastapi import APIRouter, Request, Response
from jinja2.utils import htmlsafe_json_dumps
from markupsafe import Markup

from ..api.common import ApiError
from ..api.repos import store
from ..storage.datatypes import TreeEntry
from ..storage.errors import StorageError
from .render import WebRoute, page, repo_path
from .sessions import page_repo, viewing

EVENT_PREFIX = "events.out.tfevents."
MAX_EVENT_FILE = 256 << 20  # bytes; larger event files are named on the page, not read
MAX_EVENT_FILES = 200  # per page
CACHE_FILES = 1024  # parsed files kept in memory (least recently used dropped first)
MAX_POINTS = 1000  # per series on the page: longer series are thinned evenly (first and last kept)
CACHE_PAGES = 64  # whole pages' series (and their JSON), by the files they were built from

router = APIRouter(route_class=WebRoute, include_in_schema=False)


def is_event_file(path: str) -> bool:
    return path.rsplit("/", 1)[-1].startswith(EVENT_PREFIX)


def has_event_files(entries: list[TreeEntry]) -> bool:
    """Whether the Metrics tab applies: some file of `entries` is a TensorBoard event file."""
    return any(e.type == "file" and is_event_file(e.path) for e in entries)


@dataclass
class FileScalars:
    """One event file's scalars: tag -> [(step, wall_time, value)] in file order, and how many
    points each tag had before the cache thinned it to MAX_POINTS."""

    series: dict[str, list[tuple[int, float, float | None]]] = field(default_factory=dict)
    error: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    transient: bool = False  # the error may pass (storage could not open the file): not cached


class ReaderMissing(Exception):
    """`tensorboard` is not installed, so event files cannot be read."""


def parse_event_file(path: str) -> FileScalars:
    """The scalar series of the event file at `path`, read with tensorboard's loader."""
    try:
        from tensorboard import data_compat, dataclass_compat
        from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
        from tensorboard.compat.proto import event_pb2
        from tensorboard.util import tensor_util
    except ImportError as err:
        raise ReaderMissing(str(err)) from err
    out = FileScalars()
    plugins: dict[str, str] = {}  # tag -> plugin (tensorboard writes the metadata on a tag's first value)
    first_meta: dict = {}
    used = 0
    try:
        for record in RawEventFileLoader(path).Load():
            used += len(record) + 16  # framing: length (8), its crc (4), data, data crc (4)
            event = event_pb2.Event.FromString(record)
            values = event.summary.value
            if values and all(v.WhichOneof("value") == "simple_value" for v in values):
                for value in values:  # the TF1 scalars torch's SummaryWriter writes: read as they are
                    number = float(value.simple_value)
                    out.series.setdefault(value.tag, []).append(
                        (int(event.step), float(event.wall_time), number if math.isfinite(number) else None)
                    )
                continue
            for ev in dataclass_compat.migrate_event(data_compat.migrate_event(event), first_meta):
                for value in ev.summary.value:
                    plugin = value.metadata.plugin_data.plugin_name
                    if plugin:
                        plugins[value.tag] = plugin
                    if plugins.get(value.tag) != "scalars" or value.WhichOneof("value") != "tensor":
                        continue
                    array = tensor_util.make_ndarray(value.tensor)
                    if array.size != 1:
                        continue
                    number = float(array.reshape(()))
                    out.series.setdefault(value.tag, []).append(
                        (int(ev.step), float(ev.wall_time), number if math.isfinite(number) else None)
                    )
    except Exception as err:  # a record whose bytes are not an Event, or values tensorboard refuses
        out.error = f"unreadable after {used} bytes ({type(err).__name__}: {err})"
        return out
    size = os.path.getsize(path)
    if used < size:  # the loader stops quietly at a bad checksum or a truncated record
        out.error = f"corrupt or truncated at byte {used} of {size}; the events before it are shown"
    return out


class _Cache:
    """Values by content key, least recently used dropped first; thread-safe."""

    def __init__(self, limit: int):
        self.limit = limit
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.limit:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


CACHE = _Cache(CACHE_FILES)  # content id -> FileScalars
PAGES = _Cache(CACHE_PAGES)  # ((path, content id), ...) -> (data, its JSON for the page)


def content_id(entry: TreeEntry) -> str:
    """What names a file's bytes: its LFS object id (sha256), else its git blob id."""
    return entry.lfs.oid if entry.lfs else entry.oid


def file_scalars(st, repo_type: str, repo_id: str, commit: str, entry: TreeEntry) -> FileScalars:
    """The scalars of one event file at `commit`, from the cache when its content was read before."""
    key = content_id(entry)
    found = CACHE.get(key)
    if found is not None:
        return found
    if entry.size > MAX_EVENT_FILE:
        too_big = FileScalars(error=f"{entry.size} bytes, over the {MAX_EVENT_FILE >> 20} MiB this page reads")
        CACHE.put(key, too_big)
        return too_big
    try:
        _, content = st.open_file(repo_type, repo_id, commit, entry.path)
    except StorageError as err:  # e.g. an LFS pointer whose object this hub does not hold: not cached
        return FileScalars(error=getattr(err, "message", None) or str(err), transient=True)
    with tempfile.NamedTemporaryFile(prefix="haven-tfevents-") as tmp:
        if isinstance(content, bytes):
            tmp.write(content)
        else:
            with content:
                shutil.copyfileobj(content, tmp)
        tmp.flush()
        parsed = parse_event_file(tmp.name)
    parsed.counts = {tag: len(points) for tag, points in parsed.series.items()}
    parsed.series = {tag: thin(points, MAX_POINTS) for tag, points in parsed.series.items()}  # bounds the cache
    CACHE.put(key, parsed)
    return parsed


def thin(points: list, limit: int) -> list:
    """At most `limit` (>= 2) of `points`, evenly spaced by index, the first and last kept."""
    if len(points) <= limit:
        return points
    stride = (len(points) - 1) / (limit - 1)
    return [points[round(i * stride)] for i in range(limit)]


def run_name(path: str) -> str:
    return dirname(path) or "."


def collect(st, repo_type: str, repo_id: str, commit: str, entries: list[TreeEntry]) -> dict:
    """{"runs": [name], "tags": [{"tag", "series": [{"run", "points": [[step, wall, value]], "total"}]}],
    "errors": [{"path", "error"}]} for the event files among `entries`; a run's files are merged
    in step order (at most MAX_POINTS of a series' `total` points kept), tags and runs sorted by name."""
    files = sorted((e for e in entries if e.type == "file" and is_event_file(e.path)), key=lambda e: e.path)
    errors = []
    if len(files) > MAX_EVENT_FILES:
        errors.append({"path": f"{len(files) - MAX_EVENT_FILES} more event files",
                       "error": f"not read: the page charts the first {MAX_EVENT_FILES}"})
        files = files[:MAX_EVENT_FILES]
    merged: dict[str, dict[str, list]] = {}  # tag -> run -> points
    totals: dict[tuple[str, str], int] = {}  # (tag, run) -> points written
    for entry in files:
        parsed = file_scalars(st, repo_type, repo_id, commit, entry)
        if parsed.error:
            errors.append({"path": entry.path, "error": parsed.error, "transient": parsed.transient})
        for tag, points in parsed.series.items():
            run = run_name(entry.path)
            merged.setdefault(tag, {}).setdefault(run, []).extend(points)
            totals[tag, run] = totals.get((tag, run), 0) + parsed.counts.get(tag, len(points))
    tags = []
    for tag in sorted(merged):
        series = []
        for run, points in sorted(merged[tag].items()):
            points.sort(key=lambda p: (p[0], p[1]))
            series.append({"run": run, "points": thin(points, MAX_POINTS), "total": totals[tag, run]})
        tags.append({"tag": tag, "series": series})
    runs = sorted({run_name(e.path) for e in files})
    return {"runs": runs, "tags": tags, "errors": errors}


@router.get("/{owner}/{name}/tensorboard")
def metrics_page(request: Request, owner: str, name: str) -> Response:
    if request.query_params:
        raise ApiError(400, f"the Metrics page takes no query parameters (got {', '.join(request.query_params)})")
    with viewing(request) as (session, viewer):
        repo = page_repo(session, viewer, "model", owner, name)
        st = store(request)
        sha = st.resolve(repo.type, repo.repo_id, "main")
        entries = st.list_tree(repo.type, repo.repo_id, sha, "", recursive=True)
        if not has_event_files(entries):
            raise ApiError(404, f"{repo.repo_id} holds no TensorBoard event files (events.out.tfevents.*), "
                                "so it has no Metrics tab")
        missing = None
        key = tuple((e.path, content_id(e)) for e in entries if e.type == "file" and is_event_file(e.path))
        built = PAGES.get(key)
        if built is None:
            try:
                data = collect(st, repo.type, repo.repo_id, sha, entries)
            except ReaderMissing as err:
                missing = (f"TensorBoard's reader is not installed on this hub ({err}); "
                           "install the `tensorboard` package to chart these runs.")
                data = {"runs": sorted({run_name(path) for path, _ in key}), "tags": [], "errors": []}
            built = (data, Markup(htmlsafe_json_dumps(data)), _latest(data))
            if missing is None and not any(e.get("transient") for e in data["errors"]):
                PAGES.put(key, built)
        data, data_json, latest = built
        return page(request, "tensorboard.html", repo=repo, base=repo_path(repo), tab="metrics", metrics=True,
                    data=data, data_json=data_json, missing=missing, latest=latest, max_points=MAX_POINTS)


def _latest(data: dict) -> dict[str, list[dict]]:
    """Per tag, each run's last point and its count: the table read without JavaScript."""
    out = {}
    for chart in data["tags"]:
        out[chart["tag"]] = [
            {"run": s["run"], "step": s["points"][-1][0], "value": s["points"][-1][2], "count": s["total"]}
            for s in chart["series"] if s["points"]
        ]
    return out
